"""WebRTC H.265 (RFC 7798): a real GStreamer H.265 camera behind a real gateway, sent as it
is to a client that takes H.265 (WHEP, and the h5s signalling) without ever starting a
transcode; Debian's Chromium (no H.265 decoder) plays the source's H.264 rendition, or,
when the source has none, is refused with the reason, as is a WHEP client without H265.

The H.265 client is aiortc with H265 added to its codecs (webrtcbin would need a
system-python subprocess and its own signalling); it keeps the RTP payloads of the
video, which a depacketizer written from the RFC (tests/fixtures/rtp_h265.py), and
GStreamer's rtph265depay, and FFmpeg's HEVC decoder turn back into pictures: the
camera's size, the SMPTE bars' colours.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from gateway.formats import h265, nal
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.rtp_h265 import aiortc_client_codecs, depacketize
from tests.test_browser import SMPTE_BARS, assert_smpte, bar_colours
from tests.test_webrtc import poll, wait_decoding

WIDTH, HEIGHT = 640, 360


@pytest.fixture(scope="module")
def h265_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """(gateway, session): one H.265 camera (x265enc, PCMA), for the whole module, as three
    sources: `cam` without an H.264 rendition, `camr` and `camh` with one (the default, auto)."""
    with RtspCamera(codec="h265", width=WIDTH, height=HEIGHT, audio="pcma") as camera:
        gw = Gateway(tmp_path_factory.mktemp("gw"))
        gw.start()
        try:
            session = gw.login()
            for token, rendition in (("cam", "off"), ("camr", "auto"), ("camh", "auto")):
                status, answer = gw.api(
                    "AddSrcRTSP", session=session, name=token, token=token, url=camera.url, rendition=rendition
                )
                assert status == 200, answer
            yield gw, session
        finally:
            gw.stop()


@dataclass
class Received:
    answer: str = ""  # the gateway's answer (WHEP) or offer (h5s)
    packets: list[tuple[int, bool, bytes]] = field(default_factory=list)  # video RTP: (timestamp, marker, payload)


def video_receiver(pc, received: Received) -> None:
    """Keep the video RTP payloads as they reach the client's receiver (aiortc has no H.265 decoder)."""
    receiver = pc.getTransceivers()[0].receiver

    async def on_rtp(packet, arrival_time_ms):
        received.packets.append((packet.timestamp, bool(packet.marker), packet.payload))

    receiver._handle_rtp_packet = on_rtp


