"""What an RTSP URL names: `rtsp://host:port/{token}[/trackID=N][?profile=sub]`.

Clients build a track's URL by appending its control (`trackID=N`) to the Content-Base,
which may itself end in a query (`...?profile=sub/trackID=0`): the control is taken out
wherever it is before the rest is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.hub.profile import profile_of

TRACK = re.compile(r"/trackID=(\d{1,2})")


@dataclass(frozen=True, slots=True)
class Target:
    token: str
    profile: str  # main or sub
    track: int | None  # the trackID of a SETUP, None for the whole stream


def parse_target(url: str) -> Target:
    """ValueError when `url` names no stream (no token, a bad profile, not an rtsp URL)."""
    track_match = TRACK.search(url)
    track = int(track_match.group(1)) if track_match else None
    rest = TRACK.sub("", url, count=1)
    parts = urlsplit(rest)
    if parts.scheme not in ("rtsp", "rtsps", ""):
        raise ValueError("not an rtsp URL")
    token = unquote(parts.path.strip("/"))
    if not token or "/" in token:
        raise ValueError("the path must be /{token}")
    profiles = parse_qs(parts.query.rstrip("/")).get("profile")
    return Target(token, profile_of(profiles[0] if profiles else None), track)


def content_base(url: str) -> str:
    """The request's URL as the base its tracks' controls are appended to."""
    return TRACK.sub("", url, count=1).rstrip("/") + "/"
