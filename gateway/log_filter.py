"""Repeated log records, bounded: the first of a kind is written, the rest of its window
only counted, and the count told with the first one after the window.

A client can make one error happen thousands of times a second (CPython's accept loop logs
a traceback for each failed accept when fds run out; aiohttp one for each malformed
request); written out, that is a gigabyte of log in minutes and a loop busy formatting
tracebacks. Records of the same kind: a traceback of the same exception type raised at the
same place, or the same message from the same logger at the same level. Only warnings and
errors are bounded; info and debug lines pass as they are.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Hashable

WINDOW = 10.0  # seconds
MAX_KINDS = 4096  # kinds remembered; stale ones are forgotten past this


class RepeatFilter(logging.Filter):
    """Put on a handler: every record through it is checked, whatever its logger."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self.kinds: dict[Hashable, tuple[float, int]] = {}  # kind -> (window start, records held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = self.clock()
        kind = kind_of(record)
        seen = self.kinds.get(kind)
        if seen is not None and now - seen[0] < self.window:
            self.kinds[kind] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} [and {seen[1]} more like it in the {now - seen[0]:.0f} s before]"
            record.args = None
        if len(self.kinds) >= MAX_KINDS:
            self.kinds = {k: v for k, v in self.kinds.items() if now - v[0] < self.window}
        self.kinds[kind] = (now, 0)
        return True


def kind_of(record: logging.LogRecord) -> Hashable:
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno) if frames else None
        return record.name, type(exc), where
    return record.name, record.levelno, record.getMessage()


def bound_repeats(logger: logging.Logger) -> None:
    """Every handler of `logger` (the root one, after logging.basicConfig) writes repeats bounded."""
    for handler in logger.handlers:
        handler.addFilter(RepeatFilter())
