"""NAL unit framing shared by H.264 and H.265: Annex-B (start codes) and length prefixes.

Cameras send Annex-B (RTSP, TS); files and RTMP send length-prefixed NAL units (avcC,
hvcC). The hub keeps one form for both codecs: 4-byte lengths, without parameter sets or
access unit delimiters, which is what an MP4 sample is.
"""

from __future__ import annotations

import struct


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer (3- or 4-byte start codes)."""
    nals = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        # A 4-byte start code leaves one zero byte at the end of the previous NAL.
        nal = data[begin:end]
        if nxt >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
        start = nxt
    return nals


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """NAL units of a length-prefixed (AVCC) buffer."""
    nals = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            break
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")


def to_avcc(nals: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def to_annexb(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class BitReader:
    """Reads an RBSP (emulation prevention removed) bit by bit, with Exp-Golomb codes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)
