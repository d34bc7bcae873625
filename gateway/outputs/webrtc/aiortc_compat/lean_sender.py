"""One peer's RTP for one aiortc sender, made and sent in one synchronous loop per frame.

aiortc sends every RTP packet through a chain of coroutines (RtpPacket object, header
extension objects, SRTP, DTLS transport, ICE transport, aioice, asyncio transport), which
cost more than the encryption and the system call together. LeanRtpSender does for ready
payloads what aiortc's `RTCRtpSender._run_rtp` does, with the state aiortc set up:

- the packets of a frame are laid out once per stream (PacketLayout, kept on the RtpFrame)
  for every peer whose packets have the same shape (header extension block, SRTP tag
  length: with one browser, every peer): plaintext packets one after the other, each with
  room for its SRTP tag, and how they go out as sendmmsg messages. A peer copies that
  layout into the send buffer in one go and fills in each packet's header fields (its
  payload type, its own sequence numbers, timestamp origin (random, as aiortc's) and
  SSRC, the marker on a frame's last packet) with one struct call;
- SRTP with the DTLS transport's libsrtp session, each packet protected in place through
  pylibsrtp's own C binding (pylibsrtp's `protect` copies the packet in and out and costs
  more in Python than the encryption itself);
- straight to the UDP socket of the ICE pair aioice nominated, the whole frame in one
  sendmmsg system call, each slice's equal-size packets as one UDP GSO message
  (udp_gso.py); through the pair's asyncio transport (copies, which it may queue) for
  what the socket cannot take now, while the transport still holds some, and for TURN.

RTCP sender reports (with the SDES CNAME) go out after a frame when one is due, at
aiortc's intervals (0.5-1.5 s), instead of from aiortc's timer task: no wake-up of their
own, and the counters they carry are kept here, handed to aiortc's sender and DTLS
transport with each report (getStats). The rest of RTCP stays aiortc's: its NACK
handling calls `retransmit` (RTX when negotiated); PLI/FIR is the peer's resync
(peer.py); the BYE when aiortc stops the sender (takeover.py). The private names used
here are checked at install (check.py); this module is imported only when they are there.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from aioice.ice import CandidatePair
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import (
    RTP_HISTORY_SIZE,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_header_extensions,
)
from aiortc.utils import random32
from pylibsrtp._binding import ffi
from pylibsrtp._binding import lib as libsrtp

from gateway.outputs.webrtc import udp_gso
from gateway.outputs.webrtc.aiortc_compat.install import ntp_now
from gateway.outputs.webrtc.rtp_frame import PacketLayout, RtpFrame

MAX_BUFFERED_BYTES = 1_000_000  # unsent bytes in the socket's asyncio buffer: the peer skips ahead
# The SRTP tag each DTLS-SRTP profile adds to an RTP packet (RFC 5764, RFC 7714).
SRTP_TAG_LENGTHS = {
    b"SRTP_AEAD_AES_128_GCM": 16,
    b"SRTP_AEAD_AES_256_GCM": 16,
    b"SRTP_AES128_CM_SHA1_80": 10,
    b"SRTP_AES128_CM_SHA1_32": 4,
}
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
CData = Any  # a cffi pointer: cffi has no types


class SenderCounters(Protocol):
    """RTCRtpSender's private counters, which its getStats and RTCP reports read."""

    _RTCRtpSender__ntp_timestamp: int
    _RTCRtpSender__rtp_timestamp: int
    _RTCRtpSender__octet_count: int
    _RTCRtpSender__packet_count: int


class TransportCounters(Protocol):
    """RTCDtlsTransport's private counters of what it sent, which its getStats reads."""

    _RTCDtlsTransport__tx_bytes: int
    _RTCDtlsTransport__tx_packets: int


RTP_HEADER = struct.Struct("!BBHII")  # V=2 P=0 X CC=0 | M PT | sequence | timestamp | SSRC
RTP_FIELDS = struct.Struct("!BHII")  # the header after its first byte: what differs per peer and packet


class SendBuffer:
    """The buffer every peer's packets are protected in and sent from, and its cffi pointer.

    One for all: a peer's frame goes out in one synchronous call in the event loop thread,
    and the kernel has copied it when sendmmsg returns (the transport's fallback copies
    too); one buffer stays in the CPU cache, where one per peer would not.
    """

    def __init__(self) -> None:
        self.data = bytearray(65536)
        self.pointer: CData = ffi.from_buffer(self.data)

    def at_least(self, size: int) -> tuple[bytearray, CData]:
        if size > len(self.data):
            self.data = bytearray(max(size, 2 * len(self.data)))
            self.pointer = ffi.from_buffer(self.data)
        return self.data, self.pointer


