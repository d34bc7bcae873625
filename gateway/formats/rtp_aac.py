"""AAC in RTP as mpeg4-generic (RFC 3640), read back from a publisher: the access units of
one payload, by the AU headers the SDP's fmtp describes (AAC-hbr: 13-bit size, 3-bit index).

A payload starts with AU-headers-length (16 bits, in bits), then the headers (size, then
index for the first and index-delta for the others), padded to a byte, then the AUs in
order. An AU that does not fit in the payload is a fragment; they are not joined here
(an AAC frame of a few hundred bytes never needs it), so such a payload is refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuHeaderLayout:
    size_length: int = 13
    index_length: int = 3
    index_delta_length: int = 3

    @classmethod
    def from_fmtp(cls, fmtp: dict[str, str]) -> AuHeaderLayout:
        """ValueError unless the fmtp says a layout with sizes we can read."""
        try:
            layout = cls(
                int(fmtp.get("sizelength", "0")),
                int(fmtp.get("indexlength", "0")),
                int(fmtp.get("indexdeltalength", "0")),
            )
        except ValueError:
            raise ValueError("mpeg4-generic sizes are not numbers") from None
        if not 1 <= layout.size_length <= 16 or not 0 <= layout.index_length <= 8 or layout.index_delta_length > 8:
            raise ValueError("mpeg4-generic without AU sizes (sizelength) is not supported")
        return layout


def access_units(payload: bytes, layout: AuHeaderLayout) -> list[bytes]:
    """The AAC frames of one payload; ValueError when its headers and data do not add up."""
    if len(payload) < 2:
        raise ValueError("truncated AU-headers-length")
    header_bits = int.from_bytes(payload[:2], "big")
    header_bytes = (header_bits + 7) // 8
    if 2 + header_bytes > len(payload):
        raise ValueError("AU headers longer than the payload")
    bits = int.from_bytes(payload[2 : 2 + header_bytes], "big") if header_bytes else 0
    left = header_bytes * 8
    sizes: list[int] = []
    used = 0
    while used < header_bits:
        index_length = layout.index_length if not sizes else layout.index_delta_length
        width = layout.size_length + index_length
        if used + width > header_bits:
            raise ValueError("AU header cut short")
        left -= width
        sizes.append((bits >> left) >> index_length & ((1 << layout.size_length) - 1))
        used += width
    frames = []
    at = 2 + header_bytes
    for size in sizes:
        if at + size > len(payload):
            raise ValueError("AU longer than the payload (a fragment)")
        frames.append(payload[at : at + size])
        at += size
    return frames
