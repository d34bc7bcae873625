"""A peer's incoming RTCP, read as it arrives instead of in aiortc's receive loop.

A browser sends each peer a receiver report with a REMB (its bandwidth estimate) several
times a second (Chromium: ~5). aiortc takes every one through an asyncio queue, its DTLS
transport's receive task, pylibsrtp (which copies in and out), RtcpPacket objects and its
senders' handlers, which turn a report into getStats objects and a REMB into a target bit
rate for an encoder the gateway does not have: a quarter of a millisecond of the event
loop each, more than a peer's audio.

RtcpReader takes the SRTCP datagrams from the peer's aioice connection where aioice hands
them on (`Connection.data_received`), decrypts each in place with the DTLS transport's
libsrtp session, and reads the packet types of the compound: receiver reports, REMB and
SDES only (nothing the gateway acts on) end there. Anything else (NACK, PLI, FIR, BYE, a
sender report) goes on, decrypted, to aiortc's own handling, so NACKs are still answered
and PLI/FIR still resync the peer. Every other datagram (DTLS, RTP) takes aiortc's path.
"""

from __future__ import annotations

import struct
from typing import Protocol, cast

from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import is_rtcp
from pylibsrtp._binding import ffi
from pylibsrtp._binding import lib as libsrtp

from gateway.outputs.webrtc.aiortc_compat.install import replace
from gateway.tasks import background

RTCP_HEADER = struct.Struct("!BBH")  # V P count/format | packet type | length in 32-bit words - 1
RTCP_RR, RTCP_SDES, RTCP_PSFB = 201, 202, 206
PSFB_APP = 15  # application-layer feedback: REMB
MAX_DATAGRAM = 1500


class ReceiveCounters(Protocol):
    """RTCDtlsTransport's private counters of what it received, which its getStats reads."""

    _RTCDtlsTransport__rx_bytes: int
    _RTCDtlsTransport__rx_packets: int


def only_reports(packet: bytearray, length: int) -> bool:
    """Whether a decrypted compound RTCP packet holds only receiver reports, REMB and SDES."""
    offset = 0
    while offset + 4 <= length:
        first, packet_type, words = RTCP_HEADER.unpack_from(packet, offset)
        if first >> 6 != 2:
            return False
        if packet_type not in (RTCP_RR, RTCP_SDES) and not (packet_type == RTCP_PSFB and first & 0x1F == PSFB_APP):
            return False
        offset += 4 * (words + 1)
    return offset == length


class RtcpReader:
    """Reads one peer's SRTCP as aioice receives it; see the module docstring."""

    def __init__(self, dtls: RTCDtlsTransport):
        self.dtls = dtls
        self.counters = cast(ReceiveCounters, dtls)
        self.context = dtls._rx_srtp._srtp[0]
        self.length = ffi.new("int *")
        self.buffer = bytearray(MAX_DATAGRAM)
        self.pointer = ffi.from_buffer(self.buffer)
        connection = dtls.transport._connection  # aioice.Connection
        self.queue = connection.data_received  # aioice's own: on to aiortc's receive task
        replace(connection, "data_received", self.data_received)  # on this connection only

    @classmethod
    def install(cls, dtls: RTCDtlsTransport) -> None:
        """Read this DTLS transport's RTCP (once: its video and audio senders share it)."""
        if not isinstance(getattr(dtls.transport._connection.data_received, "__self__", None), cls):
            cls(dtls)

    def data_received(self, data: bytes, component: int) -> None:
        length = len(data)
        if (
            not (127 < data[0] < 192 and is_rtcp(data))
            or length > MAX_DATAGRAM
            or self.dtls._state is not State.CONNECTED
        ):
            self.queue(data, component)  # not SRTCP (or not now): aiortc's path
            return
        counters = self.counters
        counters._RTCDtlsTransport__rx_bytes += length
        counters._RTCDtlsTransport__rx_packets += 1
        buffer = self.buffer
        buffer[:length] = data
        self.length[0] = length
        if libsrtp.srtp_unprotect_rtcp(self.context, self.pointer, self.length):
            return  # not authentic, or a replay: dropped, as aiortc drops it
        length = self.length[0]
        if not only_reports(buffer, length):
            background(self.dtls._handle_rtcp_data(bytes(buffer[:length])))
