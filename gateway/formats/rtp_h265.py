"""H.265 RTP payloads (RFC 7798, no DONL: sprop-max-don-diff 0): made once per frame per stream,
and read back from a publisher (single NAL unit, AP, FU).

As for H.264 (rtp_h264.py): every slice NAL goes in its own packet (a single NAL unit
packet, or fragmentation units when it is larger than the payload budget); only the
parameter sets are aggregated (one aggregation packet of VPS+SPS+PPS ahead of each IRAP
picture). The payload header of AP and FU packets is a NAL unit header (F, type,
LayerId, TID) of type 48 or 49.
"""

from __future__ import annotations

import struct

from gateway.formats.rtp_h264 import MAX_PAYLOAD, Fragment, aggregated

NAL_AP = 48
NAL_FU = 49


def payload_header(kind: int, forbidden: int, layer_id: int, tid: int) -> bytes:
    """The 2-byte payload header: a NAL unit header (RFC 7798 §4.4)."""
    return struct.pack(">H", forbidden << 15 | kind << 9 | layer_id << 3 | tid)


def fu(nal: bytes, budget: int = MAX_PAYLOAD) -> list[bytes]:
    """Fragment one NAL unit into FU payloads of at most `budget` bytes (RFC 7798 §4.4.3)."""
    header = int.from_bytes(nal[:2], "big")
    indicator = payload_header(NAL_FU, header >> 15, (header >> 3) & 0x3F, header & 0x07)
    kind = (header >> 9) & 0x3F
    body = nal[2:]
    chunk = budget - 3
    count = -(-len(body) // chunk)
    size = -(-len(body) // count)  # even fragments: no tiny last packet
    payloads = []
    for i in range(count):
        fu_header = kind | (0x80 if i == 0 else 0) | (0x40 if i == count - 1 else 0)
        payloads.append(indicator + bytes([fu_header]) + body[i * size : (i + 1) * size])
    return payloads


def ap(nals: list[bytes]) -> bytes:
    """One aggregation packet holding small NAL units (used for VPS+SPS+PPS, RFC 7798 §4.4.2):
    F is set if any unit's is, LayerId and TID are the lowest of the units'."""
    headers = [int.from_bytes(n[:2], "big") for n in nals]
    forbidden = max(h >> 15 for h in headers)
    layer_id = min((h >> 3) & 0x3F for h in headers)
    tid = min(h & 0x07 for h in headers)
    units = b"".join(struct.pack(">H", len(n)) + n for n in nals)
    return payload_header(NAL_AP, forbidden, layer_id, tid) + units


def packetize(nals: list[bytes], parameter_sets: list[bytes] | None = None) -> list[bytes]:
    """RTP payloads for one access unit; `parameter_sets` go first (for IRAP pictures)."""
    payloads = []
    if parameter_sets:
        aggregated = ap(parameter_sets)
        if len(aggregated) <= MAX_PAYLOAD:
            payloads.append(aggregated)
        else:
            nals = parameter_sets + nals
    for nal in nals:
        payloads += [nal] if len(nal) <= MAX_PAYLOAD else fu(nal)
    return payloads


def depacketize(payload: bytes) -> list[bytes] | Fragment:
    """The NAL units of one RTP payload (single NAL unit or AP), or the fragment an FU
    carries; ValueError for a payload we cannot read (PACI, too short). No DONL fields:
    a publisher that announces sprop-max-don-diff > 0 is refused at the SDP."""
    if len(payload) < 3:
        raise ValueError("truncated H.265 payload")
    header = int.from_bytes(payload[:2], "big")
    kind = (header >> 9) & 0x3F
    if kind < NAL_AP:
        return [payload]
    if kind == NAL_AP:
        return aggregated(payload[2:])
    if kind == NAL_FU:
        fu_header = payload[2]
        unit_header = payload_header(fu_header & 0x3F, header >> 15, (header >> 3) & 0x3F, header & 0x07)
        return Fragment(unit_header, payload[3:], bool(fu_header & 0x80), bool(fu_header & 0x40))
    raise ValueError(f"H.265 payload type {kind} not supported")
