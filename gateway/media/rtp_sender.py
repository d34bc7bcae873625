"""One peer's RTP for one aiortc sender, sent in one synchronous loop per frame.

aiortc sends every RTP packet through a chain of coroutines (RtpPacket object, header
extension objects, SRTP, DTLS transport, ICE transport, aioice, asyncio transport), which
cost more than the encryption and the system call together. LeanRtpSender does for ready
payloads what aiortc's `RTCRtpSender._run_rtp` does, with the same state aiortc set up:
the header from struct (sender's SSRC, negotiated payload type, its own sequence numbers
and timestamp origin, marker on a frame's last packet), the negotiated header extensions
(mid, abs-send-time; the only ones aiortc offers for sent media), SRTP with the DTLS
transport's session, and straight to the datagram transport of the ICE pair aioice
nominated. What aiortc does around sending stays aiortc's, fed with the numbers it needs:
its RTCP sender reports read the sender's packet/octet counters and NTP/RTP time pair,
which are kept here; its NACK handling calls `retransmit` (RTX when negotiated); its
PLI/FIR handling is the peer's resync (webrtc.py).

`for_sender` returns None when aiortc or aioice are not shaped as expected (another
version), and the peer then goes on with aiortc's own path.
"""

from __future__ import annotations

import socket
import struct
import time

from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, pack_header_extensions
from aiortc.utils import random32

from . import udp_gso

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
MAX_BUFFERED_BYTES = 1_000_000  # unsent bytes in the socket's asyncio buffer: the peer skips ahead
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# RTCRtpSender's private counters that its RTCP sender reports are made of.
SR_COUNTERS = ("_RTCRtpSender__ntp_timestamp", "_RTCRtpSender__rtp_timestamp",
               "_RTCRtpSender__octet_count", "_RTCRtpSender__packet_count")
TX_COUNTERS = ("_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets")

rtp_header = struct.Struct("!BBHII").pack  # V=2 P=0 X CC=0 | M PT | seq | timestamp | SSRC
rtp_sequence = struct.Struct("!H")


def ntp_now() -> int:
    """The 64-bit NTP time, as aiortc.clock.current_ntp_time gives it."""
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
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        self.mid_extension = (ids[MID], parameters.muxId.encode()) if MID in ids and parameters.muxId else None
        self.abs_send_time_id = ids.get(ABS_SEND_TIME)
        self.extension = self._extension_block(0)
        self.history: list[bytes | None] = [None] * RTP_HISTORY_SIZE  # sent packets, before SRTP
        self.rtx_payload_type = next((c.payloadType for c in parameters.codecs if c.mimeType.lower().endswith("/rtx")
                                      and c.parameters.get("apt") == codec.payloadType), None)
        self.rtx_ssrc = sender._rtx_ssrc
        self.rtx_sequence = random_sequence_number()
        self._gso_transport: object = None
        self._gso_sock: socket.socket | None = None

    @classmethod
    def for_sender(cls, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> "LeanRtpSender | None":
        """A lean sender for a sender aiortc has just started, or None to leave it to aiortc."""
        try:
            lean = cls(sender, parameters)
            nominated = lean.ice._nominated
        except (AttributeError, KeyError, IndexError):
            return None
        if not isinstance(nominated, dict) or not all(hasattr(sender, name) for name in SR_COUNTERS):
            return None
        return lean

    def _extension_block(self, ntp_time: int) -> bytes:
        """The header extension block (with its 4-byte header), b"" when none is negotiated."""
        elements = []
        if self.abs_send_time_id:
            elements.append((self.abs_send_time_id, ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big")))
        if self.mid_extension:
            elements.append(self.mid_extension)
        profile, value = pack_header_extensions(elements)
        return struct.pack("!HH", profile, len(value) >> 2) + value if elements else b""

    def _path(self):
        """(sendto, address, transport) of the nominated ICE pair; None when not connected."""
        if self.dtls.state != "connected":
            return None
        pair = self.ice._nominated.get(1)
        if pair is None:
            return None
        transport = pair.protocol.transport
        return transport.sendto, pair.remote_addr, transport

    def _gso_socket(self, transport) -> socket.socket | None:
        """The UDP socket under an asyncio transport, if it can take GSO batches right now."""
        if transport is not self._gso_transport:
            sock = getattr(transport, "_sock", None)  # asyncio's own socket; a TURN relay has none
            self._gso_transport = transport
            self._gso_sock = sock if isinstance(sock, socket.socket) and udp_gso.supported(sock) else None
        if self._gso_sock is None or transport.get_write_buffer_size():
            return None  # nothing may overtake what the transport still holds
        return self._gso_sock

    def send(self, payloads: list[bytes], timestamp: int) -> bool:
        """Send one frame's payloads; False if the peer's socket is too far behind to take it."""
        path = self._path()
        if path is None:
            return True  # not (or no longer) connected: the frame is dropped, as aiortc does
        sendto, address, transport = path
        if transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            return False
        ntp_time = ntp_now()
        if self.abs_send_time_id:
            self.extension = self._extension_block(ntp_time)
        first_byte = 0x90 if self.extension else 0x80
        extension = self.extension
        timestamp = (self.timestamp_origin + timestamp) & 0xFFFFFFFF
        protect = self.dtls._tx_srtp.protect
        history = self.history
        sequence = self.sequence
        last = len(payloads) - 1
        datagrams = []
        for i, payload in enumerate(payloads):
            packet = rtp_header(first_byte, self.payload_type | (0x80 if i == last else 0), sequence, timestamp,
                                self.ssrc) + extension + payload
            history[sequence % RTP_HISTORY_SIZE] = packet
            datagrams.append(protect(packet))
            sequence = (sequence + 1) & 0xFFFF
        self.sequence = sequence
        sock = self._gso_socket(transport)
        if sock is None or len(datagrams) == 1:
            for datagram in datagrams:
                sendto(datagram, address)
        elif not udp_gso.send_runs(sock, datagrams, address, sendto):
            self._gso_sock = None
        self._count(len(payloads), sum(map(len, payloads)), sum(map(len, datagrams)), ntp_time, timestamp)
        return True

    def _count(self, packets: int, octets: int, sent: int, ntp_time: int, timestamp: int) -> None:
        """What aiortc's sender and DTLS transport would have counted (RTCP SR, getStats)."""
        sender, dtls = self.sender, self.dtls
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += octets
        sender._RTCRtpSender__packet_count += packets
        if hasattr(dtls, TX_COUNTERS[0]):
            dtls._RTCDtlsTransport__tx_packets += packets
            dtls._RTCDtlsTransport__tx_bytes += sent

    async def retransmit(self, sequence: int) -> None:
        """Answer a NACK: the packet again, wrapped in RTX when RTX was negotiated (RFC 4588)."""
        packet = self.history[sequence % RTP_HISTORY_SIZE]
        path = self._path()
        if packet is None or path is None or rtp_sequence.unpack_from(packet, 2)[0] != sequence:
            return
        if self.rtx_payload_type is not None:
            header_end = 12 + len(self.extension)
            packet = (rtp_header(packet[0], (packet[1] & 0x80) | self.rtx_payload_type, self.rtx_sequence,
                                 *struct.unpack_from("!I", packet, 4), self.rtx_ssrc)
                      + packet[12:header_end] + rtp_sequence.pack(sequence) + packet[header_end:])
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        sendto, address, _ = path
        sendto(self.dtls._tx_srtp.protect(packet), address)
