"""Where a recording or snapshot lives in the store, and what a client may name it.

h5stream's layout: `{kind}/{token}/{Y-M-D}TZ{±HHMM}/{h-m-s}/{name}.{mp4|jpg}`, relative to
the store root, the date and time being the file's start in that zone. Client-given parts
(file names, PathRecord's day and time) are checked here so no request can write outside
its directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from gateway.store.timefmt import TimeFormatError, format_offset, parse_offset

EXTENSIONS = {"record": "mp4", "snapshot": "jpg"}

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_CLOCK = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{2})")
_PATH = re.compile(
    r"(?P<kind>record|snapshot)/(?P<token>[A-Za-z0-9_.-]{1,64})/(?P<day>[0-9]{4}-[0-9]{2}-[0-9]{2})TZ(?P<tz>[+-][0-9]{4})/"
    r"(?P<clock>[0-9]{2}-[0-9]{2}-[0-9]{2})/[A-Za-z0-9_.-]{1,64}\.(mp4|jpg)"
)


class LayoutError(ValueError):
    """A client-given name, day, time or zone that cannot make a store path."""


def check_name(name: str, kind: str) -> str:
    """A file name without directory parts (the extension is optional and added back)."""
    ext = "." + EXTENSIONS[kind]
    if name.lower().endswith(ext):
        name = name[: -len(ext)]
    if not _NAME.fullmatch(name) or ".." in name or name.startswith("."):
        raise LayoutError("filename must be 1-64 letters, digits, '-', '_' or '.', without '..' or a leading '.'")
    return name


@dataclass(frozen=True)
class Place:
    """A store path being chosen: its directory parts and the zone they are written in."""

    kind: str
    token: str
    day: str  # Y-M-D
    clock: str  # h-m-s
    tz: str  # +HHMM

    @classmethod
    def at(cls, kind: str, token: str, when: datetime) -> Place:
        """The place for a file starting at `when` (aware), in `when`'s zone."""
        assert when.tzinfo is not None
        return cls(kind, token, when.strftime("%Y-%m-%d"), when.strftime("%H-%M-%S"), format_offset(when.tzinfo, when))

    @classmethod
    def given(cls, kind: str, token: str, day: str, clock: str, tz: str | None) -> Place:
        """PathRecord/PathSnapshot's `start1` (Y-M-D), `start2` (h-m-s) and `tz`."""
        match = _DAY.fullmatch(day)
        try:
            if not match:
                raise ValueError
            datetime(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise LayoutError(f"start1 must be a date as Y-M-D, e.g. 2026-11-21, not {day!r}") from None
        match = _CLOCK.fullmatch(clock)
        if not match or int(match[1]) > 23 or int(match[2]) > 59 or int(match[3]) > 59:
            raise LayoutError(f"start2 must be a time as h-m-s, e.g. 12-00-00, not {clock!r}")
        try:
            zone = parse_offset(tz) if tz is not None else local_zone()
        except TimeFormatError as e:
            raise LayoutError(str(e)) from None
        return cls(kind, token, day, clock, format_offset(zone))

    def path(self, name: str) -> str:
        return f"{self.kind}/{self.token}/{self.day}TZ{self.tz}/{self.clock}/{name}.{EXTENSIONS[self.kind]}"

    def free_path(self, root: Path, name: str, taken: set[str]) -> str:
        """`path(name)`, or `name-1`, `name-2`... if a file is there or the path is `taken`."""
        path, n = self.path(name), 0
        while path in taken or (root / path).exists():
            n += 1
            path = self.path(f"{name}-{n}")
        return path


@dataclass(frozen=True)
class PathInfo:
    kind: str
    token: str
    start: datetime  # from the path's day, time and zone
    tz: str


def parse_path(path: str) -> PathInfo | None:
    """What a store path says about its file; None for anything not in the layout."""
    match = _PATH.fullmatch(path)
    if not match:
        return None
    try:
        zone = parse_offset(match["tz"])
        when = datetime.strptime(f"{match['day']} {match['clock']}", "%Y-%m-%d %H-%M-%S").replace(tzinfo=zone)
    except ValueError:
        return None
    return PathInfo(match["kind"], match["token"], when, match["tz"])


def local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None  # astimezone() always gives an aware time
    return zone
