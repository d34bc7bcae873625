"""A recording made by the gateway from a real camera is found, played back, downloaded
and listed on the recordings page: recorder, index, Search and playback together."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import datetime

from tests.test_playback import _play_all, h5_time, run_async
from tests.test_record import search, wait_for

SECONDS = 4


def ffprobe(path) -> dict:
    return json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, timeout=30, check=True).stdout)


def test_a_camera_recording_plays_back_downloads_and_is_listed(camera_source, page):
    gw, session, _ = camera_source(audio="pcma")
    status, answer = gw.api("Record", session=session, token="cam", duration=SECONDS, filename="e2e")
    assert status == 200, answer
    found = wait_for(lambda: [r for r in search(gw, session, token="cam") if r["strDuration"] == str(SECONDS)], 15)
    assert found, search(gw, session, token="cam")
    start = datetime.strptime(found[0]["strStartTime"], "%Y-%m-%dT%H%M%S%z").timestamp()
    begin, end = h5_time(start - 1), h5_time(start + SECONDS + 2)

    # WS playback of the range, at 8x: every frame of the recording decodes, with its audio.
    url = (f"{gw.ws_url}/api/v1/h5swsapi?playback=true&token=cam&session={session}"
           f"&begintime={begin}&endtime={end}")
    binary, events, code, _ = run_async(_play_all(url, [{"cmd": "H5_SPEED", "nSpeed": 8}]))
    assert binary[0].startswith(b'video/mp4; codecs="avc1.') and b"mp4a.40.2" in binary[0]
    assert [e["type"] for e in events] == ["H5_PLAYBACK_START", "H5_PLAYBACK_END"] and code == 1000, events
    played = gw.root / "played.mp4"
    played.write_bytes(b"".join(binary[1:]))
    streams = {s["codec_name"]: s for s in ffprobe(played)["streams"]}
    assert set(streams) == {"h264", "aac"}
    assert int(streams["h264"]["nb_read_frames"]) >= 25 * SECONDS - 5  # 25 fps camera

    # The same range as one MP4 download.
    with urllib.request.urlopen(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={session}"
                                f"&start={begin}&end={end}", timeout=30) as r:
        body = r.read()
    downloaded = gw.root / "downloaded.mp4"
    downloaded.write_bytes(body)
    info = ffprobe(downloaded)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert abs(float(info["format"]["duration"]) - SECONDS) <= 0.5, info["format"]

    # The recordings page lists it (Search) and its File link serves the file.
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    day = datetime.fromtimestamp(start)
    page.goto(f"{gw.url}/recordings.html?token=cam&day={day:%Y-%m-%d}&from=00:00:00&to=23:59:59")
    page.click("#list")
    row = page.locator("#files tbody tr")
    row.first.wait_for()
    assert row.count() == 1 and f"{SECONDS} s" in row.first.inner_text()
    href = row.first.locator("a").get_attribute("href")
    with urllib.request.urlopen(f"{gw.url}/{href}", timeout=10) as r:
        assert r.read() == (gw.root / "mediastore" / found[0]["strPath"].removeprefix("/mediastore/")).read_bytes()
