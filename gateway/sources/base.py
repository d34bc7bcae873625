"""What every source type gives the demux thread: a URL to open and how to open it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class SourceError(Exception):
    """A source that cannot be made or opened; the message is safe to show a user."""


@dataclass
class InputSpec:
    url: str
    options: dict[str, str] = field(default_factory=dict)
    realtime: bool = False  # pace reads at the media's own speed and loop at the end (files)
    # Shown in logs and errors instead of the URL, which may carry credentials.
    label: str = ""


class Source(Protocol):
    async def resolve(self) -> InputSpec:
        """The input to open now. Called on every (re)connect, so expiring URLs stay fresh."""
        ...
