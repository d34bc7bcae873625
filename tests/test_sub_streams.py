"""Main and sub streams end to end: `profile=sub` on an ONVIF camera with two profiles of
different sizes and on an RTSP source with a sub URL (WS, WHEP, HLS), a source without a
sub stream, refusals of a bad profile on every path, GetSrc, restart and deletion.

The two real GStreamer cameras differ only in size, so ffprobe on the bytes a client
receives (or the frame aiortc decodes) says which stream it was served.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from tests.fixtures.camera import RtspCamera
from tests.fixtures.net import run_async
from tests.fixtures.onvif_device import OnvifDevice, Profile
from tests.fixtures.ws_client import WsViewer
from tests.test_ws_live import ffprobe_streams

MAIN_SIZE, SUB_SIZE = (640, 360), (320, 180)


@pytest.fixture(scope="module")
def cameras() -> Iterator[tuple[RtspCamera, RtspCamera]]:
    """(main, sub): a 640x360 and a 320x180 camera, video only."""
    with RtspCamera(audio="none", mount="main") as main, RtspCamera(
        audio="none", mount="sub", width=SUB_SIZE[0], height=SUB_SIZE[1], bitrate=300
    ) as sub:
        yield main, sub


def ws_size(gw, session: str, token: str, tmp_path, profile: str | None = None, frames: int = 5) -> tuple[int, int]:
    """The video size of what h5swsapi sends for `profile` (none: not asked)."""
    viewer = WsViewer(gw.ws_url, token, session, f"&profile={profile}" if profile else "")
    viewer.start()
    assert viewer.wait_frames(frames, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    viewer.stop()
    path = tmp_path / f"{token}-{profile}.mp4"
    path.write_bytes(viewer.stream_bytes())
    video = next(s for s in ffprobe_streams(path) if s["codec_name"] == "h264")
    return video["width"], video["height"]


def refused(gw, session: str, path: str, query: str) -> tuple[int | None, str | None]:
    """(close code, reason) of an h5s socket opened with `query`."""
    viewer = WsViewer(gw.ws_url, "x", session)
    viewer.url = f"{gw.ws_url}/api/v1/{path}?session={session}{query}"
    viewer.start()
    viewer.join(10)
    return viewer.close_code, viewer.close_reason


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


async def whep_frame_size(url: str, session: str) -> tuple[int, int]:
    """The size of the first video frame an aiortc WHEP client decodes from `url`."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as client:
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {session}"}
            async with client.post(url, data=pc.localDescription.sdp, headers=headers) as r:
                assert r.status == 201, await r.text()
                answer = await r.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        frame = await asyncio.wait_for(pc.getTransceivers()[0].receiver.track.recv(), 15)
        return frame.width, frame.height
    finally:
        await pc.close()


def test_onvif_profile_sub_serves_the_smaller_profile_and_main_the_larger(make_gateway, cameras, tmp_path):
    main_cam, sub_cam = cameras
    profiles = [
        Profile("prof_main", "mainStream", *MAIN_SIZE, 25, 1000, stream_uri=main_cam.url),
        Profile("prof_sub", "subStream", *SUB_SIZE, 25, 300, stream_uri=sub_cam.url),
    ]
    with OnvifDevice(profiles, user="admin", password="secret") as device:
        gw = make_gateway()
        session = gw.login()
        status, answer = gw.api("AddSrcONVIF", session=session, name="Door", token="door", ip="127.0.0.1",
                                port=device.port, user="admin", password="secret")
        assert status == 200 and answer["strOnvifProfileSubToken"] == "prof_sub", answer
        assert ws_size(gw, session, "door", tmp_path, "sub") == SUB_SIZE
        assert ws_size(gw, session, "door", tmp_path, "main") == MAIN_SIZE
        assert ws_size(gw, session, "door", tmp_path) == MAIN_SIZE  # main by default
        src = gw.api("GetSrc", session=session, token="door")[1]["src"][0]
    assert (src["bSubStream"], src["bSubOnline"], src["strSubState"]) == (True, True, "online"), src
    assert (src["nWidth"], src["nHeight"], src["nSubWidth"], src["nSubHeight"]) == (*MAIN_SIZE, *SUB_SIZE)
    assert src["strOnvifProfileSubToken"] == "prof_sub" and src["strOnvifSubRtspUrl"] == sub_cam.url
    assert src["strOnvifRtspUrl"] == main_cam.url
    assert "prof_sub" in {c.params["ProfileToken"] for c in device.calls_of("GetStreamUri")}


