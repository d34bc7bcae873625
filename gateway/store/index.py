"""The media store's index: one SQLite row per recording or snapshot file.

Search has to answer over months of files in milliseconds, so the files are not listed
from disk per query; every writer (recorder, snapshotter, retention) keeps this table in
step with the files it creates, grows and deletes. Paths are relative to the store root
('/'-separated), so the store can move without rewriting the index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

KINDS = ("record", "snapshot")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    token TEXT NOT NULL,
    start REAL NOT NULL,
    duration REAL NOT NULL,
    size INTEGER NOT NULL,
    tz TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS media_by_time ON media (kind, token, start);
CREATE INDEX IF NOT EXISTS media_by_age ON media (kind, start);
"""


class MediaEntry(NamedTuple):
    """One file. A tuple, not a dataclass: Search builds thousands of them per answer."""

    kind: str  # "record" or "snapshot"
    token: str
    path: str  # relative to the store root, e.g. "record/cam1/2026-11-21TZ+0800/12-00-00/a.mp4"
    start: float  # epoch seconds of the first frame
    duration: float  # seconds; grows while a recording is written, 0 for snapshots
    size: int  # bytes
    tz: str = "+0000"  # the UTC offset the path's date and time are written in

    @property
    def end(self) -> float:
        return self.start + self.duration


class MediaIndex:
    """Rows of MediaEntry; one connection, used from the event loop (queries take < 1 ms)."""

    def __init__(self, db_path: Path):
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, entry: MediaEntry) -> None:
        """Add a file, or update it (a recording growing, or finished)."""
        self._db.execute(
            "INSERT OR REPLACE INTO media (path, kind, token, start, duration, size, tz) VALUES (?,?,?,?,?,?,?)",
            (entry.path, entry.kind, entry.token, entry.start, entry.duration, entry.size, entry.tz),
        )

    def put_many(self, entries: list[MediaEntry]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            for entry in entries:
                self.put(entry)

    def remove(self, path: str) -> None:
        self._db.execute("DELETE FROM media WHERE path = ?", (path,))

    def get(self, path: str) -> MediaEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM media WHERE path = ?", (path,)).fetchone()
        return _entry(row) if row else None

    def search(self, kind: str, token: str | None, start: float, end: float, limit: int = 10000) -> list[MediaEntry]:
        """Files of `kind` (of `token`, or all) that overlap [start, end), oldest first.

        A recording overlaps when it starts before `end` and ends after `start`; a snapshot
        when its time is in the range.
        """
        # Recordings are bounded in length (segments), so the start bound keeps the index useful.
        lookback = 0.0 if kind == "snapshot" else self.longest(kind)
        query = f"SELECT {_COLUMNS} FROM media WHERE kind = ? AND start >= ? AND start < ?"
        args: list[object] = [kind, start - lookback, end]
        if token is not None:
            query += " AND token = ?"
            args.append(token)
        query += " ORDER BY start, path LIMIT ?"
        args.append(limit)
        rows = self._db.execute(query, args).fetchall()
        return [e for e in map(_entry, rows) if e.start >= start or e.end > start]

    def longest(self, kind: str) -> float:
        row = self._db.execute("SELECT MAX(duration) FROM media WHERE kind = ?", (kind,)).fetchone()
        return float(row[0] or 0.0)

    def oldest(self, kind: str | None = None) -> Iterator[MediaEntry]:
        """All files, oldest first (for retention), of one kind or of both."""
        if kind is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM media ORDER BY start")
        else:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM media WHERE kind = ? ORDER BY start", (kind,))
        for row in rows.fetchall():
            yield _entry(row)

    def paths(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT path FROM media")}

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._db.execute("SELECT COUNT(*) FROM media").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM media WHERE kind = ?", (kind,)).fetchone()[0]


_COLUMNS = "kind, token, path, start, duration, size, tz"


def _entry(row: tuple) -> MediaEntry:
    return MediaEntry._make(row)
