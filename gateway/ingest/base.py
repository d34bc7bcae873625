"""What every source type gives the demux thread: a URL to open and how to open it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class SourceError(Exception):
    """A source that cannot be made or opened; the message is safe to show a user.

    `retry_after`: seconds the source asks to be left alone before the next attempt
    (a remote platform that is down or rate-limits), when longer than the usual backoff.
    """

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class InputSpec:
    url: str
    options: dict[str, str] = field(default_factory=dict)
    realtime: bool = False  # pace reads at the media's own speed and loop at the end (files)
    # Shown in logs and errors instead of the URL, which may carry credentials.
    label: str = ""
    # When the URL stops working (epoch seconds), for signed URLs that expire: the demux
    # thread opens a fresh input (resolve() again) beside this one before then.
    expires_at: float | None = None


class Source(Protocol):
    async def resolve(self) -> InputSpec:
        """The input to open now. Called on every (re)connect, so expiring URLs stay fresh."""
        ...

    def describe(self) -> dict[str, Any]:
        """What GetSrc adds for this source, learnt while connecting (never a credential)."""
        ...
