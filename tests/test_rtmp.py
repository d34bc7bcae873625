"""The RTMP server with real clients: FFmpeg publishes H.264 + AAC into H5_PUSH sources
(an RTSP reader decodes the testsrc2 bars and the audio), ffprobe/FFmpeg/PyAV play a
camera over RTMP and RTMPS (bars' colours, AAC from the camera's PCMA, a playable copy),
the refusals (credentials, role, unknown and camera tokens, a second publisher), and a
player that stays through its publisher's drop and gets frames again from the next one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
import pytest

from gateway.outputs.rtmp import commands
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import REPO, Gateway, md5
from tests.fixtures.net import free_port
from tests.test_browser import assert_smpte
from tests.test_flv import ffprobe_codecs

WIDTH, HEIGHT = 640, 360
# testsrc2's six bars: red, green, yellow, blue, magenta, cyan
TESTSRC2_BARS = [[255, 0, 0], [0, 255, 0], [255, 255, 0], [0, 0, 255], [255, 0, 255], [0, 255, 255]]
PUSHED = ["push", "drop", "idle"]


@dataclass
class RtmpGateway:
    gw: Gateway
    port: int
    tls_port: int
    rtsp_port: int
    session: str

    def url(self, token: str, query: str = "user=op&password=o", scheme: str = "rtmp") -> str:
        port = self.tls_port if scheme == "rtmps" else self.port
        return f"{scheme}://127.0.0.1:{port}/live/{token}" + (f"?{query}" if query else "")

    def src(self, token: str) -> dict:
        return self.gw.api("GetSrc", session=self.session, token=token)[1]["src"][0]

    def wait_src(self, token: str, online: bool, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while (src := self.src(token))["bOnline"] != online and time.monotonic() < deadline:
            time.sleep(0.2)
        assert src["bOnline"] == online, src
        return src


@pytest.fixture(scope="module")
def rtmp_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtmpGateway]:
    """One gateway with logins on (admin, an Operator `op`, a Viewer `viewer`), RTMP, RTMPS
    (gencert.sh's certificate) and RTSP, over an H.264 + PCMA camera (`cam`), an H.265 one with
    its H.264 rendition (`hevc`) and without (`hevcoff`), and the H5_PUSH sources `push`,
    `drop` and `idle`."""
    from gateway.auth import hash_md5

    with (
        RtspCamera(width=WIDTH, height=HEIGHT, audio="pcma") as camera,
        RtspCamera(codec="h265", width=320, height=180, audio="none") as h265_camera,
    ):
        port, tls_port, rtsp_port = free_port(), free_port(), free_port()
        sources = [
            {"strName": "Cam", "strToken": "cam", "nType": "H5_STREAM", "strUrl": camera.url},
            {"strName": "HEVC", "strToken": "hevc", "nType": "H5_STREAM", "strUrl": h265_camera.url},
            {"strName": "HEVC", "strToken": "hevcoff", "nType": "H5_STREAM", "strUrl": h265_camera.url}
            | {"strH264Rendition": "off"},
        ]
        sources += [{"strName": t, "strToken": t, "nType": "H5_PUSH", "strUrl": ""} for t in PUSHED]
        gw = Gateway(
            tmp_path_factory.mktemp("rtmp"),
            sources,
            rtmp__nRTMPPort=port,
            rtmp__nSSLPort=tls_port,
            rtsp__nRTSPPort=rtsp_port,
        )
        conf = json.loads(gw.conf_path.read_text())
        conf["user"]["users"] += [
            {"strUser": "op", "strPasswd": hash_md5(md5("o")), "strUserType": "Operator"},
            {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
        ]
        gw.conf_path.write_text(json.dumps(conf))
        made = subprocess.run(
            ["bash", str(REPO / "gencert.sh"), "localhost", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CERT_DIR": str(gw.root / "certs")},
        )
        assert made.returncode == 0, made.stderr
        gw.start()
        try:
            yield RtmpGateway(gw, port, tls_port, rtsp_port, gw.login())
        finally:
            gw.stop()


def publish(url: str, seconds: float = 60, *options: str) -> subprocess.Popen[str]:
    """FFmpeg (as encoders and OBS do) pushing testsrc2 and a tone, H.264 + AAC, into `url`
    (with the RTMP `options`)."""
    return subprocess.Popen(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-re"),
            *("-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25"),
            *("-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100"),
            *("-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-t", str(seconds), *options, "-f", "flv", url),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


def refused(url: str) -> str:
    """FFmpeg's error output for a publish the gateway must refuse (asserting it exits non-zero)."""
    proc = publish(url, seconds=5)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0, err
    return err


@pytest.fixture(scope="module")
def pushed(rtmp_gw: RtmpGateway) -> Iterator[subprocess.Popen[str]]:
    """An Operator publishing into `push` for the module's tests."""
    proc = publish(rtmp_gw.url("push"), seconds=120)
    try:
        rtmp_gw.wait_src("push", True)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def assert_bars_of_testsrc2(frame: av.VideoFrame) -> None:
    """The picture's size, and testsrc2's bars: each bar's most common colour (over a grid of
    points, to step over the pattern's moving parts) right for at least 5 of the 6 bars (its
    grey square can cover one)."""
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    rgb = frame.to_ndarray(format="rgb24")
    rows = list(range(30, HEIGHT, 40))
    bars = []
    for bar in range(6):
        left = bar * WIDTH / 6 + 10
        points = rgb[np.ix_(rows, [int(left + k * (WIDTH / 6 - 20) / 7) for k in range(8)])].reshape(-1, 3)
        common = Counter(tuple(round(v / 85) * 85 for v in point) for point in points.tolist())
        bars.append(list(common.most_common(1)[0][0]))
    assert sum(got == want for got, want in zip(bars, TESTSRC2_BARS, strict=True)) >= 5, bars


def decode(url: str, frames: int = 30, **options: str) -> tuple[av.VideoFrame, int, str, int]:
    """(the last of `frames` decoded pictures, audio samples decoded beside them, the audio
    codec, the audio sample rate) of what PyAV reads from `url`."""
    with av.open(url, options=options, timeout=20) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        count, samples, picture = 0, 0, None
        for packet in container.demux(video, audio):
            for frame in packet.decode():
                if packet.stream is video:
                    count, picture = count + 1, frame
                else:
                    samples += frame.samples
            if count >= frames:
                break
        assert picture is not None
        return picture, samples, audio.codec_context.name, audio.sample_rate


def test_a_published_stream_is_a_source_an_rtsp_reader_decodes(rtmp_gw, pushed):
    src = rtmp_gw.src("push")
    assert src["strPublisher"] == "rtmp from 127.0.0.1" and src["strState"] == "online"
    assert (src["nWidth"], src["nHeight"]) == (WIDTH, HEIGHT)
    assert "mp4a.40.2" in src["strCodec"]  # the AAC sequence header became the stream's audio
    url = f"rtsp://op:o@127.0.0.1:{rtmp_gw.rtsp_port}/push"
    picture, samples, codec, rate = decode(url, 50, rtsp_transport="tcp")
    assert_bars_of_testsrc2(picture)
    assert codec == "aac" and rate == 44100
    assert samples > rate  # > 1 s of audio beside 2 s of video


def test_ffprobe_reads_rtmp_and_rtmps_play_of_a_camera(rtmp_gw):
    assert ffprobe_codecs(rtmp_gw.url("cam", "user=viewer&password=v")) == ["aac", "h264"]
    assert ffprobe_codecs(rtmp_gw.url("cam", f"session={rtmp_gw.session}", scheme="rtmps")) == ["aac", "h264"]


def test_an_h265_camera_plays_as_its_h264_rendition_or_is_refused(rtmp_gw):
    assert ffprobe_codecs(rtmp_gw.url("hevc", "user=viewer&password=v")) == ["h264"]
    probe = subprocess.run(
        ["ffprobe", "-v", "error", rtmp_gw.url("hevcoff", "user=viewer&password=v")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode != 0 and "RTMP carries H.264 only" in probe.stderr


def test_pyav_decodes_rtmp_play_with_the_bars_and_the_audio(rtmp_gw):
    picture, samples, codec, rate = decode(rtmp_gw.url("cam", "user=viewer&password=v"), 50)
    assert (picture.width, picture.height) == (WIDTH, HEIGHT)
    rgb = picture.to_ndarray(format="rgb24")
    assert_smpte([rgb[HEIGHT // 2, int((i + 0.5) * WIDTH / 7)].tolist() for i in range(7)])
    assert codec == "aac" and samples > rate  # the camera's PCMA, as the hub's AAC


COPY = ("-t", "3", "-c", "copy")


def test_ffmpeg_copies_rtmp_play_into_a_playable_file(rtmp_gw, tmp_path):
    out = tmp_path / "copy.mp4"
    copied = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", rtmp_gw.url("cam", "user=viewer&password=v"), *COPY, str(out)],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert copied.returncode == 0, copied.stderr
    with av.open(str(out)) as container:
        assert {s.codec_context.name for s in container.streams} == {"h264", "aac"}
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 50  # 3 s at 25 fps, less a few at the ends


def test_play_of_the_pushed_stream(rtmp_gw, pushed):
    picture, _, codec, rate = decode(rtmp_gw.url("push", "user=viewer&password=v"), 25)
    assert_bars_of_testsrc2(picture)
    assert codec == "aac" and rate == 44100


def test_refusals_leave_sources_offline_and_the_config_unchanged(rtmp_gw, pushed):
    conf = rtmp_gw.gw.conf_path.read_bytes()
    assert "wrong user or password" in refused(rtmp_gw.url("idle", "user=op&password=wrong"))
    assert "credentials required" in refused(rtmp_gw.url("idle", ""))
    assert "Operator or higher" in refused(rtmp_gw.url("idle", "user=viewer&password=v"))
    assert "no source 'nosuch'" in refused(rtmp_gw.url("nosuch"))
    assert "not H5_PUSH" in refused(rtmp_gw.url("cam"))
    assert "already has a publisher" in refused(rtmp_gw.url("push"))
    assert pushed.poll() is None  # the first publisher goes on
    src = rtmp_gw.src("idle")
    assert not src["bOnline"] and src["strPublisher"] == ""
    # Playing: an unknown token, a wrong password.
    for query, token, error in (
        ("user=viewer&password=v", "nosuch", "no stream 'nosuch'"),
        ("user=viewer&password=x", "cam", "wrong user or password"),
    ):
        probe = subprocess.run(
            ["ffprobe", "-v", "error", rtmp_gw.url(token, query)], capture_output=True, text=True, timeout=30
        )
        assert probe.returncode != 0 and error in probe.stderr, probe.stderr
    assert rtmp_gw.gw.conf_path.read_bytes() == conf


class Player(threading.Thread):
    """A PyAV RTMP player counting the pictures it decodes, in a thread of its own."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.frames = 0
        self.last: av.VideoFrame | None = None
        self.error: Exception | None = None
        self.stop = False

    def run(self) -> None:
        try:
            with av.open(self.url, timeout=30) as container:
                for packet in container.demux(video=0):
                    for frame in packet.decode():
                        self.frames, self.last = self.frames + 1, frame
                    if self.stop:
                        return
        except Exception as e:
            self.error = e

    def wait_frames(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.frames < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.1)
        assert self.frames >= count, (self.frames, self.error)


def test_a_player_stays_through_a_publisher_drop_and_plays_the_next_one(rtmp_gw):
    first = publish(rtmp_gw.url("drop"), seconds=60)
    player = Player(rtmp_gw.url("drop", "user=viewer&password=v"))
    try:
        rtmp_gw.wait_src("drop", True)
        player.start()
        player.wait_frames(25)
        first.kill()
        first.wait()
        src = rtmp_gw.wait_src("drop", False)
        assert src["strPublisher"] == "" and src["nViewers"] == 1  # the player is still there
        before = player.frames
        second = publish(rtmp_gw.url("drop"), seconds=60)
        try:
            player.wait_frames(before + 50)
            assert player.is_alive() and player.last is not None
            assert_bars_of_testsrc2(player.last)
        finally:
            second.kill()
            second.wait()
    finally:
        player.stop = True
        first.kill()
        first.wait()


def test_a_logout_ends_a_session_players_connection(rtmp_gw):
    session = rtmp_gw.gw.login("viewer", "v")
    player = Player(rtmp_gw.url("cam", f"session={session}"))
    player.start()
    try:
        player.wait_frames(10)
        assert rtmp_gw.gw.api("Logout", session=session)[0] == 200
        player.join(10)
        assert not player.is_alive()
    finally:
        player.stop = True


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed: EOF or a reset, read until then."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_malformed_clients_are_dropped_with_a_log_line_and_no_traceback(rtmp_gw):
    with socket.create_connection(("127.0.0.1", rtmp_gw.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(1600))
        assert closed_by_server(sock)
    # A type 0 header announcing a 16 MiB command message: past the bound (8 MiB).
    too_long = bytes([3]) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + bytes([20]) + bytes(4)
    play_first = commands.command("play", 0.0, None, "cam")  # before connect
    for data in (too_long, play_first):
        with socket.create_connection(("127.0.0.1", rtmp_gw.port), timeout=5) as sock:
            sock.sendall(b"\x03" + bytes(1536))
            handshake = b""
            while len(handshake) < 1 + 2 * 1536:
                handshake += sock.recv(65536)
            sock.sendall(bytes(1536) + data)
            assert closed_by_server(sock)
    deadline = time.monotonic() + 5
    while "dropped: play before connect" not in rtmp_gw.gw.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = rtmp_gw.gw.log()
    assert "dropped: RTMP version 71" in log and "dropped: message of 16777215 bytes" in log
    assert "dropped: play before connect" in log
    assert "Traceback" not in log


def test_credentials_on_the_app_and_deleting_a_published_source_ends_its_publisher(rtmp_gw):
    assert rtmp_gw.gw.api("AddSrcPush", session=rtmp_gw.session, name="kick", token="kick")[0] == 200
    # As OBS sends a server URL with a query and a stream key: the query on the app and tcUrl.
    app = ("-rtmp_app", "live?user=op&password=o", "-rtmp_playpath", "kick")
    proc = publish(f"rtmp://127.0.0.1:{rtmp_gw.port}/live?user=op&password=o", 60, *app)
    try:
        rtmp_gw.wait_src("kick", True)
        assert rtmp_gw.gw.api("DelSrc", session=rtmp_gw.session, token="kick")[0] == 200
        proc.wait(15)  # FFmpeg stops when the gateway closes the connection
    finally:
        proc.kill()
        proc.wait()
    assert "its source was removed" in rtmp_gw.gw.log()
