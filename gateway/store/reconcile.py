"""Bring the index back in step with the files at start-up (after a crash, or a hand edit).

Files in the layout but not in the index are added (a recording with the duration of its
complete fragments); files whose size changed since their row was written (the recording
that was being written when the gateway was killed) get their real duration; rows whose
file is gone are removed; leftovers of a crash with nothing playable (temp files,
recordings without a single fragment) are deleted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gateway.store.fmp4_scan import media_duration
from gateway.store.index import MediaEntry, MediaIndex
from gateway.store.layout import parse_path

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"  # snapshot writes go to such a file first, then are renamed


def _files(root: Path) -> dict[str, os.stat_result]:
    found: dict[str, os.stat_result] = {}
    for kind in ("record", "snapshot"):
        for directory, _, names in os.walk(root / kind):
            for name in names:
                full = Path(directory) / name
                rel = full.relative_to(root).as_posix()
                if name.startswith(TEMP_PREFIX):
                    full.unlink(missing_ok=True)
                    continue
                found[rel] = full.stat()
    return found


def reconcile(root: Path, index: MediaIndex) -> tuple[int, int, int]:
    """(added, updated, removed) rows."""
    on_disk = _files(root)
    indexed = {entry.path: entry for entry in index.oldest()}
    added, updated, removed = [], [], []
    for path, entry in indexed.items():
        if path not in on_disk:
            index.remove(path)
            removed.append(path)
        elif entry.size != on_disk[path].st_size:
            duration = media_duration(root / path) if entry.kind == "record" else 0.0
            updated.append(entry._replace(duration=duration, size=on_disk[path].st_size))
    for path, stat in on_disk.items():
        if path in indexed:
            continue
        info = parse_path(path)
        if info is None:
            continue  # not ours (or not in the layout): leave it alone
        duration = media_duration(root / path) if info.kind == "record" else 0.0
        added.append(MediaEntry(info.kind, info.token, path, info.start.timestamp(), duration, stat.st_size, info.tz))
    for entry in updated + added:
        if entry.kind == "record" and entry.duration <= 0:
            (root / entry.path).unlink(missing_ok=True)  # killed before its first fragment
            index.remove(entry.path)
            removed.append(entry.path)
    keep = [e for e in updated + added if e.kind == "snapshot" or e.duration > 0]
    index.put_many(keep)
    if keep or removed:
        log.info("media index: %d files added, %d updated, %d rows removed", len(added), len(updated), len(removed))
    return len(added), len(updated), len(removed)
