"""How much media a fragmented MP4 on disk holds: for start-up reconciling after a crash.

Reads only box headers and the moof boxes (mdat payloads are skipped), so a 600 s
recording is scanned in about a millisecond. A fragment cut short by a crash (its moof or
mdat running past the end of the file) is not counted: players stop before it too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _box_at(head: bytes, pos: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, payload start, box end) of the box at `pos` whose first (up to 16) bytes are
    `head`, in a region ending at `end`; None if it is cut short or malformed."""
    size, kind = struct.unpack_from(">I4s", head)
    header = 8
    if size == 1:
        if len(head) < 16:
            return None
        size, header = struct.unpack_from(">Q", head, 8)[0], 16
    elif size == 0:
        size = end - pos
    if size < header or pos + size > end:
        return None
    return kind, pos + header, pos + size


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end and (box := _box_at(data[pos : min(pos + 16, end)], pos, end)) is not None:
        yield box
        pos = box[2]


def _timescales(moov: bytes) -> dict[int, int]:
    """track_id → mdhd timescale."""
    scales: dict[int, int] = {}
    for kind, start, end in _boxes(moov):
        if kind != b"trak":
            continue
        track_id = timescale = 0
        for sub, s, e in _boxes(moov, start, end):
            if sub == b"tkhd":
                version = moov[s]
                track_id = struct.unpack_from(">I", moov, s + (20 if version == 1 else 12))[0]
            elif sub == b"mdia":
                for leaf, ls, _ in _boxes(moov, s, e):
                    if leaf == b"mdhd":
                        version = moov[ls]
                        timescale = struct.unpack_from(">I", moov, ls + (20 if version == 1 else 12))[0]
        if track_id and timescale:
            scales[track_id] = timescale
    return scales


def _traf_span(moof: bytes, start: int, end: int) -> tuple[int, int, int] | None:
    """(track id, base decode time, total sample duration) of one traf."""
    track_id, base, default_duration, total = 0, None, 0, 0
    for kind, s, _ in _boxes(moof, start, end):
        flags = int.from_bytes(moof[s + 1 : s + 4], "big")
        if kind == b"tfhd":
            track_id = struct.unpack_from(">I", moof, s + 4)[0]
            pos = s + 8
            pos += 8 if flags & 0x01 else 0  # base data offset
            pos += 4 if flags & 0x02 else 0  # sample description index
            if flags & 0x08:
                default_duration = struct.unpack_from(">I", moof, pos)[0]
        elif kind == b"tfdt":
            base = struct.unpack_from(">Q" if moof[s] == 1 else ">I", moof, s + 4)[0]
        elif kind == b"trun":
            count = struct.unpack_from(">I", moof, s + 4)[0]
            pos = s + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
            fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
            if 0x100 not in fields:
                total += default_duration * count
                continue
            for i in range(count):
                total += struct.unpack_from(">I", moof, pos + 4 * len(fields) * i)[0]
    if not track_id or base is None:
        return None
    return track_id, base, total


def _top_level(f: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int]]:
    """_boxes for a whole file, reading only each box's header."""
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        box = _box_at(f.read(min(16, size - pos)), pos, size)
        if box is None:
            return
        yield box
        pos = box[2]


def media_duration(path: Path) -> float:
    """Seconds of complete fragments in the file (the video track's, else the longest)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        scales: dict[int, int] = {}
        first: dict[int, int] = {}
        last_end: dict[int, int] = {}
        pending: list[tuple[int, int, int]] = []
        for kind, start, end in _top_level(f, size):
            if kind == b"moov":
                f.seek(start)
                scales = _timescales(f.read(end - start))
            elif kind == b"moof":
                f.seek(start)
                moof = f.read(end - start)
                pending = [span for k, s, e in _boxes(moof) if k == b"traf" and (span := _traf_span(moof, s, e))]
            elif kind == b"mdat":
                for track_id, base, total in pending:  # a fragment counts once its mdat is whole
                    first.setdefault(track_id, base)
                    last_end[track_id] = base + total
                pending = []
    spans = {tid: (last_end[tid] - first[tid]) / scales[tid] for tid in last_end if scales.get(tid)}
    if not spans:
        return 0.0
    return spans.get(1, max(spans.values()))
