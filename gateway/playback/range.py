"""What a playback or a download covers: a token's recordings between two instants,
found through the store's index (never by listing directories)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.config.file import valid_token
from gateway.core import Gateway
from gateway.playback.pacer import Segment
from gateway.store.index import MediaEntry
from gateway.store.timefmt import TimeFormatError, parse_time
from gateway.web.errors import ApiError

MAX_RANGE = 24 * 3600.0  # seconds a playback or download may span


@dataclass(frozen=True)
class RecordRange:
    """What a playback or download covers: a token's recordings between two instants."""

    token: str
    begin: float  # epoch seconds
    end: float
    entries: list[MediaEntry]

    def segments(self, gw: Gateway) -> list[Segment]:
        root = gw.settings.system.mediastore_dir
        return [Segment(root / e.path, e.start - self.begin, e.duration) for e in self.entries]


def _time(query: Mapping[str, str], name: str) -> datetime:
    text = query.get(name)
    if not text:
        raise ApiError(400, f"missing parameter '{name}'")
    try:
        return parse_time(text[:64])
    except TimeFormatError as e:
        raise ApiError(400, f"parameter '{name}': {e}") from None


def record_range(gw: Gateway, query: Mapping[str, str], begin_name: str, end_name: str) -> RecordRange:
    """The recordings a request asks for, or ApiError (400 bad input, 404 nothing there).

    `filename` (a path from Search, with or without /mediastore/) plays that one file;
    the h5s player sends `filename=fake` when it means none.
    """
    token = query.get("token", "")
    if not valid_token(token):
        raise ApiError(400, "token must be 1-64 letters, digits, '-', '_' or '.'")
    filename = query.get("filename", "")
    if filename and filename != "fake":
        path = filename.removeprefix("/").removeprefix("mediastore/")
        entry = gw.media_index.get(path[:1024])
        if entry is None or entry.kind != "record" or entry.token != token:
            raise ApiError(404, f"no recording {filename[:200]!r} of {token!r}")
        begin = _time(query, begin_name).timestamp() if query.get(begin_name) else entry.start
        end = _time(query, end_name).timestamp() if query.get(end_name) else entry.end
        entries = [entry] if entry.start < end and entry.end > begin else []
    else:
        begin, end = _time(query, begin_name).timestamp(), _time(query, end_name).timestamp()
        entries = []
    if not end > begin:
        raise ApiError(400, f"'{end_name}' must be after '{begin_name}'")
    if end - begin > MAX_RANGE:
        raise ApiError(400, f"the range may span {MAX_RANGE / 3600:g} hours at most")
    if not entries and not (filename and filename != "fake"):
        entries = gw.media_index.search("record", token, begin, end)
    root = gw.settings.system.mediastore_dir
    entries = [e for e in entries if (root / e.path).is_file()]
    if not entries:
        if token not in gw.config.sources and not gw.media_index.search("record", token, 0, math.inf, limit=1):
            raise ApiError(404, f"unknown token {token!r}")
        raise ApiError(404, f"no recordings of {token!r} in that range")
    return RecordRange(token, begin, end, entries)
