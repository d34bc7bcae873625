"""H.264 RTP payloads (RFC 6184, packetization-mode 1): made once per frame per stream, and read
back from a publisher (single NAL unit, STAP-A, FU-A; the receiver joins fragments).

Every slice NAL goes in its own packet (single NAL unit, or FU-A fragments when it is
larger than the payload budget); only the parameter sets are aggregated (one STAP-A of
SPS+PPS ahead of each IDR). Keeping slices out of aggregation packets is what makes
multi-slice frames (x264 sliced threads, many IP cameras) arrive intact in browsers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_PAYLOAD = 1200  # bytes: fits an MTU of 1280 with RTP, SRTP and UDP/IP headers
NAL_STAP_A = 24
NAL_FU_A = 28


def fu_a(nal: bytes, budget: int = MAX_PAYLOAD) -> list[bytes]:
    """Fragment one NAL unit into FU-A payloads of at most `budget` bytes."""
    indicator = (nal[0] & 0xE0) | NAL_FU_A
    kind = nal[0] & 0x1F
    body = nal[1:]
    chunk = budget - 2
    count = -(-len(body) // chunk)
    size = -(-len(body) // count)  # even fragments: no tiny last packet
    payloads = []
    for i in range(count):
        header = kind | (0x80 if i == 0 else 0) | (0x40 if i == count - 1 else 0)
        payloads.append(bytes([indicator, header]) + body[i * size : (i + 1) * size])
    return payloads


def stap_a(nals: list[bytes]) -> bytes:
    """One aggregation packet holding small NAL units (used for SPS+PPS)."""
    nri = max(n[0] & 0x60 for n in nals)
    return bytes([nri | NAL_STAP_A]) + b"".join(struct.pack(">H", len(n)) + n for n in nals)


def packetize(nals: list[bytes], parameter_sets: list[bytes] | None = None) -> list[bytes]:
    """RTP payloads for one access unit; `parameter_sets` go first (for IDR frames)."""
    payloads = []
    if parameter_sets:
        aggregated = stap_a(parameter_sets)
        payloads += [aggregated] if len(aggregated) <= MAX_PAYLOAD else list(parameter_sets)
    for nal in nals:
        payloads += [nal] if len(nal) <= MAX_PAYLOAD else fu_a(nal)
    return payloads


@dataclass(frozen=True, slots=True)
class Fragment:
    """One piece of a fragmented NAL unit (H.264 FU-A, H.265 FU): the receiver joins them."""

    header: bytes  # the NAL unit header of the whole unit (1 byte H.264, 2 bytes H.265)
    body: bytes
    start: bool
    end: bool


def aggregated(units: bytes) -> list[bytes]:
    """The NAL units of an aggregation packet's body: each with a 16-bit size in front."""
    nals = []
    at = 0
    while at + 2 <= len(units):
        size = int.from_bytes(units[at : at + 2], "big")
        if size == 0 or at + 2 + size > len(units):
            raise ValueError("aggregation packet sizes do not add up")
        nals.append(units[at + 2 : at + 2 + size])
        at += 2 + size
    if at != len(units):
        raise ValueError("aggregation packet ends inside a size")
    return nals


def depacketize(payload: bytes) -> list[bytes] | Fragment:
    """The NAL units of one RTP payload (single NAL unit or STAP-A), or the fragment an FU-A
    carries; ValueError for a payload we cannot read (STAP-B, MTAP, FU-B, empty)."""
    if not payload:
        raise ValueError("empty H.264 payload")
    kind = payload[0] & 0x1F
    if 1 <= kind <= 23:
        return [payload]
    if kind == NAL_STAP_A:
        return aggregated(payload[1:])
    if kind == NAL_FU_A:
        if len(payload) < 3:
            raise ValueError("truncated FU-A")
        header = bytes([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
        return Fragment(header, payload[2:], bool(payload[1] & 0x80), bool(payload[1] & 0x40))
    raise ValueError(f"H.264 payload type {kind} not supported")
