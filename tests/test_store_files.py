"""The store's file rules: client names, path layout, and reading a cut-short fMP4."""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.formats.fmp4 import fragment_tracks, init_segment
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams
from gateway.outputs.record.recorder import RecordFile
from gateway.store.fmp4_scan import media_duration
from gateway.store.layout import LayoutError, Place, check_name, parse_path

pytestmark = pytest.mark.unit

# Baseline 640x360 SPS/PPS (as x264 writes them).
SPS = bytes.fromhex("6742c01eda0280bfe5c04400000300040000030190f162ea")
PPS = bytes.fromhex("68ce3c80")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a..b", "", "x" * 65, "a b", "ä", "a\\b", "a%2fb"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(LayoutError):
        check_name(name, "record")


def test_names_paths_and_parsing_agree() -> None:
    assert check_name("door.mp4", "record") == "door" and check_name("x-1_a.b", "record") == "x-1_a.b"
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    path = Place.at("record", "cam", when).path("door")
    assert path == "record/cam/2026-01-02TZ+0000/03-04-05/door.mp4"
    info = parse_path(path)
    assert info is not None and info.start == when and info.token == "cam"
    assert Place.given("snapshot", "cam", "2026-01-02", "03-04-05", "-05:30").path("x") == \
        "snapshot/cam/2026-01-02TZ-0530/03-04-05/x.jpg"
    assert parse_path("record/cam/../../x.mp4") is None


def test_scan_counts_whole_fragments_only(tmp_path: Path) -> None:
    params = StreamParams(VideoParams.from_h264(SPS, PPS), AudioParams("aac", 16000, 1, bytes.fromhex("1408")))
    data = init_segment(params, with_duration=True)
    for second in range(3):
        video = [MediaPacket("video", (second * 25 + i) * 3600, (second * 25 + i) * 3600, 3600, i == 0, b"\0" * 50)
                 for i in range(25)]
        audio = [MediaPacket("audio", (second * 16 + i) * 1024, (second * 16 + i) * 1024, 1024, True, b"\0" * 10)
                 for i in range(16)]
        data += fragment_tracks(second + 1, [("video", video), ("audio", audio)])
    path = tmp_path / "a.mp4"
    path.write_bytes(data)
    assert media_duration(path) == pytest.approx(3.0)
    path.write_bytes(data[:-100])  # the last mdat cut short, as by a kill -9
    assert media_duration(path) == pytest.approx(2.0)
    path.write_bytes(data[:len(init_segment(params, with_duration=True))])
    assert media_duration(path) == 0.0


def test_finishing_writes_the_duration_in_place(tmp_path: Path) -> None:
    params = StreamParams(VideoParams.from_h264(SPS, PPS), None)
    init = init_segment(params, with_duration=True)
    video = [MediaPacket("video", i * 3600, i * 3600, 3600, i % 25 == 0, b"\0" * 50) for i in range(75)]
    body = fragment_tracks(1, [("video", video)])
    record = RecordFile(tmp_path / "d" / "a.mp4")
    record.open(init)
    record.append(body)
    before = record.path.read_bytes()
    record.finish(3.0)
    after = record.path.read_bytes()
    assert len(after) == len(before) == len(init) + len(body)
    changed = [i for i in range(len(after)) if after[i] != before[i]]
    mvhd, mehd = after.index(b"mvhd"), after.index(b"mehd")
    assert struct.unpack_from(">II", after, mvhd + 16) == (1000, 3000)  # timescale, duration
    assert struct.unpack_from(">I", after, mehd + 8) == (3000,)
    assert all(mvhd + 20 <= i < mvhd + 24 or mehd + 8 <= i < mehd + 12 for i in changed)