SEND_BUFFER = SendBuffer()


class LeanRtpSender:
    """Sends ready payloads as SRTP for one started RTCRtpSender; see the module docstring."""

    def __init__(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters):
        """For a sender aiortc has just started (DTLS done, SRTP set up); anything else is
        an error, and the sender stays aiortc's."""
        self.sender = sender
        self.dtls = sender.transport
        self.ice = self.dtls.transport._connection  # aioice.Connection
        codec = parameters.codecs[0]
        if codec.payloadType is None or self.dtls._ssl is None:
            raise ValueError("the sender is not started")
        self.payload_type: int = codec.payloadType
        self.ssrc = sender._ssrc
        self.sequence = random_sequence_number()
        self.timestamp_origin = random32()
        self.extension = self._extension(parameters)
        self.shape = (self.extension, SRTP_TAG_LENGTHS[self.dtls._ssl.get_selected_srtp_profile()])
        # the frame of each sent packet by sequence number % size: (first sequence, timestamp, payloads),
        # kept only when the peer may ask for packets again (NACK negotiated: video)
        self.history: list[tuple[int, int, list[bytes]] | None] = [None] * RTP_HISTORY_SIZE
        self.keeps_history = any(fb.type == "nack" and not fb.parameter for fb in codec.rtcpFeedback)
        self.rtx_payload_type = next(
            (
                c.payloadType
                for c in parameters.codecs
                if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        self.rtx_ssrc = sender._rtx_ssrc
        self.rtx_sequence = random_sequence_number()
        self.srtp_context = self.dtls._tx_srtp._srtp[0]
        self.srtp_length = ffi.new("int *")
        cname = parameters.rtcp.cname
        self.sdes = (
            bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=self.ssrc, items=[(1, cname.encode())])]))
            if cname
            else b""
        )
        self.packet_count = self.octet_count = self.sent_bytes = 0
        self.reported_packets = self.reported_bytes = 0  # of those, handed to the DTLS transport's counters
        self.next_report = time.time() + 0.5 + random.random()
        self._pair: object = None  # the nominated ICE pair the fields below are of
        self._address: tuple = ()
        self._sendto: Callable[[bytes, tuple], None] = lambda data, address: None
        self._backlog: Callable[[], int] = lambda: 0
        self._batch: udp_gso.DatagramBatch | None = None

    @staticmethod
    def _extension(parameters: RTCRtpSendParameters) -> bytes:
        """The header extension block every packet carries: the mid, when negotiated (the
        only extension passthrough.py leaves aiortc to offer for sent media)."""
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        if MID not in ids or not parameters.muxId:
            return b""
        profile, value = pack_header_extensions([(ids[MID], parameters.muxId.encode())])
        return struct.pack("!HH", profile, len(value) >> 2) + value

    def _connected(self) -> bool:
        """Whether DTLS is up and ICE has a nominated pair; follows that pair as it changes."""
        if self.dtls._state is not State.CONNECTED:
            return False
        pair = self.ice._nominated.get(1)
        if pair is None:
            return False
        if pair is not self._pair:
            self._use(pair)
        return True

    def _use(self, pair: CandidatePair) -> None:
        """Learn what a (new) ICE pair offers: its address, its transport and the UDP socket
        under it (batched sends), the transport's backlog."""
        transport = pair.protocol.transport
        self._pair = pair
        self._address = pair.remote_addr
        self._sendto = transport.sendto
        self._backlog = getattr(transport, "get_write_buffer_size", None) or (lambda: 0)
        sock = getattr(transport, "_sock", None)  # asyncio's own socket; a TURN relay has none
        self._batch = None
        if isinstance(sock, socket.socket) and sock.type == socket.SOCK_DGRAM:
            try:
                self._batch = udp_gso.DatagramBatch(sock, self._address)
            except (OSError, ValueError):
                pass  # packets go one by one through the transport

    def send(self, frame: RtpFrame, timestamp: int) -> bool:
        """Send one frame at this peer's `timestamp`; False if the peer's socket is too far
        behind to take it."""
        if (
            self.dtls._state is not State.CONNECTED or self.ice._nominated.get(1) is not self._pair
        ) and not self._connected():
            return True  # not (or no longer) connected: the frame is dropped, as aiortc does
        backlog = self._backlog()
        if backlog > MAX_BUFFERED_BYTES:
            return False
        layout = frame.layouts.get(self.shape)
        if layout is None:
            layout = frame.layouts[self.shape] = PacketLayout(frame.payloads, *self.shape)
        timestamp = (self.timestamp_origin + timestamp) & 0xFFFFFFFF
        data = layout.data
        buffer, pointer = SEND_BUFFER.at_least(len(data))
        buffer[: len(data)] = data
        protect, context, length = libsrtp.srtp_protect, self.srtp_context, self.srtp_length
        fill, payload_type, ssrc = RTP_FIELDS.pack_into, self.payload_type, self.ssrc
        first = sequence = self.sequence
        for offset, size, marker in layout.packets:
            fill(buffer, offset + 1, payload_type | marker, sequence, timestamp, ssrc)
            length[0] = size
            if protect(context, pointer + offset, length):
                return True  # libsrtp refused (session torn down): drop the frame
            sequence = (sequence + 1) & 0xFFFF
        if length[0] != size + layout.tag:
            raise RuntimeError(f"SRTP added {length[0] - size} bytes, not the profile's {layout.tag}")
        self.sequence = sequence
        count = len(layout.packets)
        if self.keeps_history:
            self._remember(first, count, (first, timestamp, frame.payloads))
        ends = layout.datagrams.ends
        # Nothing may overtake what the transport holds: then everything goes through it.
        sent = self._batch.send(pointer, layout.datagrams) if self._batch is not None and not backlog else 0
        if sent < count:
            sendto, address = self._sendto, self._address
            view = memoryview(buffer)
            start = ends[sent - 1] if sent else 0
            for end in ends[sent:]:
                sendto(bytes(view[start:end]), address)  # a copy: the transport may queue it, a TURN relay keep it
                start = end
        self.packet_count += count
        self.octet_count += layout.octets
        self.sent_bytes += ends[-1]
        now = time.time()
        if now >= self.next_report:
            self._report(now, timestamp)
        return True

    def _remember(self, first: int, count: int, frame: tuple[int, int, list[bytes]]) -> None:
        """The frame in the history slot of each of its sequence numbers (for NACKs)."""
        history = self.history
        slot = first % RTP_HISTORY_SIZE
        if slot + count <= RTP_HISTORY_SIZE:
            history[slot : slot + count] = [frame] * count
        else:
            for sequence in range(first, first + count):
                history[sequence % RTP_HISTORY_SIZE] = frame

    def _report(self, now: float, timestamp: int) -> None:
        """An RTCP sender report for what was sent up to the frame just sent (at `timestamp`),
        as aiortc's RTCP task makes it, and its counters in aiortc's sender and transport."""
        self.next_report = now + 0.5 + random.random()
        ntp_time = ntp_now()
        sender = cast(SenderCounters, self.sender)
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count = self.octet_count
        sender._RTCRtpSender__packet_count = self.packet_count
        report = bytes(
            RtcpSrPacket(
                ssrc=self.ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp_time,
                    rtp_timestamp=timestamp,
                    packet_count=self.packet_count & 0xFFFFFFFF,
                    octet_count=self.octet_count & 0xFFFFFFFF,
                ),
            )
        )
        data = self.dtls._tx_srtp.protect_rtcp(report + self.sdes)
        self._sendto(data, self._address)
        transport = cast(TransportCounters, self.dtls)
        transport._RTCDtlsTransport__tx_packets += self.packet_count - self.reported_packets + 1
        transport._RTCDtlsTransport__tx_bytes += self.sent_bytes - self.reported_bytes + len(data)
        self.reported_packets, self.reported_bytes = self.packet_count, self.sent_bytes

    async def retransmit(self, sequence: int) -> None:
        """Answer a NACK: the packet again, wrapped in RTX when RTX was negotiated (RFC 4588)."""
        frame = self.history[sequence % RTP_HISTORY_SIZE]
        if frame is None or not self._connected():
            return
        first, timestamp, payloads = frame
        index = (sequence - first) & 0xFFFF
        if index >= len(payloads):
            return  # long gone: the slot holds a newer frame
        payload, marker = payloads[index], 0x80 if index == len(payloads) - 1 else 0
        extension = self.extension
        first_byte = 0x90 if extension else 0x80
        if self.rtx_payload_type is None:
            header = RTP_HEADER.pack(first_byte, self.payload_type | marker, sequence, timestamp, self.ssrc)
        else:
            header = RTP_HEADER.pack(
                first_byte, self.rtx_payload_type | marker, self.rtx_sequence, timestamp, self.rtx_ssrc
            )
            payload = sequence.to_bytes(2, "big") + payload  # RTX: the original sequence number first
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        self._sendto(self.dtls._tx_srtp.protect(header + extension + payload), self._address)
