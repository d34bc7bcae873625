"""Publishing into the gateway over RTSP (ANNOUNCE, SETUP mode=record, RECORD) with ffmpeg as
the publisher, over TCP and UDP, H.264 + AAC, H.264 + PCMA and H.265; what the gateway
then serves is read back by PyAV over its RTSP and by a WS fMP4 viewer.

One gateway for the module (bAuth on) with an admin, an Operator (op/o) and a Viewer
(viewer/v), three H5_PUSH sources and a camera source (H5_STREAM) that no publisher may take.
The publisher sends one testsrc2 picture over and over, so a decoded frame's colours can
be checked at fixed places.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.auth import hash_md5
from tests.fixtures.gateway import Gateway, md5
from tests.fixtures.net import free_port
from tests.fixtures.ws_client import WsViewer

WIDTH, HEIGHT = 640, 360
# Colours of testsrc2's first picture at 640x360 (row, column): RGB.
TESTSRC2 = {(10, 130): (0, 254, 0), (10, 250): (253, 253, 0), (90, 370): (0, 0, 254), (130, 610): (0, 255, 255),
            (200, 100): (253, 0, 0)}  # fmt: skip
PUSH_TOKENS = ("push", "pcma", "hevc")


class PublishGateway:
    def __init__(self, root: Path):
        self.port = free_port()
        sources = [{"strName": t, "strToken": t, "nType": "H5_PUSH"} for t in PUSH_TOKENS]
        sources.append({"strName": "Cam", "strToken": "cam", "nType": "H5_STREAM", "strUrl": "rtsp://127.0.0.1:9/none"})
        self.gw = Gateway(root, sources, rtsp__nRTSPPort=self.port)
        conf = json.loads(self.gw.conf_path.read_text())
        conf["user"]["users"] = [
            {"strUser": "admin", "strPasswd": hash_md5(md5("12345")), "strUserType": "Administrator"},
            {"strUser": "op", "strPasswd": hash_md5(md5("o")), "strUserType": "Operator"},
            {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
        ]
        self.gw.conf_path.write_text(json.dumps(conf, indent=4))
        self.gw.start()
        self.picture = root / "testsrc2.png"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25",
                        "-frames:v", "1", str(self.picture)], check=True, timeout=30)  # fmt: skip

    def url(self, token: str, user: str = "op", password: str = "o") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{token}"

    def publish(self, token: str, transport: str = "tcp", audio: str = "aac", video: str = "libx264",
                user: str = "op", password: str = "o", bframes: int = 0) -> subprocess.Popen:  # fmt: skip
        """ffmpeg publishing testsrc2's first picture at 25 fps and a sine, until stopped."""
        pcma = ["-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1"]
        audio_codec = pcma if audio == "pcma" else ["-c:a", "aac", "-ar", "44100"]
        video_codec = ["-c:v", video, "-g", "25", "-bf", str(bframes), "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        if video == "libx265":
            video_codec += ["-x265-params", "log-level=error"]
        command = ["ffmpeg", "-v", "error", "-re", "-loop", "1", "-framerate", "25", "-i", str(self.picture),
                   "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                   *video_codec, *audio_codec, "-f", "rtsp", "-rtsp_transport", transport,
                   self.url(token, user, password)]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def src(self, token: str) -> dict:
        return self.gw.api("GetSrc", session=self.gw.login(), token=token)[1]["src"][0]

    def wait_online(self, token: str, online: bool = True, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            src = self.src(token)
            if src["bOnline"] == online:
                return src
            time.sleep(0.2)
        raise AssertionError(f"{token} not bOnline={online}: {src}\n{self.gw.log()[-3000:]}")


@pytest.fixture(scope="module")
def pub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublishGateway]:
    gateway = PublishGateway(tmp_path_factory.mktemp("publish"))
    yield gateway
    gateway.gw.stop()


def stop(process: subprocess.Popen) -> str:
    """Stop a publisher as an operator would (q is ffmpeg's own way out); its error output."""
    if process.poll() is None:
        process.terminate()
    try:
        _, errors = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, errors = process.communicate()
    return errors


def decode(url: str, seconds: float = 2.0) -> tuple[np.ndarray, int, str, int]:
    """(the last picture as RGB, video frames, the audio codec, audio frames) over `seconds`."""
    picture, video_frames, audio_frames = None, 0, 0
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=15) as container:
        audio_codec = container.streams.audio[0].codec_context.name
        deadline = time.monotonic() + seconds
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, av.VideoFrame):
                picture = frame.to_ndarray(format="rgb24")
                video_frames += 1
            else:
                audio_frames += 1
            if time.monotonic() > deadline:
                break
    assert picture is not None
    return picture, video_frames, audio_codec, audio_frames


