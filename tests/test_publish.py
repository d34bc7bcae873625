"""Pushed streams play like cameras: ffmpeg publishes over RTSP and over RTMP into H5_PUSH
sources, Chromium plays them over WS fMP4 (the stock player page) and over WebRTC (the
WHEP page), and a recording of one is a file ffprobe reads to the end.

The publishers are Debian's ffmpeg, SMPTE bars + a tone, H.264 High + AAC, at real time.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.gateway import Gateway
from tests.fixtures.net import free_port
from tests.test_browser import bar_colours, open_player, wait_playing
from tests.test_record import probe, store_file, wait_for
from tests.test_webrtc import wait_decoding

WIDTH, HEIGHT = 640, 360
PUSHED = {"rtsp": "byrtsp", "rtmp": "byrtmp"}  # publishing protocol -> the H5_PUSH source it feeds
# ffmpeg's smptebars: the seven 75 % bars, left to right.
BARS_75 = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191)]


def assert_bars(colours: list[list[int]], tolerance: int = 40) -> None:
    for got, want in zip(colours, BARS_75, strict=True):
        assert all(abs(g - w) <= tolerance for g, w in zip(got, want)), (colours, BARS_75)


def publisher(url: str, muxer: str) -> subprocess.Popen:
    """ffmpeg publishing SMPTE bars and a tone at real time until stopped."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"smptebars=size={WIDTH}x{HEIGHT}:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-g", "25", "-bf", "0", "-c:a", "aac", "-b:a", "64k", "-f", muxer]
    if muxer == "rtsp":
        args += ["-rtsp_transport", "tcp"]
    return subprocess.Popen([*args, url], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """(gateway, session) with two H5_PUSH sources, each fed by its own ffmpeg publisher."""
    rtsp_port, rtmp_port = free_port(), free_port()
    sources = [{"strName": token, "strToken": token, "nType": "H5_PUSH"} for token in PUSHED.values()]
    gw = Gateway(tmp_path_factory.mktemp("gw"), sources, rtsp__nRTSPPort=rtsp_port, rtmp__nRTMPPort=rtmp_port)
    gw.start()
    publishers = [
        publisher(f"rtsp://admin:12345@127.0.0.1:{rtsp_port}/{PUSHED['rtsp']}", "rtsp"),
        publisher(f"rtmp://127.0.0.1:{rtmp_port}/live/{PUSHED['rtmp']}?user=admin&password=12345", "flv"),
    ]
    try:
        session = gw.login()

        def all_online() -> bool:
            status, answer = gw.api("GetSrc", session=session)
            return status == 200 and all(src["bOnline"] for src in answer["src"])

        assert wait_for(all_online, 15), gw.log()[-3000:]
        yield gw, session
    finally:
        for proc in publishers:
            proc.terminate()
            proc.wait(10)
        gw.stop()


@pytest.mark.parametrize("protocol", PUSHED)
def test_getsrc_shows_a_pushed_source_online_with_its_publisher(pushed, protocol):
    gw, session = pushed
    status, answer = gw.api("GetSrc", session=session, token=PUSHED[protocol])
    assert status == 200, answer
    src = answer["src"][0]
    assert src["nType"] == "H5_PUSH" and src["bOnline"] and src["strVideoCodec"] == "H.264"
    assert src["strPublisher"].startswith(protocol) and "127.0.0.1" in src["strPublisher"], src
    assert (src["nWidth"], src["nHeight"]) == (WIDTH, HEIGHT)
    assert "mp4a.40.2" in src["strCodec"]


@pytest.mark.parametrize("protocol", PUSHED)
def test_chromium_plays_a_pushed_stream_over_ws(pushed, page, protocol):
    gw, _ = pushed
    open_player(gw, page, PUSHED[protocol])
    state = wait_playing(page)
    assert (state["width"], state["height"]) == (WIDTH, HEIGHT)
    assert_bars(bar_colours(page))


def test_chromium_plays_a_pushed_stream_over_webrtc(pushed, page):
    gw, session = pushed
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    page.goto(f"{gw.url}/{PUSHED['rtsp']}/")  # the WHEP page
    stats = wait_decoding(page, "window.h5ssPeer")
    assert stats["video"]["mime"] == "video/H264"
    assert stats["audio"]["mime"] == "audio/opus" and stats["audio"]["packets"] > 20  # AAC goes out as Opus
    assert_bars(bar_colours(page))


def test_recording_a_pushed_stream_gives_a_playable_file(pushed):
    gw, session = pushed
    status, answer = gw.api("Record", session=session, token=PUSHED["rtmp"], duration=3, filename="pushed")
    assert status == 200 and answer["bStatus"], answer
    path = store_file(gw, answer["strPath"])
    time.sleep(4.5)
    info = probe(path, count=True)
    codecs = {s["codec_name"]: s for s in info["streams"]}
    assert set(codecs) == {"h264", "aac"}, info
    assert (codecs["h264"]["width"], codecs["h264"]["height"]) == (WIDTH, HEIGHT)
    assert 2.5 <= float(info["format"]["duration"]) <= 3.6, info
    assert int(codecs["h264"]["nb_read_frames"]) >= 60, info
