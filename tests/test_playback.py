"""Playback of recordings: WS playback in Chromium (seek, pause, end), the store's files
over HTTP with ranges, and MP4 downloads of a range, from stamped fMP4 segments written
into the real gateway's store and index (tests/fixtures/recordings.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.request
from urllib.parse import quote
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from tests.fixtures.recordings import make_recordings
from tests.fixtures.ws_client import fragment_info, split_fragments
from tests.test_browser import wait_playing

TZ = timezone(timedelta(hours=8))
CAM = {"strName": "Cam", "strToken": "cam", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}
LENGTHS = [5.0, 5.0, 5.0]
GOP = 3.0  # seconds between keyframes, as many cameras send: landing on one is not enough


def h5_time(epoch: float) -> str:
    """h5stream's form, e.g. 2026-11-21T120101+0800, quoted for a query string."""
    return quote(datetime.fromtimestamp(epoch, TZ).strftime("%Y-%m-%dT%H%M%S%z"))


@pytest.fixture
def recorded(make_gateway):
    """(gateway, session, start epoch, entries): three 5 s segments of `cam` (keyframes at
    0 and 3 s in each), ten minutes ago."""
    gw = make_gateway([dict(CAM)], start=False)
    start = float(int(time.time()) - 600)
    if datetime.fromtimestamp(start).date() != datetime.fromtimestamp(start + sum(LENGTHS)).date():
        start -= 60  # keep the range inside one local day for the page's day + times form
    entries = make_recordings(gw.root / "mediastore", "cam", start, LENGTHS, gop=GOP, tz=TZ)
    gw.start()
    return gw, gw.login(), start, entries


READ_STAMP_JS = """() => {
  const v = document.querySelector('video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, 640, 16).data, bits = [];
  for (let i = 0; i < 40; i++) {
    const at = (8 * 640 + 16 * i + 8) * 4;
    bits.push((d[at] + d[at + 1] + d[at + 2]) / 3 > 128 ? 1 : 0);
  }
  if (bits[0] !== 1 || bits[1] !== 0 || bits[38] !== 0 || bits[39] !== 1) return null;
  let value = 0, crc = 0, check = 0;
  for (let i = 2; i < 34; i++) value = value * 2 + bits[i];
  for (let i = 34; i < 38; i++) crc = crc * 2 + bits[i];
  for (let s = 0; s < 32; s += 4) check ^= Math.floor(value / Math.pow(2, s)) & 0xF;
  return check === crc ? {stamp: value, position: window.h5ssPlayer.position()} : null;
}"""