def assert_testsrc2(picture: np.ndarray, tolerance: int = 40) -> None:
    assert picture.shape == (HEIGHT, WIDTH, 3)
    for (row, column), want in TESTSRC2.items():
        got = picture[row - 3 : row + 4, column - 3 : column + 4].reshape(-1, 3).mean(axis=0)
        assert all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True)), ((row, column), got, want)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_publishes_h264_and_aac(pub, transport):
    publisher = pub.publish("push", transport)
    try:
        src = pub.wait_online("push")
        assert src["strPublisher"] == "rtsp from 127.0.0.1", src
        picture, video_frames, audio_codec, audio_frames = decode(pub.url("push", "admin", "12345"))
        assert_testsrc2(picture)
        assert video_frames >= 30 and audio_codec == "aac" and audio_frames >= 40, (video_frames, audio_frames)
    finally:
        errors = stop(publisher)
    src = pub.wait_online("push", online=False)
    assert src["strPublisher"] == "", (src, errors)


def test_ffmpeg_publishes_h264_with_b_frames_and_pcma_which_viewers_get_as_aac_too(pub):
    viewer = WsViewer(pub.gw.ws_url, "pcma", pub.gw.login())
    publisher = pub.publish("pcma", audio="pcma", bframes=2)
    try:
        pub.wait_online("pcma")
        picture, video_frames, audio_codec, audio_frames = decode(pub.url("pcma", "admin", "12345"))
        assert_testsrc2(picture)
        assert audio_codec == "pcm_alaw" and audio_frames >= 40 and video_frames >= 30, (audio_frames, video_frames)
        viewer.start()
        assert viewer.wait_frames(10, 10), pub.gw.log()[-2000:]
        assert viewer.mime is not None and "mp4a.40.2" in viewer.mime and "avc1" in viewer.mime, viewer.mime
        viewer.stop()
        with av.open(io.BytesIO(viewer.stream_bytes())) as fmp4:
            pictures = [f for f in fmp4.decode(video=0)]
        assert len(pictures) >= 10 and all(b.pts > a.pts for a, b in pairwise(pictures))  # shown in order
        assert_testsrc2(pictures[-1].to_ndarray(format="rgb24"))
    finally:
        viewer.stop()
        stop(publisher)


def test_ffmpeg_publishes_h265(pub):
    publisher = pub.publish("hevc", video="libx265")
    try:
        pub.wait_online("hevc")
        picture, video_frames, audio_codec, audio_frames = decode_codec(pub.url("hevc", "admin", "12345"), "hevc")
        assert_testsrc2(picture)
        assert video_frames >= 20 and audio_codec == "aac" and audio_frames >= 20, (video_frames, audio_frames)
    finally:
        errors = stop(publisher)
    assert pub.wait_online("hevc", online=False)["strPublisher"] == "", errors


def decode_codec(url: str, codec: str) -> tuple[np.ndarray, int, str, int]:
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=15) as container:
        assert container.streams.video[0].codec_context.name == codec
    return decode(url)


@pytest.mark.parametrize(
    ("token", "user", "password", "status", "says"),
    [
        ("push", "op", "wrong", 401, "Unauthorized"),
        ("push", "viewer", "v", 401, "Operator or higher"),
        ("push", "", "", 401, "credentials required"),
        ("nosuch", "op", "o", 404, "no source"),
        ("cam", "admin", "12345", 403, "H5_STREAM"),
    ],
)
def test_refused_publishers_change_nothing(pub, token, user, password, status, says):
    conf = pub.gw.conf_path.read_bytes()
    publisher = pub.publish(token, user=user, password=password)
    try:
        publisher.wait(timeout=15)
    finally:
        errors = stop(publisher)
    assert publisher.returncode != 0 and f"ANNOUNCE failed: {status}" in errors and says in errors, errors
    assert pub.src("push")["strPublisher"] == "" and not pub.src("push")["bOnline"]
    assert pub.gw.conf_path.read_bytes() == conf


def test_a_second_publisher_is_refused_while_the_first_publishes(pub):
    conf = pub.gw.conf_path.read_bytes()
    first = pub.publish("push")
    try:
        pub.wait_online("push")
        second = pub.publish("push", user="admin", password="12345")
        second.wait(timeout=15)
        errors = stop(second)
        assert second.returncode != 0 and "ANNOUNCE failed: 409" in errors, errors
        assert "already has a publisher" in errors, errors
        assert first.poll() is None and pub.src("push")["bOnline"]
    finally:
        stop(first)
    pub.wait_online("push", online=False)
    assert pub.gw.conf_path.read_bytes() == conf


