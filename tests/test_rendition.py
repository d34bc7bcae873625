"""The H.264 rendition of an H.265 camera, on real parts: a GStreamer x265 RTSP camera,
the gateway, Debian's Chromium (no H.265 decoder), hls.js, PyAV.

One camera and one gateway for the module (a 1 s linger, 1 s HLS segments), with the same
camera as four sources: `cam` (rendition auto), `solo` (auto, only ever watched in H.265),
`off` (rendition off) and `small` (added by the API with a 180-line rendition).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.hlsjs import hls_js
from tests.fixtures.ws_client import WsViewer
from tests.test_browser import assert_smpte, bar_colours, wait_playing

PAGE = (Path(__file__).parent / "fixtures" / "stock_mse_player.html").read_text()
LINGER = 1


class Rig:
    def __init__(self, root: Path):
        self.camera = RtspCamera(codec="h265", audio="pcma", gop=25)
        sources = [
            {"strName": name, "strToken": name, "nType": "H5_STREAM", "strUrl": self.camera.url, **extra}
            for name, extra in (("cam", {}), ("solo", {}), ("off", {"strH264Rendition": "off"}))
        ]
        self.gw = Gateway(root, sources, source__nOnDemandLingerSec=LINGER, hls__nHLSDuration=1).start()
        self.session = self.gw.login()

    def src(self, token: str) -> dict:
        status, answer = self.gw.api("GetSrc", session=self.session, token=token)
        assert status == 200, answer
        return answer["src"][0]

    def metric(self, name: str, token: str) -> float:
        status, _, body = self.gw.get(f"/metrics?session={self.session}")
        assert status == 200
        m = re.search(rf'^{name}\{{profile="main",token="{token}"\}} (\S+)$', body.decode(), re.M)
        assert m, (name, token)
        return float(m[1])

    def viewer(self, token: str, hevc: bool) -> WsViewer:
        viewer = WsViewer(self.gw.ws_url, token, self.session, f"&hevc={str(hevc).lower()}")
        viewer.start()
        return viewer

    def wait_for(self, what, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return True
            time.sleep(0.1)
        return what()

    def stop(self) -> None:
        self.gw.stop()
        self.camera.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    running = Rig(tmp_path_factory.mktemp("rendition"))
    yield running
    running.stop()


def decoded(data: bytes) -> tuple[str, list[av.VideoFrame]]:
    """The video codec PyAV reads in fMP4 bytes, and its frames."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, list(container.decode(stream))


def test_clients_that_take_h265_never_start_a_transcode(rig):
    viewer = rig.viewer("solo", hevc=True)
    try:
        assert viewer.wait_frames(40, 20), (viewer.close_code, viewer.close_reason)
        assert viewer.mime is not None and "hvc1" in viewer.mime
        codec, frames = decoded(viewer.stream_bytes())
        assert codec == "hevc" and len(frames) >= 30 and (frames[0].width, frames[0].height) == (640, 360)
        # HLS: the master lists the H.265 stream and its H.264 rendition; a player that takes
        # the H.265 one reads its playlist and segments.
        status, _, master = rig.gw.get(f"/solo/index.m3u8?session={rig.session}")
        assert status == 200, master
        variants = re.findall(r'CODECS="([^"]+)".*\n(\S+)', master.decode())
        assert [(codecs.split(".")[0], uri.split("?")[0]) for codecs, uri in variants] == [
            ("hvc1", "stream.m3u8"),
            ("avc1", "h264/stream.m3u8"),
        ]
        assert variants[1][0] == "avc1.42C01F,mp4a.40.2" and "RESOLUTION=640x360" in master.decode()
        status, _, playlist = rig.gw.get(f"/solo/stream.m3u8?session={rig.session}")
        init = re.search(r'#EXT-X-MAP:URI="([^"?]+)', playlist.decode())[1]
        segment = re.findall(r"^(seg\d+\.m4s)", playlist.decode(), re.M)[0]
        media = b"".join(rig.gw.get(f"/solo/{name}?session={rig.session}")[2] for name in (init, segment))
        assert decoded(media)[0] == "hevc"
        assert not rig.src("solo")["bH264Rendition"]
    finally:
        viewer.stop()
    assert rig.metric("h5ss_rendition_transcodes_total", "solo") == 0
    assert rig.metric("h5ss_rendition_transcoding", "solo") == 0


