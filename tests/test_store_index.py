"""The media index answers time-range searches the way Search and playback need them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.index import MediaEntry, MediaIndex

pytestmark = pytest.mark.unit


def rec(token: str, start: float, duration: float, name: str = "a") -> MediaEntry:
    return MediaEntry("record", token, f"record/{token}/{start:.0f}/{name}.mp4", start, duration, 1000)


def test_search_overlap_token_and_order(tmp_path: Path) -> None:
    index = MediaIndex(tmp_path / "index.sqlite3")
    index.put_many([rec("cam1", 100, 60), rec("cam1", 160, 60), rec("cam2", 100, 60), rec("cam1", 400, 10)])
    index.put(MediaEntry("snapshot", "cam1", "snapshot/cam1/s.jpg", 170, 0, 50))
    found = index.search("record", "cam1", 150, 200)
    assert [(e.start, e.duration) for e in found] == [(100, 60), (160, 60)]
    assert [e.token for e in index.search("record", None, 0, 1000)] == ["cam1", "cam2", "cam1", "cam1"]
    assert index.search("record", "cam1", 220, 400) == []  # ends are exclusive
    assert [e.path for e in index.search("snapshot", "cam1", 0, 1000)] == ["snapshot/cam1/s.jpg"]


def test_put_updates_a_growing_recording_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite3"
    index = MediaIndex(db)
    index.put(rec("cam1", 100, 1))
    index.put(rec("cam1", 100, 30))
    index.close()
    index = MediaIndex(db)
    assert index.count("record") == 1
    assert index.get("record/cam1/100/a.mp4").duration == 30
    index.remove("record/cam1/100/a.mp4")
    assert index.paths() == set()