def test_a_dropped_publisher_leaves_viewers_waiting_for_the_next(pub):
    viewer = WsViewer(pub.gw.ws_url, "push", pub.gw.login())
    publisher = pub.publish("push", transport="udp")
    try:
        pub.wait_online("push")
        viewer.start()
        assert viewer.wait_frames(10, 10), pub.gw.log()[-2000:]
        publisher.kill()  # no TEARDOWN: the connection just ends
        stop(publisher)
        src = pub.wait_online("push", online=False, timeout=5)
        assert src["strPublisher"] == "", src
        time.sleep(1)
        held = len(viewer.video_fragments())
        time.sleep(1)
        assert viewer.is_alive() and viewer.close_code is None and len(viewer.video_fragments()) == held
        publisher = pub.publish("push")
        pub.wait_online("push")
        deadline = time.monotonic() + 10
        while len(viewer.video_fragments()) < held + 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(viewer.video_fragments()) >= held + 25 and viewer.close_code is None, pub.gw.log()[-2000:]
        assert viewer.connections == 1
    finally:
        viewer.stop()
        stop(publisher)


class RawRtsp:
    """A bare RTSP client on one connection: requests out, (status, reason, headers) back."""

    def __init__(self, port: int, user: str = "op", password: str = "o"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.port = port
        self.cseq = 0
        self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""):
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", f"Authorization: {self.authorization}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = self.file.readline().decode().rstrip()
        answer = {}
        while (line := self.file.readline().decode().rstrip()):
            name, _, value = line.partition(":")
            answer[name.lower()] = value.strip()
        _, status, reason = status_line.split(" ", 2)
        return int(status), reason, answer

    def announce(self, url: str, sdp: bytes):
        return self.request("ANNOUNCE", url, {"Content-Type": "application/sdp"}, sdp)

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()


H264_SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
            "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:streamid=0\r\n")  # fmt: skip


@pytest.mark.parametrize(
    ("sdp", "status", "says"),
    [
        (b"hello", 400, "no SDP"),
        (b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", 415, "VP8 not supported"),
        (b"v=0\r\nm=audio 0 RTP/AVP 8\r\n", 415, "one video track"),
        (H264_SDP.encode() + b"m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n", 415, "AAC"),
    ],
)
def test_an_sdp_that_cannot_be_published_is_refused(pub, sdp, status, says):
    client = RawRtsp(pub.port)
    try:
        got, reason, _ = client.announce(f"rtsp://127.0.0.1:{pub.port}/push", sdp)
    finally:
        client.close()
    assert got == status and says in reason, (got, reason)
    assert pub.src("push")["strPublisher"] == ""


def test_a_publisher_that_sends_nothing_is_dropped(pub):
    client = RawRtsp(pub.port)
    base = f"rtsp://127.0.0.1:{pub.port}/push"
    try:
        status, _, _ = client.announce(base, H264_SDP.encode())
        assert status == 200
        transport = "RTP/AVP/UDP;unicast;client_port=40000-40001;mode=record"
        status, _, answer = client.request("SETUP", f"{base}/streamid=0", {"Transport": transport})
        assert status == 200 and "server_port=" in answer["transport"], answer
        session = answer["session"].split(";")[0]
        status, _, _ = client.request("RECORD", base, {"Session": session})
        assert status == 200
        assert pub.src("push")["strPublisher"] == "rtsp from 127.0.0.1"
        started = time.monotonic()
        assert client.closed_within(15)
        assert 9 <= time.monotonic() - started <= 13
    finally:
        client.close()
    assert pub.src("push")["strPublisher"] == ""


def test_deleting_a_pushed_source_ends_its_publisher(pub):
    session = pub.gw.login()
    status, answer = pub.gw.api("AddSrcPush", session=session, name="Gone", token="gone")
    assert status == 200 and answer["bStatus"], answer
    publisher = pub.publish("gone")
    try:
        pub.wait_online("gone")
        status, answer = pub.gw.api("DelSrc", session=session, token="gone")
        assert status == 200 and answer["bStatus"], answer
        publisher.wait(timeout=10)
    finally:
        stop(publisher)
    assert "its source was removed" in pub.gw.log()


def test_with_http_auth_off_anyone_may_publish(tmp_path):
    port = free_port()
    gw = Gateway(tmp_path, [{"strName": "Open", "strToken": "open", "nType": "H5_PUSH"}], rtsp__nRTSPPort=port,
                 http__bAuth=False).start()  # fmt: skip
    client = RawRtsp(port, user="nobody", password="")
    try:
        status, reason, _ = client.announce(f"rtsp://127.0.0.1:{port}/open", H264_SDP.encode())
        assert status == 200, reason
        assert gw.api("GetSrc", token="open")[1]["src"][0]["strPublisher"] == "rtsp from 127.0.0.1"
    finally:
        client.close()
        gw.stop()