def test_chromium_plays_the_rendition_with_the_stock_mse_page(rig, page):
    page.goto(f"{rig.gw.url}/login.html")
    page.set_content(PAGE)
    page.evaluate("url => window.start(url)", f"{rig.gw.ws_url}/api/v1/h5swsapi?token=cam&hevc=false&session={rig.session}")
    state = wait_playing(page, 2)
    assert (state["width"], state["height"]) == (640, 360)
    assert_smpte(bar_colours(page))
    assert page.evaluate("() => window.stock.errors") == []
    assert rig.src("cam")["bH264Rendition"]
    assert rig.metric("h5ss_rendition_transcoding", "cam") == 1


def test_the_rendition_stops_a_linger_after_its_last_client_and_releases_the_camera(rig):
    viewer = rig.viewer("cam", hevc=False)
    try:
        assert viewer.wait_frames(30, 20), (viewer.close_code, viewer.close_reason)
        assert viewer.mime is not None and viewer.mime.startswith('video/mp4; codecs="avc1.42C01F')
        codec, frames = decoded(viewer.stream_bytes())
        assert codec == "h264" and len(frames) >= 25
        assert rig.src("cam")["bH264Rendition"] and rig.src("cam")["strState"] == "online"
    finally:
        viewer.stop()
    left = time.monotonic()
    assert rig.wait_for(lambda: not rig.src("cam")["bH264Rendition"], LINGER + 3)
    stopped = time.monotonic() - left
    assert LINGER - 0.3 < stopped, stopped  # not before its linger
    # Then the camera stream, released, lingers and disconnects (on demand).
    assert rig.wait_for(lambda: rig.src("cam")["strState"] == "idle", LINGER + 3)
    assert rig.metric("h5ss_rendition_transcoding", "cam") == 0


def test_a_source_with_its_rendition_off_refuses_clients_without_h265(rig):
    viewer = rig.viewer("off", hevc=False)
    viewer.join(20)
    assert viewer.close_code == 4001 and "H.264 rendition is off" in (viewer.close_reason or "")
    status, _, master = rig.gw.get(f"/off/index.m3u8?session={rig.session}")
    assert status == 200 and master.decode().count("#EXT-X-STREAM-INF") == 1 and "hvc1" in master.decode()
    status, _, answer = rig.gw.get(f"/off/h264/stream.m3u8?session={rig.session}")
    assert status == 404 and b"strH264Rendition is off" in answer


def test_hls_js_picks_the_h264_variant_of_the_master(rig, page):
    page.goto(f"{rig.gw.url}/login.html")
    page.add_script_tag(path=str(hls_js()))
    page.evaluate(
        """url => {
            document.body.innerHTML = '<video muted autoplay playsinline></video>';
            const video = document.querySelector('video');
            window.hlsErrors = [];
            const hls = window.hls = new Hls({lowLatencyMode: true});
            hls.on(Hls.Events.ERROR, (event, data) => { if (data.fatal) window.hlsErrors.push(data.details); });
            hls.loadSource(url);
            hls.attachMedia(video);
            video.play().catch(() => {});
        }""",
        f"{rig.gw.url}/cam/index.m3u8?session={rig.session}",
    )
    state = wait_playing(page, 2)
    assert (state["width"], state["height"]) == (640, 360)
    assert_smpte(bar_colours(page))
    level = page.evaluate("() => { const l = window.hls.levels[window.hls.currentLevel]; return l.url[0] || l.uri; }")
    assert "/cam/h264/stream.m3u8" in level
    assert page.evaluate("window.hlsErrors") == []
    assert rig.src("cam")["bH264Rendition"]
    page.evaluate("window.hls.destroy()")


def test_a_downscaled_rendition_set_by_the_api(rig):
    status, answer = rig.gw.api(
        "AddSrcRTSP", session=rig.session, name="small", token="small", url=rig.camera.url, renditionheight="50"
    )
    assert status == 400 and "nH264RenditionHeight: 50 is not 0" in answer["strCode"]
    status, answer = rig.gw.api(
        "AddSrcRTSP", session=rig.session, name="small", token="small", url=rig.camera.url, renditionheight="180"
    )
    assert status == 200, answer
    assert rig.src("small")["nH264RenditionHeight"] == 180 and rig.src("small")["strH264Rendition"] == "auto"
    viewer = rig.viewer("small", hevc=False)
    try:
        assert viewer.wait_frames(20, 20), (viewer.close_code, viewer.close_reason)
        codec, frames = decoded(viewer.stream_bytes())
        assert codec == "h264" and (frames[0].width, frames[0].height) == (320, 180)
    finally:
        viewer.stop()
