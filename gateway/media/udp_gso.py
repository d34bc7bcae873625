"""Many UDP datagrams in one system call: Linux UDP generic segmentation offload (GSO).

One `sendmsg` with a UDP_SEGMENT size hands the kernel a buffer that it (or the network
card) cuts into datagrams of that size, the last one possibly shorter (Linux >= 4.18).
The receiver sees ordinary datagrams. The RTP packets of one H.264 slice (FU-A fragments
of even size, same header and SRTP tag length) are such a run: the system call per packet,
the largest cost of sending WebRTC media from Python, becomes one per slice.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python < 3.12 lacks the name
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
MAX_BUFFER = 65000  # a UDP datagram's 64 KiB length field bounds the whole buffer


def supported(sock: socket.socket) -> bool:
    """Whether this socket's kernel knows UDP_SEGMENT (setting it to 0 changes nothing)."""
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def send_runs(sock: socket.socket, packets: memoryview, ends: list[int], address: tuple,
              sendto: Callable[[memoryview, tuple], None]) -> bool:
    """Send the datagrams lying one after the other in `packets` (each ending at `ends[i]`),
    in order, each run of equal sizes (a shorter one may close it) as one GSO call.

    Single datagrams, and everything from a run the socket cannot take now, go through
    `sendto` (the asyncio transport, which copies what it has to queue). Returns False if
    the kernel refused GSO itself (e.g. no checksum offload on the route's device): do not
    try again on this socket.
    """
    count = len(ends)
    i, start = 0, 0
    while i < count:
        size = ends[i] - start
        limit = min(count, i + MAX_SEGMENTS, i + MAX_BUFFER // size)
        j = i + 1
        while j < limit and ends[j] - ends[j - 1] == size:
            j += 1
        if j < limit and ends[j] - ends[j - 1] < size:
            j += 1  # a shorter datagram may close the run
        if j - i == 1:
            sendto(packets[start:ends[i]], address)
        else:
            try:
                sock.sendmsg([packets[start:ends[j - 1]]],
                             [(socket.SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))], 0, address)
            except (BlockingIOError, InterruptedError):
                send_each(packets, ends, i, start, address, sendto)  # the transport queues them
                return True
            except OSError:
                send_each(packets, ends, i, start, address, sendto)
                return False
        start = ends[j - 1]
        i = j
    return True


def send_each(packets: memoryview, ends: list[int], first: int, start: int, address: tuple,
              sendto: Callable[[memoryview, tuple], None]) -> None:
    """Datagram `first` (starting at `start`) and all after it, one sendto each."""
    for end in ends[first:]:
        sendto(packets[start:end], address)
        start = end
