"""How late the event loop runs a timer: the one number that says the gateway is overloaded.

Everything here (media fan-out, HTTP, WebRTC) runs in one event loop, so any work that
blocks it (a slow callback, PBKDF2, a burst of requests) delays every client at once. A
timer every INTERVAL seconds measures that delay as the time it fires after it was due.
"""

from __future__ import annotations

import asyncio
from collections import deque

INTERVAL = 0.5  # seconds between two ticks
WINDOW = 10  # ticks the reported worst looks back over (5 s)


class LoopLag:
    """The worst lateness of a timer over the last WINDOW ticks (and of the tick due now,
    should the loop be late for it as it is read)."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=WINDOW)
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + INTERVAL
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._recent.append(max(0.0, now - self._due))
        self._schedule(now)

    def worst(self) -> float:
        """Seconds: the worst lateness of the recent ticks, 0.0 before the first."""
        late_now = self._loop.time() - self._due if self._handle is not None and self._loop is not None else 0.0
        return max(max(self._recent, default=0.0), late_now)
