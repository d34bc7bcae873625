"""A frame's UDP datagrams in one system call: sendmmsg(2), with Linux UDP GSO.

The datagrams lie one after the other in one buffer. One `sendmmsg` hands them all to
the kernel, one message per run of equal-size datagrams, which the kernel (or network
card) cuts into datagrams of that size as a UDP_SEGMENT control message asks (generic
segmentation offload, Linux >= 4.18; a run's last datagram may be shorter). The receiver
sees ordinary datagrams. The RTP packets of one H.264 slice (FU-A fragments of even size,
same header and SRTP tag length) are such a run; a STAP-A or an audio packet is a run of
one. The system call, the largest cost of sending WebRTC media from Python, and most of
it per call rather than per byte, becomes one per frame instead of one per packet (or per
slice, with GSO alone through `socket.sendmsg`). Where the runs are is worked out once
per frame (`Datagrams`), since every peer lays a frame's packets out alike.

Python's socket module has `sendmsg` but not `sendmmsg`: it is called through cffi (which
pylibsrtp already loads), with the structures declared as Linux lays them out.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any, cast

import cffi

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python < 3.12 lacks the name
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
MAX_BUFFER = 65000  # a UDP datagram's 64 KiB length field bounds a run's bytes
MAX_MESSAGES = 64  # per sendmmsg call; a frame with more runs takes several calls
BLOCKED = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)

ffi = cffi.FFI()
ffi.cdef("""
    typedef unsigned int socklen_t;
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr { void *msg_name; socklen_t msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
                    void *msg_control; size_t msg_controllen; int msg_flags; };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; };
    int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
""")
try:
    libc = ffi.dlopen(None)
    libc.sendmmsg  # noqa: B018 - not every C library has it (it is Linux's)
except (OSError, AttributeError):  # pragma: no cover - not Linux: datagrams go one by one
    libc = None

CMSG_HEADER = ffi.sizeof("struct cmsghdr")
CMSG_SPACE = CMSG_HEADER + ffi.sizeof("size_t")  # the 2-byte segment size, padded as CMSG_SPACE pads it
SEGMENT_SIZE = struct.Struct("=H")
CData = Any  # a cffi pointer: cffi has no types


def supported(sock: socket.socket) -> bool:
    """Whether this socket's kernel knows UDP_SEGMENT (setting it to 0 changes nothing)."""
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def sockaddr(sock: socket.socket, address: tuple) -> bytes:
    """`address` as the kernel's sockaddr_in / sockaddr_in6 for this socket's family."""
    family = sock.family
    name = socket.getaddrinfo(address[0], address[1], family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)[0][4]
    host, port = str(name[0]), name[1]
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    if family == socket.AF_INET6:
        _, _, flow, scope = cast(tuple[str, int, int, int], name)  # an IPv6 address's four fields
        return (
            struct.pack("=H", family)
            + struct.pack("!HI", port, flow)
            + socket.inet_pton(family, host.split("%")[0])
            + struct.pack("=I", scope)
        )
    raise ValueError(f"not an IP socket: {family}")


class Datagrams:
    """Where datagrams lying one after the other in a buffer end, and how they go out as
    sendmmsg messages, worked out once for every socket that sends datagrams laid out so
    (every peer of a stream sends a frame's packets at the same offsets)."""

    def __init__(self, ends: list[int]):
        self.ends = ends
        self._plans: dict[bool, list[tuple[int, int, int, int]]] = {}

    def plan(self, gso: bool) -> list[tuple[int, int, int, int]]:
        """The messages as (start, length, segment size or 0 for one datagram, first datagram):
        with GSO, each run of equal sizes (a shorter last one may close it) as one message."""
        plan = self._plans.get(gso)
        if plan is None:
            plan = self._plans[gso] = []
            ends, count = self.ends, len(self.ends)
            i, start = 0, 0
            while i < count:
                size = ends[i] - start
                j = i + 1
                if gso:
                    limit = min(count, i + MAX_SEGMENTS, i + MAX_BUFFER // size)
                    while j < limit and ends[j] - ends[j - 1] == size:
                        j += 1
                    if j < limit and ends[j] - ends[j - 1] < size:
                        j += 1  # a shorter datagram may close the run
                plan.append((start, ends[j - 1] - start, size if j - i > 1 else 0, i))
                i, start = j, ends[j - 1]
        return plan


class DatagramBatch:
    """sendmmsg for one socket and destination, its message structures made once."""

    def __init__(self, sock: socket.socket, address: tuple):
        if libc is None:
            raise OSError(errno.ENOSYS, "no sendmmsg in this C library")
        self.fd = sock.fileno()
        self.gso = supported(sock)
        self.name = ffi.new("char[]", sockaddr(sock, address))
        self.messages = ffi.new("struct mmsghdr[]", MAX_MESSAGES)
        self.iov = ffi.new("struct iovec[]", MAX_MESSAGES)
        self.control = bytearray(MAX_MESSAGES * CMSG_SPACE)
        self.control_pointer = ffi.from_buffer(self.control)
        for i in range(MAX_MESSAGES):
            header = self.messages[i].msg_hdr
            header.msg_name, header.msg_namelen = self.name, len(self.name) - 1
            header.msg_iov, header.msg_iovlen = self.iov + i, 1
            header.msg_control = self.control_pointer + i * CMSG_SPACE
            cmsg = ffi.cast("struct cmsghdr *", header.msg_control)
            cmsg.cmsg_len, cmsg.cmsg_level, cmsg.cmsg_type = CMSG_HEADER + 2, socket.SOL_UDP, UDP_SEGMENT

    def send(self, packets: CData, datagrams: Datagrams) -> int:
        """Send the datagrams lying one after the other from the cffi pointer `packets`
        (laid out as `datagrams` says), in order; return how many the kernel took: all, or
        fewer when the socket's buffer is full or the kernel refused one (the caller sends
        the rest its own way, which queues them or reports the error).

        If the kernel refuses GSO itself (e.g. no checksum offload on the route's device),
        the datagrams go one per message from then on.
        """
        ends = datagrams.ends
        messages, iov, control = self.messages, self.iov, self.control
        if len(ends) == 1:  # one datagram (audio, a lone packet): no runs to look for
            iov[0].iov_base, iov[0].iov_len = packets, ends[0]
            messages[0].msg_hdr.msg_controllen = 0
            return max(libc.sendmmsg(self.fd, messages, 1, 0), 0)
        plan = datagrams.plan(self.gso)
        next_message = 0
        while next_message < len(plan):
            batch = plan[next_message : next_message + MAX_MESSAGES]
            for m, (start, length, segment, _) in enumerate(batch):
                iov[m].iov_base, iov[m].iov_len = packets + start, length
                if segment:
                    messages[m].msg_hdr.msg_controllen = CMSG_SPACE
                    SEGMENT_SIZE.pack_into(control, m * CMSG_SPACE + CMSG_HEADER, segment)
                else:
                    messages[m].msg_hdr.msg_controllen = 0
            taken = libc.sendmmsg(self.fd, messages, len(batch), 0)
            if taken < 0:
                if ffi.errno not in BLOCKED and batch[0][2]:
                    self.gso = False  # refused for its UDP_SEGMENT: again, one datagram per message
                    plan, next_message = datagrams.plan(False), batch[0][3]
                    continue
                return batch[0][3]
            if taken < len(batch):
                return batch[taken][3]
            next_message += taken
        return len(ends)
