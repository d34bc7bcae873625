"""One frame's RTP packets, made once per stream and sent as they are to every reader.

The packets are laid out in their TCP-interleaved form (RFC 2326 §10.12: `$`, channel,
16-bit length, then the RTP packet) in one buffer: a TCP reader writes the buffer with one
call, a UDP reader sends the RTP packets it holds (views into the same buffer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_HEADER = struct.Struct(">BBHII")
INTERLEAVED = struct.Struct(">cBH")


@dataclass(slots=True)
class RtpBatch:
    track: int  # trackID: the channel is 2 * track unless the reader chose others
    keyframe: bool
    data: bytes  # the interleaved packets
    offsets: list[int]  # where each packet's `$` is in `data`
    first_seq: int
    timestamp: int  # the RTP timestamp of the frame
    octets: int  # RTP payload bytes, for sender reports

    @property
    def count(self) -> int:
        return len(self.offsets)

    def rtp_packets(self) -> list[memoryview]:
        """The RTP packets without their interleaved headers (for UDP)."""
        view = memoryview(self.data)
        return [view[o + 4 : o + 4 + int.from_bytes(self.data[o + 2 : o + 4], "big")] for o in self.offsets]

    def on_channel(self, channel: int) -> bytes:
        """The interleaved data on another channel than the default (a client's own choice)."""
        data = bytearray(self.data)
        for offset in self.offsets:
            data[offset + 1] = channel
        return bytes(data)


def make_batch(
    track: int, payload_type: int, ssrc: int, seq: int, timestamp: int, payloads: list[bytes], keyframe: bool
) -> RtpBatch:
    """The packets of one frame; the marker bit on the last (RFC 6184 §5.1, RFC 3640 §3.2.1)."""
    parts: list[bytes] = []
    offsets: list[int] = []
    position = 0
    channel = 2 * track
    last = len(payloads) - 1
    for i, payload in enumerate(payloads):
        marker = 0x80 if i == last else 0
        header = RTP_HEADER.pack(0x80, marker | payload_type, (seq + i) & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        offsets.append(position)
        parts += (INTERLEAVED.pack(b"$", channel, len(header) + len(payload)), header, payload)
        position += 4 + len(header) + len(payload)
    octets = sum(len(p) for p in payloads)
    return RtpBatch(track, keyframe, b"".join(parts), offsets, seq, timestamp & 0xFFFFFFFF, octets)


@dataclass(slots=True)
class Chunk:
    """What the feed hands every reader at once: a video frame's batch with the audio
    batches that came since the last one (or audio alone, when too much of it waits), all
    in one buffer, so a reader costs one write per video frame; `wall` is when it was made."""

    batches: list[RtpBatch]
    keyframe: bool
    has_video: bool
    data: bytes
    wall: float

    @classmethod
    def of(cls, batches: list[RtpBatch], wall: float) -> Chunk:
        video = batches[-1].track == 0
        data = batches[0].data if len(batches) == 1 else b"".join(b.data for b in batches)
        return cls(batches, video and batches[-1].keyframe, video, data, wall)
