"""HTTP-FLV and WS-FLV (`/{token}.flv`) from a real GStreamer RTSP camera behind a real
gateway: mpegts.js plays both in Chromium (SMPTE bars' colours, AAC audio decoded from the
camera's PCMA), FFmpeg reads and decodes them, an H.265 camera's FLV is its H.264
rendition, and the answers to a missing session, an unknown token and a stream that
cannot be H.264."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest

from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.mpegtsjs import mpegts_js
from tests.fixtures.net import free_port
from tests.test_browser import assert_smpte, bar_colours, wait_playing

WIDTH, HEIGHT = 640, 360


@dataclass
class FlvGateway:
    gw: Gateway
    session: str
    flv_port: int

    def url(self, token: str, scheme: str = "http", port: int | None = None, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"session": self.session, **query}.items())
        return f"{scheme}://127.0.0.1:{port or self.flv_port}/{token}.flv?{params}"


@pytest.fixture(scope="module")
def flv_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlvGateway]:
    """One gateway with logins on and its FLV port, over an H.264 + PCMA camera (`cam`), an
    H.264 one for one test alone (`held`: its sessions never touch `cam`'s camera), and an
    H.265 one with its H.264 rendition (`hevc`) and without (`hevcoff`)."""
    with (
        RtspCamera(width=WIDTH, height=HEIGHT, audio="pcma") as camera,
        RtspCamera(codec="h265", width=WIDTH, height=HEIGHT, audio="none") as h265_camera,
        RtspCamera(width=320, height=180, audio="none") as small_camera,
    ):
        flv_port = free_port()
        gw = Gateway(tmp_path_factory.mktemp("gw"))
        conf = json.loads(gw.conf_path.read_text())
        conf["flv"]["nFLVPort"] = flv_port
        gw.conf_path.write_text(json.dumps(conf))
        gw.start()
        try:
            session = gw.login()
            for token, url, extra in (
                ("cam", camera.url, {}),
                ("held", small_camera.url, {}),
                ("hevc", h265_camera.url, {}),
                ("hevcoff", h265_camera.url, {"rendition": "off"}),
            ):
                status, answer = gw.api("AddSrcRTSP", session=session, name=token, token=token, url=url, **extra)
                assert status == 200, answer
            yield FlvGateway(gw, session, flv_port)
        finally:
            gw.stop()


def ffprobe_codecs(url: str) -> list[str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rw_timeout", "15000000", "-show_entries", "stream=codec_name", "-of", "json", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return sorted(s["codec_name"] for s in json.loads(out.stdout)["streams"])


def test_ffprobe_reads_h264_and_aac_on_the_http_and_flv_ports(flv_gw):
    assert ffprobe_codecs(flv_gw.url("cam")) == ["aac", "h264"]
    assert ffprobe_codecs(flv_gw.url("cam", port=flv_gw.gw.port)) == ["aac", "h264"]


def test_ffmpeg_decodes_the_bars_and_the_audio_from_time_0(flv_gw):
    with av.open(flv_gw.url("cam"), format="flv", timeout=15) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames, samples, first_pts, picture = 0, 0, None, None
        for packet in container.demux(video, audio):
            for frame in packet.decode():
                if packet.stream is video:
                    frames += 1
                    first_pts = frame.time if first_pts is None else first_pts
                    picture = frame
                else:
                    samples += frame.samples
            if frames >= 50:
                break
    assert picture is not None and (picture.width, picture.height) == (WIDTH, HEIGHT)
    assert first_pts is not None and first_pts < Fraction(1, 2)  # this client's time starts at 0
    assert samples > audio.sample_rate  # > 1 s of AAC beside 2 s of video
    rgb = picture.to_ndarray(format="rgb24")
    assert_smpte([rgb[HEIGHT // 2, int((i + 0.5) * WIDTH / 7)].tolist() for i in range(7)])


def test_an_h265_camera_is_served_as_its_h264_rendition(flv_gw):
    assert ffprobe_codecs(flv_gw.url("hevc")) == ["h264"]


def status_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_refusals_401_404_and_415_for_http_and_websocket(flv_gw):
    base = f"http://127.0.0.1:{flv_gw.flv_port}"
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    for headers in (None, upgrade):
        assert status_of(f"{base}/cam.flv", headers)[0] == 401
        assert status_of(f"{base}/cam.flv?session=not-a-session", headers)[0] == 401
        assert status_of(flv_gw.url("nosuch"), headers)[0] == 404
    status, headers = status_of(flv_gw.url("hevcoff"))
    assert status == 415 and headers["Access-Control-Allow-Origin"] == "*"


def test_http_flv_answers_chunked_flv_with_cors(flv_gw):
    with urllib.request.urlopen(flv_gw.url("cam", profile="sub"), timeout=30) as r:
        assert r.headers["Content-Type"] == "video/x-flv"
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        head = r.read(13)
    assert head == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"  # audio + video, PreviousTagSize0


def test_a_reader_holds_the_stream_and_leaving_lets_it_go(flv_gw):
    def viewers() -> int:
        return flv_gw.gw.api("GetSrc", session=flv_gw.session, token="held")[1]["src"][0]["nViewers"]

    assert viewers() == 0
    with urllib.request.urlopen(flv_gw.url("held"), timeout=30) as r:
        assert len(r.read(20000)) == 20000
        assert viewers() == 1
    deadline = time.monotonic() + 5
    while viewers() != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert viewers() == 0


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_mpegts_js_plays_flv_in_chromium_with_audio(flv_gw, page, scheme):
    page.goto(f"{flv_gw.gw.url}/login.html")
    page.add_script_tag(path=str(mpegts_js()))
    page.evaluate(
        """(url) => {
            document.body.innerHTML = '<video muted autoplay playsinline></video>';
            const video = document.querySelector('video');
            window.flvErrors = [];
            window.flvMedia = null;
            const player = window.player = mpegts.createPlayer({type: 'flv', isLive: true, url});
            player.on(mpegts.Events.ERROR, (type, detail) => window.flvErrors.push(`${type} ${detail}`));
            player.on(mpegts.Events.MEDIA_INFO, (info) => { window.flvMedia = info; });
            player.attachMediaElement(video);
            player.load();
            video.play().catch(() => {});
        }""",
        flv_gw.url("cam", scheme=scheme),
    )
    state = wait_playing(page, 2)
    assert (state["width"], state["height"]) == (WIDTH, HEIGHT)
    assert_smpte(bar_colours(page))
    media = page.evaluate("({hasAudio: window.flvMedia.hasAudio, audioCodec: window.flvMedia.audioCodec})")
    assert media == {"hasAudio": True, "audioCodec": "mp4a.40.2"}
    assert page.evaluate("document.querySelector('video').webkitAudioDecodedByteCount") > 0
    assert page.evaluate("window.flvErrors") == []
    page.evaluate("window.player.destroy()")
