"""One peer's RTP for one aiortc sender, made and sent in one synchronous loop per frame.

aiortc sends every RTP packet through a chain of coroutines (RtpPacket object, header
extension objects, SRTP, DTLS transport, ICE transport, aioice, asyncio transport), which
cost more than the encryption and the system call together. LeanRtpSender does for ready
payloads what aiortc's `RTCRtpSender._run_rtp` does, with the state aiortc set up:

- the header from struct: the sender's SSRC, the negotiated payload type, its own
  sequence numbers and timestamp origin (random, as aiortc's), the marker on a frame's
  last packet; the negotiated header extensions (mid, abs-send-time: the only ones aiortc
  offers for sent media);
- SRTP with the DTLS transport's libsrtp session, each packet protected in place in one
  buffer per frame through pylibsrtp's own C binding (pylibsrtp's `protect` copies the
  packet in and out and costs more in Python than the encryption itself);
- straight to the UDP socket of the ICE pair aioice nominated, the whole frame in one
  sendmmsg system call, each slice's equal-size packets as one UDP GSO message
  (udp_gso.py); through the pair's asyncio transport (copies, which it may queue) for
  what the socket cannot take now, while the transport still holds some, and for TURN.

What aiortc does around sending stays aiortc's, fed with the numbers it needs: its RTCP
sender reports read the sender's packet/octet counters and NTP/RTP time pair, which are
kept here; its NACK handling calls `retransmit` (RTX when negotiated); PLI/FIR is the
peer's resync (webrtc.py). `for_sender` returns None when aiortc, aioice or pylibsrtp
are not shaped as expected (another version); the peer then keeps aiortc's own path.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, pack_header_extensions
from aiortc.utils import random32

from . import udp_gso

try:
    from pylibsrtp._binding import ffi, lib as libsrtp
except ImportError:  # pragma: no cover - another pylibsrtp: aiortc's path is used
    ffi = libsrtp = None

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
MAX_BUFFERED_BYTES = 1_000_000  # unsent bytes in the socket's asyncio buffer: the peer skips ahead
SRTP_TRAILER = 16  # the longest tag aiortc's SRTP profiles add (AES-GCM; HMAC-SHA1-80: 10)
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# RTCRtpSender's private counters that its RTCP sender reports are made of.
SR_COUNTERS = ("_RTCRtpSender__ntp_timestamp", "_RTCRtpSender__rtp_timestamp",
               "_RTCRtpSender__octet_count", "_RTCRtpSender__packet_count")
TX_COUNTERS = ("_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets")

RTP_HEADER = struct.Struct("!BBHII")  # V=2 P=0 X CC=0 | M PT | sequence | timestamp | SSRC
RTP_SEQUENCE = struct.Struct("!H")


def ntp_now() -> int:
    """The 64-bit NTP time (what aiortc.clock.current_ntp_time gives, without datetime)."""
    return int((time.time() + NTP_EPOCH_OFFSET) * 2**32)


class LeanRtpSender:
    """Sends ready payloads as SRTP for one started RTCRtpSender; see the module docstring."""

    def __init__(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters):
        self.sender = sender
        self.dtls = sender.transport
        self.ice = self.dtls.transport._connection  # aioice.Connection
        codec = parameters.codecs[0]
        self.payload_type = codec.payloadType
        self.ssrc = sender._ssrc
        self.sequence = random_sequence_number()
        self.timestamp_origin = random32()
        self._extension_parts(parameters)
        # the frame of each sent packet by sequence number % size: (first sequence, timestamp, payloads)
        self.history: list[tuple[int, int, list[bytes]] | None] = [None] * RTP_HISTORY_SIZE
        self.rtx_payload_type = next((c.payloadType for c in parameters.codecs if c.mimeType.lower().endswith("/rtx")
                                      and c.parameters.get("apt") == codec.payloadType), None)
        self.rtx_ssrc = sender._rtx_ssrc
        self.rtx_sequence = random_sequence_number()
        self.srtp_context = self.dtls._tx_srtp._srtp[0]
        self.srtp_length = ffi.new("int *")
        self.counts_transport = hasattr(self.dtls, TX_COUNTERS[0])
        self._pair: object = None  # the nominated ICE pair the fields below are of
        self._address: tuple = ()
        self._sendto: Callable[[bytes, tuple], None] = lambda data, address: None
        self._backlog: Callable[[], int] = lambda: 0
        self._batch: udp_gso.DatagramBatch | None = None
        self._buffer = bytearray()
        self._pointer = ffi.from_buffer(self._buffer)

    @classmethod
    def for_sender(cls, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> "LeanRtpSender | None":
        """A lean sender for a sender aiortc has just started, or None to leave it to aiortc."""
        if ffi is None or not all(hasattr(sender, name) for name in SR_COUNTERS):
            return None
        try:
            lean = cls(sender, parameters)
            nominated = lean.ice._nominated
        except (AttributeError, KeyError, IndexError, TypeError):
            return None
        return lean if isinstance(nominated, dict) else None

    def _extension_parts(self, parameters: RTCRtpSendParameters) -> None:
        """The header extension block as (before, after) the 3 abs-send-time bytes.

        No abs-send-time: `after` is empty and `before` the whole (constant) block; no
        extension at all: both empty (and the header's X bit unset).
        """
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        elements = []
        abs_id = ids.get(ABS_SEND_TIME)
        if abs_id:
            elements.append((abs_id, b"\0\0\0"))
        if MID in ids and parameters.muxId:
            elements.append((ids[MID], parameters.muxId.encode()))
        self.with_abs_send_time = bool(abs_id)
        if not elements:
            self.extension_before, self.extension_after = b"", b""
            return
        profile, value = pack_header_extensions(elements)
        block = struct.pack("!HH", profile, len(value) >> 2) + value
        at = 4 + (1 if profile == 0xBEDE else 2)  # abs-send-time's data after its one/two-byte header
        self.extension_before, self.extension_after = (block[:at], block[at + 3:]) if abs_id else (block, b"")

    def _extension(self, ntp_time: int) -> bytes:
        if self.with_abs_send_time:
            return self.extension_before + ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big") + self.extension_after
        return self.extension_before

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

    def _use(self, pair) -> None:
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

    def _buffer_for(self, size: int):
        """The sender's own packet buffer (and its cffi pointer), at least `size` bytes."""
        if size > len(self._buffer):
            self._buffer = bytearray(max(size, 2 * len(self._buffer)))
            self._pointer = ffi.from_buffer(self._buffer)
        return self._buffer, self._pointer

    def send(self, payloads: list[bytes], timestamp: int) -> bool:
        """Send one frame's payloads; False if the peer's socket is too far behind to take it."""
        if (self.dtls._state is not State.CONNECTED or self.ice._nominated.get(1) is not self._pair) \
                and not self._connected():
            return True  # not (or no longer) connected: the frame is dropped, as aiortc does
        backlog = self._backlog()
        if backlog > MAX_BUFFERED_BYTES:
            return False
        ntp_time = ntp_now()
        extension = self._extension(ntp_time)
        timestamp = (self.timestamp_origin + timestamp) & 0xFFFFFFFF
        first = self.sequence
        # Every packet starts as this header; only its sequence number (and the last one's
        # marker) differ.
        header = RTP_HEADER.pack(0x90 if extension else 0x80, self.payload_type, 0, timestamp, self.ssrc) + extension
        header_size = len(header)
        count = len(payloads)
        octets = sum(map(len, payloads))
        # All packets one after the other in one buffer, each protected where it lies.
        buffer, pointer = self._buffer_for(octets + count * (header_size + SRTP_TRAILER))
        protect, context, length = libsrtp.srtp_protect, self.srtp_context, self.srtp_length
        pack_sequence = RTP_SEQUENCE.pack_into
        last = count - 1
        ends = []
        end = 0
        for i, payload in enumerate(payloads):
            start = end
            body = start + header_size
            end = body + len(payload)
            buffer[start:body] = header
            pack_sequence(buffer, start + 2, (first + i) & 0xFFFF)
            buffer[body:end] = payload
            length[0] = end - start
            if i == last:
                buffer[start + 1] |= 0x80  # marker: the frame's last packet
            if protect(context, pointer + start, length):
                return True  # libsrtp refused (session torn down): drop the frame
            end = start + length[0]
            ends.append(end)
        self.sequence = (first + count) & 0xFFFF
        self._remember(first, count, (first, timestamp, payloads))
        # Nothing may overtake what the transport holds: then everything goes through it.
        sent = self._batch.send(pointer, ends) if self._batch is not None and not backlog else 0
        if sent < count:
            sendto, address = self._sendto, self._address
            view = memoryview(buffer)
            start = ends[sent - 1] if sent else 0
            for end in ends[sent:]:
                sendto(bytes(view[start:end]), address)  # a copy: the transport may queue it, a TURN relay keep it
                start = end
        self._count(count, octets, end, ntp_time, timestamp)
        return True

    def _remember(self, first: int, count: int, frame: tuple[int, int, list[bytes]]) -> None:
        """The frame in the history slot of each of its sequence numbers (for NACKs)."""
        history = self.history
        slot = first % RTP_HISTORY_SIZE
        if slot + count <= RTP_HISTORY_SIZE:
            history[slot:slot + count] = [frame] * count
        else:
            for sequence in range(first, first + count):
                history[sequence % RTP_HISTORY_SIZE] = frame

    def _count(self, packets: int, octets: int, sent: int, ntp_time: int, timestamp: int) -> None:
        """What aiortc's sender and DTLS transport would have counted (RTCP SR, getStats)."""
        sender, dtls = self.sender, self.dtls
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += octets
        sender._RTCRtpSender__packet_count += packets
        if self.counts_transport:
            dtls._RTCDtlsTransport__tx_packets += packets
            dtls._RTCDtlsTransport__tx_bytes += sent

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
        extension = self._extension(ntp_now())
        first_byte = 0x90 if extension else 0x80
        if self.rtx_payload_type is None:
            header = RTP_HEADER.pack(first_byte, self.payload_type | marker, sequence, timestamp, self.ssrc)
        else:
            header = RTP_HEADER.pack(first_byte, self.rtx_payload_type | marker, self.rtx_sequence, timestamp,
                                     self.rtx_ssrc)
            payload = sequence.to_bytes(2, "big") + payload  # RTX: the original sequence number first
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        self._sendto(self.dtls._tx_srtp.protect(header + extension + payload), self._address)
