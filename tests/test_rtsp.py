"""The RTSP server with real clients on loopback: ffprobe/PyAV (TCP and UDP), GStreamer's
rtspsrc, VLC, an H.265 camera, auth, and an on-demand source held while a reader reads.

One gateway for the module (bAuth on, short linger) pulls an H.264 + PCMA GStreamer camera
(`cam`, smpte bars) and an H.265 one (`hevc`); a second, with bAuth off, only answers the
open-door test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.net import free_port
from tests.test_browser import SMPTE_BARS

LINGER = 2
WIDTH, HEIGHT = 640, 360


class RtspGateway:
    def __init__(self, root: Path):
        self.camera = RtspCamera(audio="pcma", width=WIDTH, height=HEIGHT)
        self.hevc = RtspCamera(codec="h265", audio="pcmu", width=WIDTH, height=HEIGHT)
        self.port = free_port()
        sources = [
            {"strName": "Cam", "strToken": "cam", "nType": "H5_STREAM", "strUrl": self.camera.url},
            {"strName": "HEVC", "strToken": "hevc", "nType": "H5_STREAM", "strUrl": self.hevc.url},
        ]
        self.gw = Gateway(root, sources, rtsp__nRTSPPort=self.port, source__nOnDemandLingerSec=LINGER).start()

    def url(self, path: str = "cam", user: str = "admin", password: str = "12345") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{path}"

    def src(self, token: str) -> dict:
        return self.gw.api("GetSrc", session=self.gw.login(), token=token)[1]["src"][0]

    def stop(self) -> None:
        self.gw.stop()
        self.camera.stop()
        self.hevc.stop()


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspGateway]:
    server = RtspGateway(tmp_path_factory.mktemp("rtsp"))
    yield server
    server.stop()


def ffprobe(url: str, transport: str = "tcp") -> tuple[int, list[str], str]:
    """(exit code, codec names, stderr) of ffprobe reading `url`."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_streams", "-of", "json", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    streams = json.loads(result.stdout).get("streams", []) if result.stdout.strip() else []
    return result.returncode, [s["codec_name"] for s in streams], result.stderr


def decode(url: str, transport: str, seconds: float = 3.0) -> tuple[np.ndarray, int, str]:
    """(the last decoded picture as RGB, audio frames decoded, audio codec) over `seconds` of `url`."""
    picture, audio_frames = None, 0
    with av.open(url, options={"rtsp_transport": transport}, timeout=15) as container:
        audio_codec = container.streams.audio[0].codec_context.name
        deadline = time.monotonic() + seconds
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, av.VideoFrame):
                picture = frame.to_ndarray(format="rgb24")
            else:
                audio_frames += 1
            if time.monotonic() > deadline:
                break
    assert picture is not None
    return picture, audio_frames, audio_codec


