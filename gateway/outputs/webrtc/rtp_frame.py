"""A frame as RTP payloads, made once per stream, and its packets laid out once per shape.

Every peer of a stream sends the same payloads; what differs per peer is only the RTP
header fields (payload type, sequence numbers, timestamp origin, SSRC) and the SRTP tag.
So a frame's packets are laid out once for every peer whose packets have the same shape
(header extension block, tag length), and each peer fills in its fields (see
aiortc_compat/lean_sender.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.outputs.webrtc import udp_gso


@dataclass(frozen=True, slots=True)
class RtpFrame:
    """One frame as RTP payloads, made once per stream; `timestamp` on the media clock.

    `layouts` keeps the frame's PacketLayout for each packet shape its peers use.
    """

    payloads: list[bytes]
    timestamp: int
    keyframe: bool
    layouts: dict[tuple[bytes, int], PacketLayout] = field(default_factory=dict, compare=False)


class PacketLayout:
    """A frame's packets for one shape (header extension block, SRTP tag length): each as a
    header whose fields the peer fills in, the extension block and the payload, followed
    by room for the tag, one after the other in `data`.

    `packets` gives each packet's offset, plaintext length and marker bit; `datagrams`
    where each ends once protected, and the frame's sendmmsg messages.
    """

    __slots__ = ("data", "datagrams", "octets", "packets", "tag")

    def __init__(self, payloads: list[bytes], extension: bytes, tag: int):
        header = bytes([0x90 if extension else 0x80]) + bytes(11) + extension
        room = bytes(tag)
        parts: list[bytes] = []
        packets: list[tuple[int, int, int]] = []
        ends: list[int] = []
        offset, last = 0, len(payloads) - 1
        for i, payload in enumerate(payloads):
            parts += (header, payload, room)
            length = len(header) + len(payload)
            packets.append((offset, length, 0x80 if i == last else 0))
            offset += length + tag
            ends.append(offset)
        self.data = b"".join(parts)
        self.packets = packets
        self.datagrams = udp_gso.Datagrams(ends)
        self.octets = sum(map(len, payloads))
        self.tag = tag
