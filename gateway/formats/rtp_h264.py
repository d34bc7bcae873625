"""H.264 RTP payloads (RFC 6184, packetization-mode 1), made once per frame per stream.

Every slice NAL goes in its own packet (single NAL unit, or FU-A fragments when it is
larger than the payload budget); only the parameter sets are aggregated (one STAP-A of
SPS+PPS ahead of each IDR). Keeping slices out of aggregation packets is what makes
multi-slice frames (x264 sliced threads, many IP cameras) arrive intact in browsers.
"""

from __future__ import annotations

import struct

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