async def whep(gw: Gateway, session: str, seconds: float, h265: bool, token: str = "cam") -> tuple[int, Received]:
    """A WHEP client (video and audio, recvonly) offering H265 and H.264, or H.264 only."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    received = Received()
    pc = RTCPeerConnection()
    with aiortc_client_codecs(h265) as prefer:
        prefer(pc.addTransceiver("video", direction="recvonly"))
        pc.addTransceiver("audio", direction="recvonly")
        video_receiver(pc, received)
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {session}"}
            async with http.post(f"{gw.url}/{token}/whep", data=pc.localDescription.sdp, headers=headers) as r:
                status, received.answer = r.status, await r.text()
        if status == 201:
            await pc.setRemoteDescription(RTCSessionDescription(received.answer, "answer"))
            await asyncio.sleep(seconds)
        await pc.close()
    return status, received


async def h5srtcapi(
    gw: Gateway, session: str, seconds: float, h265: bool, token: str = "cam"
) -> tuple[Received, tuple[int | None, str]]:
    """The h5s player's signalling: the gateway offers, an aiortc client answers, taking
    H265 and H.264, or H.264 only; also (close code, reason or last H5_ERROR) of the
    socket if the gateway closed it."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    received = Received()
    pc = RTCPeerConnection()
    closed: tuple[int | None, str] = (None, "")
    with aiortc_client_codecs(h265) as prefer:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{gw.ws_url}/api/v1/h5srtcapi?token={token}&session={session}") as ws:
                await ws.send_str(json.dumps({"type": "open"}))
                while not received.answer:
                    message = json.loads((await ws.receive(timeout=20)).data)
                    if message["type"] == "offer":
                        received.answer = message["sdp"]
                prefer(pc.addTransceiver("video", direction="recvonly"))  # the offer's section lands in it
                await pc.setRemoteDescription(RTCSessionDescription(received.answer, "offer"))
                video_receiver(pc, received)
                await pc.setLocalDescription(await pc.createAnswer())
                await ws.send_str(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
                reason = ""
                try:
                    async with asyncio.timeout(seconds):
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "H5_ERROR":
                                reason = json.loads(msg.data)["strCode"]
                except TimeoutError:
                    pass
                if ws.closed:
                    closed = (ws.close_code, reason)
        await pc.close()
    return received, closed


def run(coroutine):
    with ThreadPoolExecutor(1) as thread:  # its own event loop: Playwright's may run in this one
        return thread.submit(asyncio.run, coroutine).result()


def access_units(received: Received) -> list[list[bytes]]:
    """The NAL units of each access unit (the marker bit ends one), from the first IRAP picture."""
    units, payloads = [], []
    for _, marker, payload in received.packets:
        payloads.append(payload)
        if marker:
            units.append(depacketize(payloads))
            payloads = []
    first = next(i for i, nals in enumerate(units) if any(h265.is_irap(h265.nal_type(n)) for n in nals))
    return units[first:]


def decoded(units: list[list[bytes]]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("hevc", "r")
    frames = []
    for nals in units:
        frames += decoder.decode(av.Packet(nal.to_annexb(nals)))
    return frames + decoder.decode(None)


def assert_smpte_bars(frame: av.VideoFrame, tolerance: int = 48) -> None:
    rgb = frame.to_ndarray(format="rgb24")
    middle = [rgb[HEIGHT // 2, int((i + 0.5) * WIDTH / 7)].tolist() for i in range(7)]
    for got, want in zip(middle, SMPTE_BARS):
        assert all(abs(g - w) <= tolerance for g, w in zip(got, want)), (middle, SMPTE_BARS)


def assert_h265_pictures(received: Received) -> None:
    """Parameter sets before every IRAP picture, and pictures of the camera's, decoded."""
    units = access_units(received)
    for nals in units:
        kinds = [h265.nal_type(n) for n in nals]
        if any(h265.is_irap(k) for k in kinds):
            assert kinds[:3] == [h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS], kinds
    frames = decoded(units)
    assert len(frames) >= 40, len(frames)  # 25 fps for 3 s, less the wait for the first keyframe
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        assert_smpte_bars(frame)


def gstreamer_depayloaded(received: Received, workdir: Path) -> bytes:
    """The Annex-B stream GStreamer's rtph265depay makes of the payloads, as RTP packets
    (RFC 4571 framing through rtpstreamdepay), in the order they came."""
    packets = bytearray()
    for sequence, (timestamp, marker, payload) in enumerate(received.packets):
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, sequence & 0xFFFF, timestamp, 1)
        packets += struct.pack("!H", len(header) + len(payload)) + header + payload
    source, sink = workdir / "video.rtp", workdir / "video.h265"
    source.write_bytes(packets)
    subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={source}", "!",
         "application/x-rtp-stream,media=video,clock-rate=90000,encoding-name=H265,payload=96", "!",
         "rtpstreamdepay", "!", "rtph265depay", "!", "video/x-h265,stream-format=byte-stream,alignment=au", "!",
         "filesink", f"location={sink}"],
        check=True, timeout=30, capture_output=True,
    )
    return sink.read_bytes()


def camera_level(received: Received) -> int:
    sps = next(n for nals in access_units(received) for n in nals if h265.nal_type(n) == h265.NAL_SPS)
    return h265.SpsInfo.parse(sps).level_idc


def h265_fmtp(sdp: str) -> str:
    """The fmtp line of the H265 codec of the video section."""
    video = sdp[sdp.index("m=video"):]
    payload_type = re.search(r"a=rtpmap:(\d+) H265/90000", video).group(1)
    return re.search(rf"a=fmtp:{payload_type} (.*)", video).group(1).strip()


def test_whep_client_offering_h265_gets_the_camera_h265_that_decodes(h265_camera, tmp_path):
    gw, session = h265_camera
    status, received = run(whep(gw, session, seconds=3, h265=True))
    assert status == 201, received.answer
    video = received.answer[received.answer.index("m=video"):]
    assert "H265/90000" in video and "H264" not in video and "VP8" not in video
    fmtp = h265_fmtp(received.answer)
    assert f"level-id={camera_level(received)}" in fmtp and "profile-id=1" in fmtp and "tx-mode=SRST" in fmtp, fmtp
    assert_h265_pictures(received)
    assert "never re-encodes" not in gw.log()
    # GStreamer's depayloader reads the same packets into as many pictures.
    annexb = gstreamer_depayloaded(received, tmp_path)
    decoder = av.CodecContext.create("hevc", "r")
    pictures = [f for p in decoder.parse(annexb) + decoder.parse(None) for f in decoder.decode(p)]
    pictures += decoder.decode(None)
    assert len(pictures) == len(decoded(access_units(received)))
    assert {(f.width, f.height) for f in pictures} == {(WIDTH, HEIGHT)}
    assert_smpte_bars(pictures[-1])


def test_h5srtcapi_offers_only_h265_without_a_rendition_and_the_answer_gets_it(h265_camera):
    gw, session = h265_camera
    received, closed = run(h5srtcapi(gw, session, seconds=3, h265=True))
    offer_video = received.answer[received.answer.index("m=video"):]
    assert "H265/90000" in offer_video and "H264" not in offer_video, offer_video
    assert f"level-id={camera_level(received)}" in h265_fmtp(received.answer)
    assert closed == (None, "")
    assert_h265_pictures(received)


def test_whep_client_without_h265_is_refused_when_there_is_no_rendition(h265_camera):
    """aiortc's own codecs (VP8, H.264): no H.265 decoder, and the source has no H.264
    rendition to send instead; the refusal says so."""
    gw, session = h265_camera
    status, received = run(whep(gw, session, seconds=0, h265=False))
    assert status == 406, (status, received.answer)
    assert "H.265" in received.answer and "rendition" in received.answer, received.answer
    assert gw.api("GetSrc", session=session)[0] == 200  # the gateway goes on


def test_chromium_without_h265_is_told_why_by_the_h5s_player(h265_camera, page):
    """Debian's Chromium has no H.265 decoder: offered only H265 (no rendition), its answer
    has no video codec, and the gateway closes the signalling socket with the reason,
    which the h5s player keeps (its last error) instead of playing a black picture."""
    gw, session = h265_camera
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => { localStorage.setItem('h5ss.session', s); localStorage.setItem('h5ss.protocol', 'rtc'); }",
                  session)
    page.goto(f"{gw.url}/player.html?token=cam")
    reason = poll(page, "() => window.h5ssPlayer && window.h5ssPlayer.stats().lastError")
    assert reason == "stream cam is H.265, which this client cannot play, and its H.264 rendition is off", reason