def run_async(coro, timeout: float = 30):
    """Run a coroutine on its own loop in a thread: Playwright's sync API holds this
    thread's loop once the browser fixture has started."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


def seconds_into(stamp: int, start: float) -> float:
    """Where in the recording (seconds from `start`) a stamp read off the picture is."""
    return ((stamp - int(start * 1000)) % 2**32) / 1000


def test_chromium_plays_seeks_pauses_and_ends_a_recording(recorded, page):
    gw, session, start, _ = recorded
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    # The page's form takes local day and times (this process and Chromium share the zone).
    begin, end = datetime.fromtimestamp(start), datetime.fromtimestamp(start + sum(LENGTHS))
    page.goto(f"{gw.url}/recordings.html?token=cam&day={begin:%Y-%m-%d}&from={begin:%H:%M:%S}"
              f"&to={end:%H:%M:%S}&autoplay=1")
    wait_playing(page, 1.5)
    shown = page.evaluate(READ_STAMP_JS)
    assert shown is not None, "no stamp readable in the picture"
    # The picture is the recording at the playback position (a few frames of slack).
    assert abs(seconds_into(shown["stamp"], start) - shown["position"]) < 0.2, shown

    # Pause holds the picture.
    page.click("#pause")
    time.sleep(0.3)
    held = page.evaluate("() => document.querySelector('video').currentTime")
    time.sleep(1.0)
    assert abs(page.evaluate("() => document.querySelector('video').currentTime") - held) < 0.05

    # Seek (paused, so the landed frame stays on screen) across two segment boundaries to
    # the middle of a 3 s GOP: showing its keyframe (the third file's start) would be 2 s early.
    target = 12.0
    page.evaluate(f"() => {{ const s = document.getElementById('seek'); s.value = '{target}'; "
                  "s.dispatchEvent(new Event('change')); }")
    page.wait_for_function(f"() => {{ const v = document.querySelector('video'), p = window.h5ssPlayer.position(); "
                           f"return p !== null && Math.abs(p - {target}) < 2.5 && !v.seeking && v.readyState >= 2; }}")
    time.sleep(0.3)
    shown = page.evaluate(READ_STAMP_JS)
    assert shown is not None
    landed = seconds_into(shown["stamp"], start)
    assert abs(landed - target) < 1.0, (landed, target, shown)
    assert abs(landed - shown["position"]) < 0.2, shown

    # Resume moves on from there.
    page.click("#pause")
    page.wait_for_function(f"() => window.h5ssPlayer.position() > {landed} + 0.5")

    # The connection drops: the player reconnects and carries on where it was.
    dropped_at = page.evaluate("() => { const p = window.h5ssPlayer.position(); window.h5ssPlayer._ws.close(); return p; }")
    page.wait_for_function("() => window.h5ssPlayer.stats().reconnects === 1")
    page.wait_for_function(f"() => {{ const v = document.querySelector('video'), p = window.h5ssPlayer.position(); "
                           f"return p !== null && p > {dropped_at} - 1 && !v.seeking && v.readyState >= 2; }}",
                           timeout=5_000)  # from begintime it would take over 10 s to get there
    shown = page.evaluate(READ_STAMP_JS)
    assert shown is not None and seconds_into(shown["stamp"], start) > dropped_at - 1, (dropped_at, shown)

    # Back while playing, into the first file; then at 4x to the end of the range, which
    # ends without a reconnect.
    target = 1.5
    page.evaluate(f"() => window.h5ssPlayer.seek({target})")
    page.wait_for_function(f"() => {{ const v = document.querySelector('video'), p = window.h5ssPlayer.position(); "
                           f"return p !== null && p < {target} + 1 && !v.seeking; }}")
    shown = page.evaluate(READ_STAMP_JS)
    assert shown is not None
    landed = seconds_into(shown["stamp"], start)
    assert abs(landed - target) < 1.0 and abs(landed - shown["position"]) < 0.2, (landed, shown)
    page.select_option("#speed", "4")
    played_from, t0 = shown["position"], time.monotonic()
    page.wait_for_function(f"() => window.h5ssPlayer.position() > {played_from} + 4")
    assert time.monotonic() - t0 < 3.0  # 4 s of media: at 1x it would take 4 s
    page.wait_for_function("() => window.h5ssPlayer.stats().state === 'ended'", timeout=10_000)
    page.wait_for_function("() => document.querySelector('video').ended", timeout=10_000)
    assert page.evaluate("() => window.h5ssPlayer.stats().reconnects") == 1  # the drop above only


def test_chromium_shows_why_a_range_cannot_play_and_does_not_retry(recorded, page):
    gw, session, start, _ = recorded
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    # A minute with nothing recorded, before the recordings or after them, inside one local day.
    begin, end = datetime.fromtimestamp(start - 120), datetime.fromtimestamp(start - 60)
    if begin.date() != end.date():
        begin, end = datetime.fromtimestamp(start + 60), datetime.fromtimestamp(start + 120)
    page.goto(f"{gw.url}/recordings.html?token=cam&day={begin:%Y-%m-%d}&from={begin:%H:%M:%S}"
              f"&to={end:%H:%M:%S}&autoplay=1")
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert "no recordings" in banner.inner_text()
    time.sleep(2)  # the player's first retry would come after 1 s
    assert page.evaluate("() => [window.h5ssPlayer.stats().state, window.h5ssPlayer.stats().reconnects]") == ["error", 0]


async def _playback_close(gw, query: str) -> tuple[int | None, str, list[str]]:
    """Close code, close reason and text events of a playback socket."""
    texts = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gw.ws_url}/api/v1/h5swsapi?playback=true&{query}") as ws:
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(msg.data)
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return ws.close_code, msg.extra or "", texts


def test_ws_playback_refuses_bad_requests_with_a_reason(recorded):
    gw, session, start, _ = recorded
    good = f"token=cam&begintime={h5_time(start)}&endtime={h5_time(start + 12)}"
    cases = [
        (f"token=cam&begintime=yesterday&endtime={h5_time(start)}&session={session}", 4000, "begintime"),
        (f"token=cam&begintime={h5_time(start + 5)}&endtime={h5_time(start)}&session={session}", 4000, "after"),
        (f"{good}&session=nope", 4001, "unauthorized"),
        (f"token=cam&begintime={h5_time(start - 7200)}&endtime={h5_time(start - 3600)}&session={session}",
         4004, "no recordings"),
        (f"token=ghost&begintime={h5_time(start)}&endtime={h5_time(start + 12)}&session={session}", 4004, "unknown"),
        (f"{good}&filename=/mediastore/record/cam/../../conf/h5ss.conf&session={session}", 4004, "no recording"),
    ]
    for query, code, words in cases:
        got, reason, texts = run_async(_playback_close(gw, query))
        assert got == code and words in reason, (query, got, reason)
        assert json.loads(texts[0])["type"] == "H5_ERROR"


async def _play_all(url: str, commands: list[dict]) -> tuple[list[bytes], list[dict], int | None, float]:
    """Binary messages, text events, close code and seconds taken of a whole playback."""
    binary, events = [], []
    opened = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            for command in commands:
                await ws.send_str(json.dumps(command))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))
                else:
                    binary.append(msg.data)
            return binary, events, ws.close_code, time.monotonic() - opened


def video_times(binary: list[bytes]) -> list[float]:
    """Timeline seconds of the video fragments received."""
    return [base / 90000 for message in binary[2:] for track, base, _ in map(fragment_info, split_fragments(message))
            if track == 1]


def test_ws_playback_of_one_file_at_8x_runs_to_the_end(recorded):
    """filename= plays that file: all of it, then H5_PLAYBACK_END and a normal close;
    H5_SPEED 8 sends it 8 times faster; a speed out of range is an error event."""
    gw, session, _, entries = recorded
    url = (f"{gw.ws_url}/api/v1/h5swsapi?playback=true&token=cam&session={session}"
           f"&filename={quote('/mediastore/' + entries[1].path)}&begintime=&endtime=")
    speeds = [{"cmd": "H5_SPEED", "nSpeed": 100}, {"cmd": "H5_SPEED", "nSpeed": 8}]
    binary, events, code, took = run_async(_play_all(url, speeds))
    assert binary[0] == b'video/mp4; codecs="avc1.42C01E, mp4a.40.2"'
    assert binary[1][4:8] == b"ftyp"
    assert video_times(binary)[0] == 0  # each connection's media starts at decode time 0, as live does
    assert [e["type"] for e in events if e["type"] != "H5_ERROR"] == ["H5_PLAYBACK_START", "H5_PLAYBACK_END"]
    assert any("nSpeed" in e.get("strCode", "") for e in events) and code == 1000
    assert took < 3.0  # 5 s of media; at 1x it takes at least 4 s (sent 1 s ahead)
    path = gw.root / "played.mp4"
    path.write_bytes(b"".join(binary[1:]))
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, timeout=30, check=True).stdout)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 125  # the whole 5 s file at 25 fps, every frame decodable


def test_ws_playback_jumps_a_gap_between_recordings_without_waiting(make_gateway):
    """Two 2 s recordings a minute apart: the timeline jumps by the gap, the sending does not wait it out."""
    gw = make_gateway([dict(CAM)], start=False)
    start = float(int(time.time()) - 600)
    make_recordings(gw.root / "mediastore", "cam", start, [2.0, 2.0], gaps=[60.0, 0.0], tz=TZ)
    gw.start()
    url = (f"{gw.ws_url}/api/v1/h5swsapi?playback=true&token=cam&session={gw.login()}"
           f"&begintime={h5_time(start)}&endtime={h5_time(start + 64)}")
    binary, events, code, took = run_async(_play_all(url, [{"cmd": "H5_SPEED", "nSpeed": 8}]))
    assert events[-1]["type"] == "H5_PLAYBACK_END" and code == 1000
    times = video_times(binary)
    assert len(times) == 100
    jumps = [b - a for a, b in zip(times, times[1:]) if b - a > 1]
    assert len(jumps) == 1 and 59.9 < jumps[0] < 60.1, jumps
    assert times[-1] == pytest.approx(63.96, abs=0.05)
    assert took < 5.0  # 4 s of media at 8x, not the 64 s range (8 s at 8x)


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_mediastore_files_with_ranges_for_logged_in_users_only(recorded):
    gw, session, _, entries = recorded
    path = entries[0].path
    whole = (gw.root / "mediastore" / path).read_bytes()
    status, headers, body = _get(f"{gw.url}/mediastore/{path}?session={session}", {"Range": "bytes=100-1099"})
    assert status == 206 and body == whole[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(whole)}"
    status, _, body = _get(f"{gw.url}/mediastore/{path}?session={session}")
    assert status == 200 and body == whole

    status, _, body = _get(f"{gw.url}/mediastore/{path}")
    assert status == 401 and json.loads(body)["bStatus"] is False
    (gw.root / "mediastore" / "record" / "escape").symlink_to(gw.root / "conf")
    refused = ["record/cam/%2E%2E/%2E%2E/%2E%2E/conf/h5ss.conf", "index.sqlite3", "record/cam",
               "record/escape/h5ss.conf", "record/..%2F..%2Fconf/h5ss.conf", "record/cam/nothing.mp4"]
    for bad in refused:
        status, _, body = _get(f"{gw.url}/mediastore/{bad}?session={session}")
        assert status == 404 and json.loads(body)["bStatus"] is False, (bad, status, body[:80])


def test_download_of_a_range_across_two_segments_is_one_playable_mp4(recorded):
    gw, session, start, _ = recorded
    begin, end = start + 4, start + 7  # the end of the first file, the start of the second
    status, headers, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={session}"
                                 f"&start={h5_time(begin)}&end={h5_time(end)}")
    assert status == 200, body[:200]
    assert headers["Content-Type"] == "video/mp4" and headers["Content-Disposition"].startswith("attachment")
    path = gw.root / "download.mp4"
    path.write_bytes(body)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, timeout=30, check=True).stdout)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["aac", "h264"]
    # From the keyframe at or before `begin` (at 3 s into the first file) to `end`.
    assert 3.9 <= float(probe["format"]["duration"]) <= 4.1, probe["format"]
    assert not list((gw.root / "mediastore").glob(".download-*"))  # no temp file left

    for query, status_wanted in [(f"start=nope&end={h5_time(end)}", 400),
                                 (f"start={h5_time(begin)}&end={h5_time(begin + 90000)}", 400),
                                 (f"start={h5_time(start - 99)}&end={h5_time(start - 50)}", 404)]:
        status, _, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={session}&{query}")
        assert status == status_wanted and json.loads(body)["bStatus"] is False, (query, body)
    status, _, _ = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&start={h5_time(begin)}&end={h5_time(end)}")
    assert status == 401


def write_noise_segment(path, seconds: float) -> None:
    """Video nothing compresses (random pictures, ~5 MB a second): a download big enough
    that a client which stops reading stalls it."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    from tests.fixtures.recordings import FRAG_FLAGS

    with av.open(str(path), "w", format="mp4", options={"movflags": FRAG_FLAGS}) as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "g": "25"}
        for i in range(round(seconds * 25)):
            frame = av.VideoFrame(640, 360, "yuv420p")
            for plane in frame.planes:
                plane.update(os.urandom(plane.buffer_size))
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