def bar_colours(picture: np.ndarray) -> list[tuple[int, ...]]:
    height, width, _ = picture.shape
    return [tuple(int(c) for c in picture[height // 3, int((i + 0.5) * width / 7)]) for i in range(7)]


def assert_smpte(picture: np.ndarray, tolerance: int = 48) -> None:
    colours = bar_colours(picture)
    for got, want in zip(colours, SMPTE_BARS, strict=True):
        assert all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True)), (colours, SMPTE_BARS)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffprobe_and_pyav_read_h264_and_pcma(rtsp, transport):
    code, codecs, errors = ffprobe(rtsp.url(), transport)
    assert code == 0 and codecs == ["h264", "pcm_alaw"], (codecs, errors, rtsp.gw.log()[-2000:])
    picture, audio_frames, audio_codec = decode(rtsp.url(), transport)
    assert picture.shape == (HEIGHT, WIDTH, 3)
    assert_smpte(picture)
    assert audio_codec == "pcm_alaw" and audio_frames > 20


def test_profile_sub_serves_the_main_stream_without_a_sub(rtsp):
    code, codecs, errors = ffprobe(rtsp.url("cam?profile=sub"))
    assert code == 0 and codecs == ["h264", "pcm_alaw"], errors
    code, _, errors = ffprobe(rtsp.url("cam?profile=third"))
    assert code != 0 and "400" in errors


def test_h265_camera_is_read_as_hevc(rtsp):
    code, codecs, errors = ffprobe(rtsp.url("hevc"))
    assert code == 0 and codecs == ["hevc", "pcm_mulaw"], (codecs, errors)
    picture, _, _ = decode(rtsp.url("hevc"), "tcp", 2.0)
    assert_smpte(picture)


def test_gstreamer_rtspsrc_reads_and_decodes(rtsp):
    pipeline = (
        f"rtspsrc location={rtsp.url(user='')} user-id=admin user-pw=12345 protocols=tcp latency=0 name=src "
        "src. ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! fakesink num-buffers=50 "
        "src. ! rtppcmadepay ! alawdec ! fakesink"
    )
    result = subprocess.run(
        ["timeout", "30", "gst-launch-1.0", "-q", *pipeline.split()], capture_output=True, text=True
    )
    # num-buffers: the video sink posts EOS after 50 decoded frames and the pipeline ends with 0.
    assert result.returncode == 0, (result.stdout[-1500:], result.stderr[-1500:])


def vlc_reads_rtsp() -> bool:
    """Whether VLC is here with its RTSP client, the live555 module: Debian's VLC has none
    (Debian does not ship live555), and tries only SAT>IP and RealRTSP on an rtsp:// URL."""
    plugins = Path("/usr/lib/x86_64-linux-gnu/vlc/plugins")
    return shutil.which("cvlc") is not None and any(plugins.glob("**/*live555*"))


@pytest.mark.skipif(not vlc_reads_rtsp(), reason="no VLC with the live555 RTSP module (Debian's has none)")
def test_vlc_plays_ten_seconds(rtsp):
    # pytest's tmp_path is private to its user; VLC may run as another (below).
    tmp_path = Path(tempfile.mkdtemp(prefix="h5ss-vlc-"))
    tmp_path.chmod(0o777)
    out = tmp_path / "vlc.ts"
    # VLC refuses to run as root (as tests do in CI containers): then it runs as nobody.
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    vlc = subprocess.run(
        [
            *as_user, "env", f"HOME={tmp_path}", "timeout", "40",
            "cvlc", "-I", "dummy", "--no-video-title-show", "--rtsp-tcp", "--run-time", "10",
            "--play-and-exit", rtsp.url(), "--sout", f"#std{{access=file,mux=ts,dst={out}}}",
        ],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    code, codecs, errors = ffprobe(str(out))
    assert code == 0 and sorted(codecs) == ["h264", "pcm_alaw"], (codecs, errors, vlc.stderr[-1500:])
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    shutil.rmtree(tmp_path)
    assert frames >= 8 * 25, frames  # ~10 s at 25 fps


def rtsp_status(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = sock.recv(4096).decode(errors="replace")
    return int(answer.split(" ")[1]) if answer.startswith("RTSP/1.0 ") else 0


def test_wrong_credentials_unknown_path_and_malformed(rtsp):
    code, _, errors = ffprobe(rtsp.url(password="wrong"))
    assert code != 0 and "401" in errors, errors
    code, _, errors = ffprobe(rtsp.url("nosuchtoken"))
    assert code != 0 and "404" in errors, errors
    no_auth = f"DESCRIBE rtsp://127.0.0.1:{rtsp.port}/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", rtsp.port), timeout=10) as sock:
        sock.sendall(no_auth)
        answer = sock.recv(4096).decode()
    assert answer.startswith("RTSP/1.0 401") and 'WWW-Authenticate: Basic realm="h5ss"' in answer
    assert rtsp_status(rtsp.port, b"HELLO\r\n\r\n") == 400
    assert rtsp_status(rtsp.port, b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n") == 505
    assert rtsp_status(rtsp.port, b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n") == 400
    assert "Traceback" not in rtsp.gw.log()


def test_a_reader_holds_an_on_demand_source_which_stops_a_linger_after(rtsp):
    with av.open(rtsp.url(), options={"rtsp_transport": "tcp"}, timeout=15) as container:
        for _ in container.decode(video=0):
            break
        time.sleep(LINGER + 1.5)  # longer than the linger: the reader keeps it up
        info = rtsp.src("cam")
        assert info["bOnline"] and info["nViewers"] >= 1, info
    deadline = time.monotonic() + LINGER + 10
    while time.monotonic() < deadline and rtsp.src("cam")["bOnline"]:
        time.sleep(0.3)
    assert not rtsp.src("cam")["bOnline"]


def test_auth_off_lets_anyone_read(make_gateway):
    port = free_port()
    gw = make_gateway(
        [{"strName": "Sample", "strToken": "token1", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}],
        rtsp__nRTSPPort=port,
        http__bAuth=False,
    )
    url = f"rtsp://127.0.0.1:{port}/token1"
    code, codecs, errors = ffprobe(url)
    # The sample's audio is AAC: mpeg4-generic with RFC 3640 AU headers, decoded below.
    assert code == 0 and codecs == ["h264", "aac"], (codecs, errors, gw.log()[-1500:])
    picture, audio_frames, audio_codec = decode(url, "tcp", 2.0)
    assert audio_codec == "aac" and audio_frames > 20 and picture.shape[2] == 3


def test_rtsps_with_the_https_certificate(make_gateway):
    gw = make_gateway(start=False)
    repo = Path(__file__).resolve().parents[1]
    made = subprocess.run(["bash", str(repo / "gencert.sh"), "localhost", "127.0.0.1"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CERT_DIR": str(gw.root / "certs")})  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    conf = json.loads(gw.conf_path.read_text())
    conf["rtsp"].update(nRTSPPort=0, nSSLPort=port)
    conf["source"]["src"] = [{"strName": "S", "strToken": "token1", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}]
    gw.conf_path.write_text(json.dumps(conf))
    gw.start()
    code, codecs, errors = ffprobe(f"rtsps://admin:12345@127.0.0.1:{port}/token1")
    assert code == 0 and "h264" in codecs, (codecs, errors, gw.log()[-1500:])
    code, _, errors = ffprobe(f"rtsps://admin:wrong@127.0.0.1:{port}/token1")
    assert code != 0 and "401" in errors, errors