def test_h265_clients_of_a_source_with_a_rendition_get_h265_and_never_cause_a_transcode(h265_camera):
    """WHEP offering H265, and the h5s signalling (offered H265 first, then H.264 for the
    rendition) answered with H265: the camera's H.265 both times, no transcode started."""
    gw, session = h265_camera
    status, received = run(whep(gw, session, seconds=3, h265=True, token="camh"))
    assert status == 201 and "H265/90000" in received.answer, received.answer
    assert_h265_pictures(received)
    received, closed = run(h5srtcapi(gw, session, seconds=3, h265=True, token="camh"))
    offer_video = received.answer[received.answer.index("m=video"):]
    assert offer_video.index("H265/90000") < offer_video.index("H264/90000"), offer_video
    assert closed == (None, "")
    assert_h265_pictures(received)
    assert "stream camh/h264" not in gw.log()  # the rendition never ran
    sources = {s["strToken"]: s for s in gw.api("GetSrc", session=session)[1]["src"]}
    assert sources["camh"]["bH264Rendition"] is False


def test_chromium_plays_the_h264_rendition_over_whep(h265_camera, page):
    gw, session = h265_camera
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    page.goto(f"{gw.url}/camr/")
    stats = wait_decoding(page, "window.h5ssPeer")
    assert stats["video"]["mime"] == "video/H264", stats
    assert_smpte(bar_colours(page))


def test_chromium_plays_the_h264_rendition_through_the_h5s_player(h265_camera, page):
    gw, session = h265_camera
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => { localStorage.setItem('h5ss.session', s); localStorage.setItem('h5ss.protocol', 'rtc'); }",
                  session)
    page.goto(f"{gw.url}/player.html?token=camr")
    stats = wait_decoding(page, "window.h5ssPlayer && window.h5ssPlayer._pc")
    assert stats["video"]["mime"] == "video/H264" and stats["audio"]["mime"] == "audio/PCMA", stats
    assert_smpte(bar_colours(page))
