"""Recording, snapshots, search and retention against a real camera and the real gateway.

Files are judged by ffprobe (an independent reader): durations, codecs, decodable frames.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.formats.audio_transcode import AAC_RATE
from gateway.store.index import MediaEntry, MediaIndex

SEARCH_ALL = {"start": "2000-01-01T000000Z", "end": "2100-01-01T000000Z"}


def probe(path: Path, count: bool = False) -> dict:
    """ffprobe's format duration and streams (with decoded frame counts if `count`)."""
    args = ["ffprobe", "-v", "error", "-show_entries",
            "format=duration:stream=codec_name,width,height,nb_read_frames", "-of", "json"]
    if count:
        args.append("-count_frames")
    out = subprocess.run(args + [str(path)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def store_file(gw, url_path: str) -> Path:
    assert url_path.startswith("/mediastore/")
    return gw.root / "mediastore" / url_path.removeprefix("/mediastore/")


def search(gw, session: str, kind: str = "record", **query) -> list[dict]:
    status, answer = gw.api("Search", session=session, type=kind, **({**SEARCH_ALL, **query}))
    assert status == 200 and answer["bStatus"], answer
    return answer["record"]


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def test_record_duration_5_gives_a_playable_mp4_that_search_lists(camera_source):
    gw, session, _ = camera_source(audio="pcma")
    asked = time.time()
    status, answer = gw.api("Record", session=session, token="cam", duration=5, filename="five")
    assert status == 200 and answer["bStatus"], answer
    path = store_file(gw, answer["strPath"])
    assert path.name == "five.mp4" and path.parent.parent.parent.name == "cam"

    time.sleep(2.5)  # playable while it is written
    growing = probe(path, count=True)
    assert {s["codec_name"] for s in growing["streams"]} == {"h264", "aac"}
    assert int(next(s for s in growing["streams"] if s["codec_name"] == "h264")["nb_read_frames"]) >= 25

    done = wait_for(lambda: [r for r in search(gw, session, token="cam") if r["strDuration"] == "5"], 10)
    assert done, search(gw, session, token="cam")
    info = probe(path, count=True)
    assert abs(float(info["format"]["duration"]) - 5) <= 0.5, info
    video = next(s for s in info["streams"] if s["codec_name"] == "h264")
    assert (video["width"], video["height"]) == (640, 360)
    assert 110 <= int(video["nb_read_frames"]) <= 140  # 25 fps camera
    aac_frames = 5 * AAC_RATE / 1024  # the camera's G.711 transcoded to AAC
    assert any(s["codec_name"] == "aac" and int(s["nb_read_frames"]) >= 0.9 * aac_frames for s in info["streams"])

    [entry] = done
    assert entry["strPath"] == answer["strPath"] and entry["strToken"] == "cam"
    started = datetime.strptime(entry["strStartTime"], "%Y-%m-%dT%H%M%S%z").timestamp()
    assert asked - 2 <= started <= asked + 1  # from the cached keyframe, at most a GOP before
    # A time window around it finds it; one after it does not.
    fmt = "%Y-%m-%dT%H%M%S+00"
    utc = datetime.fromtimestamp(started, timezone.utc)
    assert search(gw, session, token="cam", start=utc.strftime(fmt), end=(utc + timedelta(seconds=1)).strftime(fmt))
    assert not search(gw, session, token="cam", start=(utc + timedelta(seconds=10)).strftime(fmt),
                      end=(utc + timedelta(seconds=60)).strftime(fmt))


def test_kill_9_mid_recording_leaves_a_playable_file_and_restart_keeps_older_ones(camera_source):
    gw, session, _ = camera_source(audio="pcma")
    status, first = gw.api("Record", session=session, token="cam", duration=2, filename="older")
    assert status == 200, first
    assert wait_for(lambda: any(r["strDuration"] == "2" for r in search(gw, session, token="cam")), 10)
    older = store_file(gw, first["strPath"])
    older_bytes = older.read_bytes()

    status, answer = gw.api("Record", session=session, token="cam", duration=60, filename="killed")
    assert status == 200, answer
    started = time.monotonic()
    time.sleep(4)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    killed_after = time.monotonic() - started

    partial = store_file(gw, answer["strPath"])
    info = probe(partial, count=True)
    assert float(info["format"]["duration"]) >= killed_after - 1.5, info
    video = next(s for s in info["streams"] if s["codec_name"] == "h264")
    assert int(video["nb_read_frames"]) >= 25 * (killed_after - 1.5)

    gw.proc = None
    gw.start()
    session = gw.login()
    rows = {r["strPath"]: r for r in search(gw, session, token="cam")}
    assert rows[first["strPath"]]["strDuration"] == "2"
    assert older.read_bytes() == older_bytes and probe(older)["streams"]
    recovered = int(rows[answer["strPath"]]["strDuration"])
    assert killed_after - 1.5 <= recovered <= killed_after + 1  # its real length, read from its fragments
    assert partial.stat().st_size > 0 and probe(partial)["streams"]


BAD_REQUESTS = [
    ("Record", {"duration": 5, "filename": "../../x"}),
    ("Record", {"duration": 5, "filename": "a/b"}),
    ("Record", {"duration": 5, "filename": ".hidden"}),
    ("Record", {"duration": 5, "filename": "a..b"}),
    ("Record", {"duration": 5, "filename": ""}),
    ("Record", {"duration": 0}),
    ("Record", {"duration": -5}),
    ("Record", {"duration": 86401}),
    ("Record", {"duration": "1e9"}),
    ("Record", {"duration": "five"}),
    ("Record", {}),
    ("PathRecord", {"start1": "2026-13-01", "start2": "12-00-00", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "../..", "start2": "12-00-00", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "25-00-00", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "12-00-00", "tz": "+15", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "12-00-00", "tz": "bad", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "12-00-00", "duration": 5}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "12-00-00", "duration": 5, "filename": "../x"}),
    ("ManualRecordStart", {"duration": 100000}),
    ("Snapshot", {"filename": "../x"}),
    ("Snapshot", {"filename": "a/b.jpg"}),
    ("PathSnapshot", {"start1": "2026-02-30", "start2": "12-00-00", "filename": "x"}),
    ("PathSnapshot", {"start1": "2026-01-01", "start2": "12-00-00", "tz": "+8:99", "filename": "x"}),
    ("Search", {"start": "yesterday", "end": "2026-01-01T000000+08"}),
    ("Search", {"start": "2026-01-01T000000+08", "end": "2026-01-01T000000+15"}),
    ("Search", {"start": "2026-01-02T000000+08", "end": "2026-01-01T000000+08"}),
    ("Search", {"type": "video", **SEARCH_ALL}),
    # A trailing newline or non-ASCII digits (`$`, `\d`, str.isdigit take them) in a name or folder.
    ("Record", {"duration": 5, "filename": "x\n"}),
    ("Record", {"duration": "\u0661\u0660"}),
    ("Record", {"duration": "\u00b2"}),
    ("Record", {"duration": "9" * 5000}),
    ("PathRecord", {"start1": "2026-01-01\n", "start2": "12-00-00", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-0\u0661", "start2": "12-00-00", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "12-00-00\n", "duration": 5, "filename": "x"}),
    ("PathRecord", {"start1": "2026-01-01", "start2": "\u0661\u0662-00-00", "duration": 5, "filename": "x"}),
    ("Snapshot", {"filename": "x\n"}),
    ("PathSnapshot", {"start1": "2026-01-01", "start2": "12-00-0\u0661", "filename": "x"}),
    ("Search", {"start": "\u0662026-01-01T000000+08", "end": "2026-01-02T000000+08"}),
]


def test_bad_input_is_refused_and_nothing_is_written(gateway):
    session = gateway.login()
    for command, params in BAD_REQUESTS:
        status, answer = gateway.api(command, session=session, token="token1", **params)
        assert status == 400 and answer["bStatus"] is False and answer["strCode"], (command, params, answer)
    status, answer = gateway.api("Record", session=session, token="nope", duration=5)
    assert status == 404, answer
    status, answer = gateway.api("Record", session=session, token="../x", duration=5)
    assert status == 400, answer
    store = gateway.root / "mediastore"
    assert sorted(p.name for p in store.iterdir()) == [n for n in sorted(p.name for p in store.iterdir())
                                                       if n.startswith("index.sqlite3")]
    assert not list(gateway.root.rglob("x.*")) and not list(gateway.root.rglob("*.mp4.*"))
    assert not [p for p in gateway.root.rglob("*") if not p.name.isascii() or "\n" in p.name]
    assert "Traceback" not in gateway.log()


def test_snapshot_and_path_snapshot_write_decodable_jpegs(camera_source):
    gw, session, _ = camera_source(audio="none", width=800, height=450)
    status, answer = gw.api("Snapshot", session=session, token="cam")
    assert status == 200 and answer["bStatus"], answer
    jpeg = store_file(gw, answer["strPath"])
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"
    [stream] = probe(jpeg)["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 800, 450)

    status, answer = gw.api("PathSnapshot", session=session, token="cam", start1="2026-01-02", start2="03-04-05",
                            tz="+05:30", filename="door")
    assert status == 200, answer
    assert answer["strPath"] == "/mediastore/snapshot/cam/2026-01-02TZ+0530/03-04-05/door.jpg"
    assert probe(store_file(gw, answer["strPath"]))["streams"][0]["width"] == 800
    found = search(gw, session, kind="snapshot", token="cam")
    assert len(found) == 2 and all(r["strDuration"] == "0" for r in found)
    assert not search(gw, session, kind="record", token="cam")
    # No temp file is left beside them.
    assert not [p for p in (gw.root / "mediastore").rglob(".tmp-*")]


def test_continuous_recording_cuts_consecutive_segments_and_manual_recording(make_gateway, camera_factory):
    camera = camera_factory(audio="pcma")
    gw = make_gateway(system__nRecordSegmentSec=2)
    session = gw.login()
    status, answer = gw.api("AddSrcRTSP", session=session, name="Cam", token="cam", url=camera.url, rec="true")
    assert status == 200, answer
    assert gw.api("GetSrc", session=session, token="cam")[1]["src"][0]["bRec"] is True
    segments = wait_for(lambda: [r for r in search(gw, session, token="cam") if r["strDuration"] != "0"][:3]
                        if len(search(gw, session, token="cam")) >= 4 else None, 20)
    assert segments, search(gw, session, token="cam")
    starts = [datetime.strptime(r["strStartTime"], "%Y-%m-%dT%H%M%S%z").timestamp() for r in segments]
    for (a, b), row in zip(zip(starts, starts[1:]), segments):
        assert 1 <= b - a <= 4 and row["strDuration"] in ("2", "3")
    for row in segments:
        info = probe(store_file(gw, row["strPath"]))
        assert abs(float(info["format"]["duration"]) - 2) <= 0.6, info
        assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}

    status, answer = gw.api("SetRec", session=session, token="cam", enable="false")
    assert status == 200, answer
    count = len(search(gw, session, token="cam"))
    time.sleep(3)
    assert len(search(gw, session, token="cam")) == count  # no new segments
    assert json.loads(gw.conf_path.read_text())["source"]["src"][0]["bRec"] is False

    status, answer = gw.api("ManualRecordStart", session=session, token="cam")
    assert status == 200, answer
    assert gw.api("ManualRecordStart", session=session, token="cam")[0] == 400  # one at a time
    time.sleep(1.5)
    status, stopped = gw.api("ManualRecordStop", session=session, token="cam")
    assert status == 200 and stopped["strPath"] == answer["strPath"], stopped
    info = wait_for(lambda: probe(store_file(gw, answer["strPath"])), 5)
    assert 1.0 <= float(info["format"]["duration"]) <= 3.5, info
    assert gw.api("ManualRecordStop", session=session, token="cam")[0] == 400


def test_retention_deletes_the_oldest_first_at_start_up(make_gateway):
    gw = make_gateway(start=False, system__nRecordInDay=7, system__nSnapshotInDay=2)
    store = gw.root / "mediastore"
    index = MediaIndex(store / "index.sqlite3")
    now = time.time()
    ages = {"old-rec": ("record", 10), "new-rec": ("record", 3), "old-snap": ("snapshot", 3),
            "new-snap": ("snapshot", 1)}
    for name, (kind, days) in ages.items():
        when = datetime.fromtimestamp(now - days * 86400, timezone.utc)
        ext = "mp4" if kind == "record" else "jpg"
        rel = f"{kind}/cam/{when:%Y-%m-%d}TZ+0000/{when:%H-%M-%S}/{name}.{ext}"
        (store / rel).parent.mkdir(parents=True)
        (store / rel).write_bytes(b"x" * 100)
        index.put(MediaEntry(kind, "cam", rel, when.timestamp(), 60 if kind == "record" else 0, 100, "+0000"))
    index.close()
    gw.start()
    session = gw.login()
    assert [Path(r["strPath"]).stem for r in search(gw, session)] == ["new-rec"]
    assert [Path(r["strPath"]).stem for r in search(gw, session, kind="snapshot")] == ["new-snap"]
    assert sorted(p.stem for p in store.rglob("*.*") if "index" not in p.name) == ["new-rec", "new-snap"]
    assert len(list((store / "record" / "cam").iterdir())) == 1  # the old file's directories went too

    # A full disk (here: any use above 1 %) deletes everything that is not being written.
    gw.stop()
    conf = json.loads(gw.conf_path.read_text())
    conf["system"]["nDiskFullPercent"] = 1
    gw.conf_path.write_text(json.dumps(conf))
    gw.start()
    session = gw.login()
    assert search(gw, session) == [] and search(gw, session, kind="snapshot") == []
    assert not [p for p in store.rglob("*.*") if "index" not in p.name]


def test_player_snapshot_button_saves_a_jpeg(gateway, page):
    page.goto(f"{gateway.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", gateway.login())
    page.goto(f"{gateway.url}/player.html?token=token1")
    page.click("#save-snapshot")
    page.wait_for_function("() => document.getElementById('snapshot-saved').dataset.path")
    url_path = page.evaluate("() => document.getElementById('snapshot-saved').dataset.path")
    [stream] = probe(store_file(gateway, url_path))["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 640, 360)
