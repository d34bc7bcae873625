"""Per-viewer bounded queues of ready-made bytes.

An output makes its bytes once per stream and puts the same objects into every viewer's
queue. A viewer that falls behind by more than its budget loses what it has queued and
skips to the next keyframe, so it can never slow the others or grow memory.
"""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_BUDGET = 8 * 1024 * 1024  # bytes: a few seconds of a 4-8 Mbps stream


class ViewerQueue:
    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self.items: deque[tuple[bytes, bool]] = deque()  # (data, essential)
        self.queued_bytes = 0
        self.skipping = False
        self.skips = 0
        self.closed = False
        self._wakeup = asyncio.Event()

    def put(self, data: bytes, keyframe: bool, essential: bool = False) -> None:
        """Queue `data`. `essential` items (init segments) are never dropped."""
        if self.closed or (self.skipping and not (keyframe or essential)):
            return
        if not essential and self.queued_bytes + len(data) > self.budget:
            self.items = deque(item for item in self.items if item[1])
            self.queued_bytes = sum(len(item[0]) for item in self.items)
            self.skipping = True
            self.skips += 1
        if keyframe:
            self.skipping = False
        if self.skipping and not essential:
            return
        self.items.append((data, essential))
        self.queued_bytes += len(data)
        self._wakeup.set()

    async def get(self) -> bytes:
        """The next item; raises ConnectionResetError once closed and drained."""
        while not self.items:
            if self.closed:
                raise ConnectionResetError("viewer queue closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        data, _ = self.items.popleft()
        self.queued_bytes -= len(data)
        return data

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
