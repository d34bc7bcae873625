"""The fixed RTP header (RFC 3550 §5.1) of a received packet: what a depacketizer needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RtpPacket:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """ValueError when `data` is not an RTP version 2 packet (or its lengths do not add up).
    CSRCs, a header extension and padding are skipped."""
    if len(data) < 12 or data[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension: 16-bit profile word, 16-bit length in words
        if len(data) < start + 4:
            raise ValueError("truncated RTP header extension")
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = len(data)
    if data[0] & 0x20:  # padding: its count is the last byte
        end -= data[-1]
    if start > end:
        raise ValueError("truncated RTP packet")
    return RtpPacket(
        marker=bool(data[1] & 0x80),
        payload_type=data[1] & 0x7F,
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        payload=data[start:end],
    )
