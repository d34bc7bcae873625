"""Live WebSocket fMP4 from a real RTSP camera and a real RTMP origin, checked by ffprobe."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.fixtures.ws_client import WsViewer, boxes, fragment_info, stalled_viewer


def ffprobe_streams(path: Path) -> list[dict]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,profile,width,height,sample_rate,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(out.stdout)["streams"]


def add_rtsp(gw, session: str, token: str, url: str, **extra) -> None:
    status, answer = gw.api("AddSrcRTSP", session=session, name=token, token=token, url=url, **extra)
    assert status == 200, answer


def watch(gw, session: str, token: str, seconds: float, min_frames: int = 1) -> WsViewer:
    viewer = WsViewer(gw.ws_url, token, session)
    viewer.start()
    assert viewer.wait_frames(min_frames, timeout=20), (viewer.error, viewer.close_reason, gw.log()[-3000:])
    time.sleep(seconds)
    return viewer.stop()


def test_rtsp_camera_h264_pcma_plays_as_h264_aac(camera_source, tmp_path):
    gw, session, _ = camera_source(profile="high", audio="pcma")
    viewer = watch(gw, session, "cam", 4, min_frames=10)
    assert viewer.mime.startswith('video/mp4; codecs="avc1.64') and "mp4a.40.2" in viewer.mime
    capture = tmp_path / "capture.mp4"
    capture.write_bytes(viewer.stream_bytes())
    streams = {s["codec_name"]: s for s in ffprobe_streams(capture)}
    assert set(streams) == {"h264", "aac"}
    assert streams["h264"]["profile"] == "High"
    assert (streams["h264"]["width"], streams["h264"]["height"]) == (640, 360)
    assert int(streams["h264"]["nb_read_frames"]) >= 75  # ~4 s at 25 fps
    assert int(streams["aac"]["nb_read_frames"]) >= 30


def test_one_fragment_per_frame_and_shared_bytes(camera_source):
    gw, session, _ = camera_source(audio="none")
    first = WsViewer(gw.ws_url, "cam", session)
    second = WsViewer(gw.ws_url, "cam", session)
    first.start()
    assert first.wait_frames(5, 20)
    second.start()
    time.sleep(3)
    first.stop(), second.stop()
    fragments = first.fragments()
    assert all(fragment_info(data)[2] == 1 for _, data in fragments)  # one sample each
    assert [kind for kind, _ in boxes(fragments[0][1])] == [b"moof", b"mdat"]
    # Frames arrive as the camera makes them (25 fps), not a GOP at a time.
    gaps = [b[0] - a[0] for a, b in zip(fragments[10:], fragments[11:])]
    assert max(gaps) < 0.25, max(gaps)
    # Each viewer's media starts at decode time 0; the media bytes of the frames they share are the same.
    assert fragment_info(first.fragments()[0][1])[1] == 0 and fragment_info(second.fragments()[0][1])[1] == 0
    shared = {data[data.index(b"mdat") :] for _, data in first.fragments()} & {
        data[data.index(b"mdat") :] for _, data in second.fragments()
    }
    assert len(shared) >= 50


def test_audio_off_gives_video_only(make_gateway, camera_factory, tmp_path):
    camera = camera_factory(audio="pcma")
    gw = make_gateway()
    session = gw.login()
    add_rtsp(gw, session, "cam", camera.url, audio="false")
    viewer = watch(gw, session, "cam", 2, min_frames=5)
    assert "mp4a" not in viewer.mime
    capture = tmp_path / "capture.mp4"
    capture.write_bytes(viewer.stream_bytes())
    assert [s["codec_name"] for s in ffprobe_streams(capture)] == ["h264"]


def test_rtmp_origin_plays(make_gateway, rtmp_origin, tmp_path):
    url = rtmp_origin.publish("cam", width=640, height=360, fps=25).url
    gw = make_gateway()
    session = gw.login()
    add_rtsp(gw, session, "rtmpcam", url)
    viewer = watch(gw, session, "rtmpcam", 3, min_frames=10)
    capture = tmp_path / "capture.mp4"
    capture.write_bytes(viewer.stream_bytes())
    assert {s["codec_name"] for s in ffprobe_streams(capture)} == {"h264", "aac"}


@pytest.mark.parametrize("token,session,code,words", [
    ("token1", "forged", 4001, "unauthorized"),
    ("nope", None, 4004, "unknown token"),
    ("../etc", None, 4004, "unknown token"),
])
def test_bad_session_or_token_closes_with_reason(gateway, token, session, code, words):
    session = session or gateway.login()
    viewer = WsViewer(gateway.ws_url, urllib.parse.quote(token), session)
    viewer.start()
    viewer.join(10)
    assert viewer.close_code == code
    assert words in viewer.close_reason
    assert not viewer.frames


def test_hevc_flag_is_true_or_false(gateway):
    session = gateway.login()
    refused = WsViewer(gateway.ws_url, "token1", session)
    refused.url = refused.url.replace("hevc=false", "hevc=maybe")
    taken = WsViewer(gateway.ws_url, "token1", session)
    taken.url = taken.url.replace("hevc=false", "hevc=true")  # H.264 still: the source has no H.265
    refused.start(), taken.start()
    refused.join(10)
    assert refused.close_code == 4000 and "hevc must be true or false" in refused.close_reason
    assert taken.wait_frames(5, 15) and taken.mime.startswith('video/mp4; codecs="avc1')
    taken.stop()


def test_camera_restart_recovers_without_reconnect(camera_source):
    gw, session, camera = camera_source(audio="pcma")
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(25, 20)
    camera.stop()
    time.sleep(3)
    assert gw.api("GetSrc", session=session, token="cam")[1]["src"][0]["bOnline"] is False
    before = len(viewer.frames)
    camera.start()
    back = time.monotonic()
    assert viewer.wait_frames(before + 1, 10), gw.log()[-2000:]
    recovered = viewer.frames[before][0] - back
    time.sleep(1)
    viewer.stop()
    assert recovered <= 2.0, recovered
    assert viewer.connections == 1 and viewer.close_code is None
    assert gw.api("GetSrc", session=session, token="cam")[1]["src"][0]["bOnline"] is True
    # The timeline goes on forward across the outage (no jump back for MSE).
    video = [fragment_info(f) for _, f in viewer.video_fragments()]
    times = [base for _, base, _ in video]
    assert times == sorted(times) and len(set(times)) == len(times)


def established_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port on this machine (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


def test_on_demand_connects_with_first_viewer_and_leaves_after_linger(make_gateway, camera_factory):
    camera = camera_factory(audio="none")
    gw = make_gateway(source__nOnDemandLingerSec=2)
    session = gw.login()
    add_rtsp(gw, session, "cam", camera.url)
    time.sleep(1)
    assert established_to(camera.port) == 0
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(5, 20)
    assert established_to(camera.port) == 1
    viewer.stop()
    time.sleep(1)
    assert established_to(camera.port) == 1  # still lingering
    time.sleep(3)
    assert established_to(camera.port) == 0
    assert gw.api("GetSrc", session=session, token="cam")[1]["src"][0]["strState"] == "idle"


def test_stalled_viewer_does_not_slow_others(camera_source):
    gw, session, _ = camera_source(audio="none", bitrate=4000)
    stalled = [stalled_viewer(gw.port, "cam", session) for _ in range(3)]
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(5, 20)
    time.sleep(8)
    viewer.stop()
    for sock in stalled:
        sock.close()
    fragments = viewer.fragments()
    assert len(fragments) >= 8 * 25 * 0.9
    gaps = [b[0] - a[0] for a, b in zip(fragments, fragments[1:])]
    assert max(gaps) < 0.5, max(gaps)


def test_muted_viewer_gets_video_only_beside_a_full_one(camera_source, tmp_path):
    gw, session, _ = camera_source(audio="pcma")
    full = WsViewer(gw.ws_url, "cam", session)
    muted = WsViewer(gw.ws_url, "cam", session, query="&audio=false")
    full.start(), muted.start()
    assert full.wait_frames(25, 20) and muted.wait_frames(25, 20)
    time.sleep(2)
    full.stop(), muted.stop()
    assert "mp4a" in full.mime and "mp4a" not in muted.mime
    for viewer, codecs in ((full, {"h264", "aac"}), (muted, {"h264"})):
        capture = tmp_path / "capture.mp4"
        capture.write_bytes(viewer.stream_bytes())
        assert {s["codec_name"] for s in ffprobe_streams(capture)} == codecs
    # The video fragments are the very same bytes for both.
    video = {f for _, f in muted.video_fragments()}
    assert len(video & {f for _, f in full.video_fragments()}) >= 50
    # Audio rides in the message of the next video frame: one message per frame.
    assert len(full.fragments()) <= len(full.video_fragments()) + 5


def test_deleting_a_source_ends_its_viewers_with_a_reason(camera_source):
    gw, session, _ = camera_source(audio="none")
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(5, 20)
    assert gw.api("DelSrc", session=session, token="cam")[0] == 200
    viewer.join(10)
    assert viewer.close_code == 4004 and "deleted" in viewer.close_reason
