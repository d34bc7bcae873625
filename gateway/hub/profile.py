"""Main and sub: which of a source's two streams a client asks for (`profile=`).

A source may have a sub stream (a camera's smaller rendition: an ONVIF sub profile, a
second URL, HikCentral's sub quality), which is its own hub Stream; a source without
one serves its main stream to `profile=sub`.
"""

from __future__ import annotations

MAIN = "main"
SUB = "sub"


def profile_of(value: str | None) -> str:
    """A client's `profile=`: main (also when empty or not given) or sub; ValueError otherwise."""
    if not value or value == MAIN:
        return MAIN
    if value == SUB:
        return SUB
    raise ValueError(f"profile must be main or sub, not {value[:32]!r}")
