"""What the store's writers share: its root, its index, one writer thread, the paths being written."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.index import MediaIndex


@dataclass
class StoreContext:
    """`busy`: paths being written, which retention must never delete. `io`: one thread,
    so each file's writes stay in order and the event loop never waits on the disk."""

    root: Path
    index: MediaIndex
    io: Executor
    busy: set[str] = field(default_factory=set)