@pytest.fixture
def big_recordings(make_gateway):
    """(gateway, admin session, viewer session, start, end): 8 s of noise (~40 MB) of `cam`;
    downloads limited to 3 at once, 2 per user, a 2 s write timeout."""
    import shutil

    from gateway.auth import hash_md5
    from gateway.store.index import MediaEntry, MediaIndex
    from tests.fixtures.gateway import md5
    from tests.fixtures.recordings import store_path

    gw = make_gateway([dict(CAM)], start=False, system__nDownloadMax=3, system__nDownloadMaxPerUser=2,
                      system__nDownloadWriteTimeoutSec=2)
    conf = json.loads(gw.conf_path.read_text())
    conf["user"]["users"].append({"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"})
    gw.conf_path.write_text(json.dumps(conf))
    store = gw.root / "mediastore"
    start = float(int(time.time()) - 600)
    first = store / store_path("cam", start, TZ, "noise0")
    write_noise_segment(first, 1.0)
    entries = []
    for n in range(8):
        rel = store_path("cam", start + n, TZ, f"noise{n}")
        if n:
            (store / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(first, store / rel)
        entries.append(MediaEntry("record", "cam", rel, start + n, 1.0, first.stat().st_size, "+0800"))
    index = MediaIndex(store / "index.sqlite3")
    index.put_many(entries)
    index.close()
    gw.start()
    return gw, gw.login(), gw.login("viewer", "v"), start, start + 8


def _stalled_download(gw, session: str, start: float, end: float):
    """A raw socket that asks for a download and never reads (a small receive buffer)."""
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(f"GET /api/v1/DownloadRecord?token=cam&session={session}&start={h5_time(start)}"
                 f"&end={h5_time(end)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _open_files(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return links


def _store_files(gw) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in (gw.root / "mediastore").rglob("*") if p.is_file()}


def test_downloads_stream_without_temp_files_are_limited_and_a_stalled_client_is_dropped(big_recordings):
    gw, admin, viewer, start, end = big_recordings
    pid = gw.proc.pid
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    store_before = _store_files(gw)
    stalled = [_stalled_download(gw, admin, start, end), _stalled_download(gw, admin, start, end)]
    time.sleep(1)
    # A third of the same user's: 429; the viewer's first fills the gateway's 3; then 503.
    status, _, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={admin}"
                           f"&start={h5_time(start)}&end={h5_time(end)}")
    assert status == 429 and "2 downloads running" in json.loads(body)["strCode"], body[:200]
    stalled.append(_stalled_download(gw, viewer, start, end))
    time.sleep(0.5)
    status, _, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={viewer}"
                           f"&start={h5_time(start)}&end={h5_time(end)}")
    assert status == 503 and "3 downloads are running" in json.loads(body)["strCode"], body[:200]
    assert _store_files(gw) == store_before  # nothing written into the store for them, not even
    assert not [link for link in _open_files(pid) if "(deleted)" in link]  # an unlinked temp file
    # Reading nothing for 2 s, each is dropped: its connection closed, before the end.
    deadline = time.monotonic() + 15
    while gw.log().count("read nothing for 2 s; dropped") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.log().count("read nothing for 2 s; dropped") == 3, gw.log()[-2000:]
    for sock in stalled:
        got = b""
        try:
            while chunk := sock.recv(1 << 20):
                got += chunk
        except ConnectionResetError:
            pass
        sock.close()
        assert b"200 OK" in got[:20] and len(got) < 30_000_000 and not got.endswith(b"0\r\n\r\n")
    # Everything is freed: the slots (a whole download now goes through), the sockets and files.
    status, headers, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={viewer}"
                                 f"&start={h5_time(start)}&end={h5_time(end)}")
    assert status == 200 and headers["Content-Disposition"].startswith('attachment; filename="cam-')
    path = gw.root / "whole.mp4"
    path.write_bytes(body)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, timeout=30, check=True).stdout)
    assert [s["codec_name"] for s in probe["streams"]] == ["h264"] and probe["streams"][0]["nb_read_packets"] == "200"
    assert 7.9 <= float(probe["format"]["duration"]) <= 8.1, probe["format"]
    assert len(os.listdir(f"/proc/{pid}/fd")) <= fds_before + 2
    assert _store_files(gw) == store_before
    assert "Traceback" not in gw.log()