def test_rtsp_sub_url_serves_the_sub_camera_over_ws_whep_and_hls_and_survives_a_restart(
    make_gateway, cameras, tmp_path
):
    main_cam, sub_cam = cameras
    gw = make_gateway(hls__nHLSDuration=1)
    session = gw.login()
    status, answer = gw.api("AddSrcRTSP", session=session, name="Gate", token="gate", url=main_cam.url,
                            suburl=sub_cam.url)
    assert status == 200, answer
    assert ws_size(gw, session, "gate", tmp_path, "sub") == SUB_SIZE
    assert ws_size(gw, session, "gate", tmp_path, "main") == MAIN_SIZE
    assert run_async(lambda: whep_frame_size(f"{gw.url}/gate/whep?profile=sub", session)) == SUB_SIZE

    # HLS: the playlist's URIs carry profile=sub beside the session; the init segment is the sub camera's.
    status, playlist = http(f"{gw.url}/hls/v2/gate/hls.m3u8?session={session}&profile=sub")
    assert status == 200, playlist
    uris = re.findall(r'URI="([^"]+)"', playlist) + [line for line in playlist.splitlines() if line.startswith("seg")]
    assert uris and all(uri.endswith(f"?session={session}&profile=sub") for uri in uris), playlist
    with urllib.request.urlopen(f"{gw.url}/hls/v2/gate/{uris[0]}", timeout=10) as r:
        (tmp_path / "init.mp4").write_bytes(r.read())
    video = ffprobe_streams(tmp_path / "init.mp4")[0]
    assert (video["width"], video["height"]) == SUB_SIZE

    src = gw.api("GetSrc", session=session, token="gate")[1]["src"][0]
    assert src["strUrl"] == main_cam.url and src["strUrlSub"] == sub_cam.url and src["bSubStream"] is True
    saved = json.loads(gw.conf_path.read_text())["source"]["src"]
    assert [(s["strToken"], s["strUrlSub"]) for s in saved] == [("gate", sub_cam.url)]
    gw.restart()
    session = gw.login()
    assert gw.api("GetSrc", session=session, token="gate")[1]["src"][0]["strUrlSub"] == sub_cam.url
    # Deleting the source ends its sub stream's viewers too.
    viewer = WsViewer(gw.ws_url, "gate", session, "&profile=sub")
    viewer.start()
    assert viewer.wait_frames(3, 20), (viewer.error, viewer.close_reason)
    assert gw.api("DelSrc", session=session, token="gate")[0] == 200
    viewer.join(10)
    assert viewer.close_code == 4004 and "deleted" in viewer.close_reason


def test_a_bad_sub_url_is_refused_and_nothing_is_saved(make_gateway, cameras):
    gw = make_gateway()
    session = gw.login()
    before = gw.conf_path.read_text()
    status, answer = gw.api("AddSrcRTSP", session=session, name="G", token="g", url=cameras[0].url,
                            suburl="file:/etc/passwd")
    assert status == 400 and "scheme file: is not allowed" in answer["strCode"], answer
    assert gw.conf_path.read_text() == before


def test_without_a_sub_stream_sub_serves_main_and_a_bad_profile_is_refused_everywhere(gateway, tmp_path):
    session = gateway.login()
    assert ws_size(gateway, session, "token1", tmp_path, "sub") == MAIN_SIZE  # the 640x360 sample clip
    src = gateway.api("GetSrc", session=session, token="token1")[1]["src"][0]
    assert src["bSubStream"] is False and src["bSubOnline"] is src["bOnline"] is True
    assert (src["nSubWidth"], src["nSubHeight"]) == MAIN_SIZE

    reason = "profile must be main or sub, not 'hd'"
    for path in ("h5swsapi", "h5srtcapi", "h5swscmnapi"):
        assert refused(gateway, session, path, "&token=token1&profile=hd") == (4000, reason), path
    offer = b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    status, body = http(f"{gateway.url}/token1/whep?profile=hd", offer,
                        {"Content-Type": "application/sdp", "Authorization": f"Bearer {session}"})
    assert (status, json.loads(body)["strCode"]) == (400, reason)
    for path in ("hls/v1/token1/hls.m3u8", "hls/v2/token1/hls.m3u8", "token1/index.m3u8"):
        status, body = http(f"{gateway.url}/{path}?session={session}&profile=hd")
        assert (status, json.loads(body)["strCode"]) == (400, reason), path
    status, answer = gateway.api("GetHlsUrl", session=session, token="token1", profile="sub")
    assert status == 200 and answer["strV2Url"].endswith("&profile=sub"), answer
