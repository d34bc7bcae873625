"""Source types end to end: file containers, RTSP transports and camera credentials."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.fixtures.ws_client import WsViewer
from tests.test_ws_live import ffprobe_streams


def capture(gw, session: str, token: str, seconds: float, tmp_path) -> tuple[str, list[dict]]:
    viewer = WsViewer(gw.ws_url, token, session)
    viewer.start()
    assert viewer.wait_frames(10, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    time.sleep(seconds)
    viewer.stop()
    path = tmp_path / f"{token}.mp4"
    path.write_bytes(viewer.stream_bytes())
    return viewer.mime, ffprobe_streams(path)


@pytest.mark.parametrize("ext,extra", [
    ("mkv", []),
    ("ts", []),  # ADTS audio and Annex-B video
    ("flv", []),
])
def test_file_containers_play(make_gateway, tmp_path, ext, extra):
    gw = make_gateway()
    media = gw.root / "media"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media / "h5ss-sample.mp4"), "-c", "copy", *extra,
                    str(media / f"clip.{ext}")], check=True, timeout=60)
    session = gw.login()
    status, answer = gw.api("AddSrcFile", session=session, name=ext, token=ext, url=f"clip.{ext}")
    assert status == 200, answer
    mime, streams = capture(gw, session, ext, 2, tmp_path)
    assert {s["codec_name"] for s in streams} == {"h264", "aac"}


def test_small_frames_whose_avcc_length_looks_like_a_start_code_play_intact(make_gateway, tmp_path):
    """A 256-511 byte NAL's length prefix is 00 00 01 xx, an Annex-B start code to a sniffer:
    at 320x180 most P frames are that size. Every frame must still decode."""
    from gateway.ingest.sample import make_sample

    gw = make_gateway()
    make_sample(gw.root / "media" / "small.mp4", seconds=4, width=320, height=180, fps=25, bitrate=150_000)
    session = gw.login()
    status, answer = gw.api("AddSrcFile", session=session, name="small", token="small", url="small.mp4")
    assert status == 200, answer
    viewer = WsViewer(gw.ws_url, "small", session)
    viewer.start()
    assert viewer.wait_frames(60, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    viewer.stop()
    path = tmp_path / "small.mp4"
    path.write_bytes(viewer.stream_bytes())
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json",
                                       str(path)], capture_output=True, text=True, timeout=30, check=True).stdout)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 180)
    assert int(video["nb_read_frames"]) >= 55


def test_file_source_loops_past_its_end(make_gateway):
    gw = make_gateway([{"strName": "S", "strToken": "s", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}])
    viewer = WsViewer(gw.ws_url, "s", gw.login())
    viewer.start()
    time.sleep(6)  # the clip is 4 s long
    viewer.stop()
    fragments = viewer.fragments()
    assert len(fragments) > 5.5 * 25
    gaps = [b[0] - a[0] for a, b in zip(fragments, fragments[1:])]
    assert max(gaps) < 0.5


@pytest.mark.parametrize("rtsptype", ["H5_RTSP_UDP", "H5_RTSP_AUTO"])
def test_rtsp_transports(make_gateway, camera_factory, tmp_path, rtsptype):
    camera = camera_factory(audio="pcma")
    gw = make_gateway()
    session = gw.login()
    status, answer = gw.api("AddSrcRTSP", session=session, name="c", token="c", url=camera.url, rtsptype=rtsptype)
    assert status == 200, answer
    _, streams = capture(gw, session, "c", 2, tmp_path)
    assert {s["codec_name"] for s in streams} == {"h264", "aac"}


def test_camera_credentials_work_and_are_never_shown(make_gateway, camera_factory, tmp_path):
    secret = "Pa55-w0rd:@/x"  # needs percent-encoding in a URL
    camera = camera_factory(user="viewer", password=secret, audio="none")
    plain_url = f"rtsp://127.0.0.1:{camera.port}/cam"
    gw = make_gateway()
    session = gw.login()
    status, answer = gw.api("AddSrcRTSP", session=session, name="c", token="c", url=plain_url,
                            user="viewer", password=secret)
    assert status == 200, answer
    _, streams = capture(gw, session, "c", 1, tmp_path)
    assert [s["codec_name"] for s in streams] == ["h264"]
    # Wrong password: the source reports it is offline with a reason, the secret shows nowhere.
    status, answer = gw.api("AddSrcRTSP", session=session, name="d", token="d", url=plain_url,
                            user="viewer", password="wrong-" + secret)
    assert status == 200
    viewer = WsViewer(gw.ws_url, "d", session)
    viewer.start()
    time.sleep(3)
    src = gw.api("GetSrc", session=session, token="d")[1]["src"][0]
    viewer.stop()
    assert src["bOnline"] is False and src["strLastError"]
    everything = gw.log() + json.dumps(gw.api("GetSrc", session=session)[1])
    assert secret not in everything and "Pa55" not in everything


def test_credentials_in_a_camera_urls_query_are_shown_to_no_one(make_gateway, camera_factory, tmp_path):
    """Cameras that take `?user=&password=`: GetSrc (every role) and the log mask them."""
    from gateway.auth import hash_md5
    from tests.fixtures.gateway import md5

    camera = camera_factory(audio="none")
    url = f"rtsp://admin:Userinfo-secret@127.0.0.1:{camera.port}/cam?user=admin&password=Query-secret&pwd=Pwd-secret"
    gw = make_gateway(start=False, system__strLogLevel="debug")
    conf = json.loads(gw.conf_path.read_text())
    conf["user"]["users"].append({"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"})
    gw.conf_path.write_text(json.dumps(conf))
    gw.start()
    session = gw.login()
    status, answer = gw.api("AddSrcRTSP", session=session, name="c", token="c", url=url)
    assert status == 200, answer
    _, streams = capture(gw, session, "c", 1, tmp_path)  # the camera is opened with them
    assert [s["codec_name"] for s in streams] == ["h264"]
    for who in (session, gw.login("viewer", "v")):
        src = gw.api("GetSrc", session=who, token="c")[1]["src"][0]
        assert src["strUrl"] == (f"rtsp://admin:*****@127.0.0.1:{camera.port}/cam"
                                 "?user=admin&password=*****&pwd=*****"), src
    assert f"127.0.0.1:{camera.port}/cam" in gw.log()  # the log names the URL...
    assert "secret" not in gw.log()  # ...without its secrets
    assert json.loads(gw.conf_path.read_text())["source"]["src"][-1]["strUrl"] == url  # the config keeps them
