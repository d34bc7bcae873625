"""Fire-and-forget coroutines that are not lost: asyncio keeps only a weak reference to a
task, so one nobody holds can be collected before it finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_running: set[asyncio.Task[Any]] = set()


def background(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `coro` as a task held until it is done."""
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
