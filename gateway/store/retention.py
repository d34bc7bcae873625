"""Retention: delete the oldest recordings and snapshots first, never a file being written.

Two rules: files older than their kind's limit in days (system.nRecordInDay,
system.nSnapshotInDay; 0 keeps them for ever), and, while the disk holding the store is
fuller than system.nDiskFullPercent, the oldest files of either kind. Directories left
empty are removed with their files. RetentionTimer runs a pass at start and every minute.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from gateway.config.settings import SystemSettings
from gateway.store.context import StoreContext
from gateway.store.index import MediaEntry, MediaIndex

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 60.0  # seconds between passes
MAX_DELETES_PER_PASS = 2000  # keep one pass short on the event loop; the next pass goes on


def disk_used_percent(root: Path) -> float:
    usage = shutil.disk_usage(root)
    return 100.0 * (usage.total - usage.free) / usage.total if usage.total else 0.0


def _delete(root: Path, index: MediaIndex, entry: MediaEntry) -> None:
    path = root / entry.path
    path.unlink(missing_ok=True)
    index.remove(entry.path)
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            break
        parent = parent.parent


def retention_pass(
    root: Path, index: MediaIndex, days: dict[str, int], full_percent: int, busy: set[str], now: float | None = None
) -> int:
    """Delete what the rules say; the number of files deleted."""
    now = time.time() if now is None else now
    deleted = 0
    for kind, limit in days.items():
        if limit <= 0:
            continue
        cutoff = now - limit * 86400
        for entry in index.oldest(kind):
            if entry.end >= cutoff or deleted >= MAX_DELETES_PER_PASS:
                break
            if entry.path not in busy:
                _delete(root, index, entry)
                deleted += 1
    if disk_used_percent(root) > full_percent:
        for entry in index.oldest():
            if deleted >= MAX_DELETES_PER_PASS or disk_used_percent(root) <= full_percent:
                break
            if entry.path not in busy:
                _delete(root, index, entry)
                deleted += 1
    if deleted:
        log.info("retention: deleted %d old files (disk %.0f%% used)", deleted, disk_used_percent(root))
    return deleted


class RetentionTimer:
    """Runs retention_pass now and every RETENTION_INTERVAL seconds, on the event loop."""

    def __init__(self, ctx: StoreContext, settings: SystemSettings):
        self.ctx = ctx
        self.days = {"record": settings.record_days, "snapshot": settings.snapshot_days}
        self.full_percent = settings.disk_full_percent
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def run_once(self) -> int:
        return retention_pass(self.ctx.root, self.ctx.index, self.days, self.full_percent, self.ctx.busy)

    async def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(RETENTION_INTERVAL)
