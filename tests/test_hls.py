"""HLS v1 (MPEG-TS), v2 (fMP4) and LL-HLS: the segmenter on its own, then a real gateway
pulling a real RTSP camera, read by ffmpeg/ffprobe, plain HTTP and Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
import urllib.parse
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import aiohttp
import av
import pytest

from gateway.outputs.hls.grants import GRACE
from gateway.config.settings import HlsSettings
from gateway.formats import h264, nal
from gateway.formats import mpegts
from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.outputs.hls.playlist import media_playlist
from gateway.hub.stream import Stream
from gateway.hub.packet import MediaPacket, StreamParams, VideoParams
from gateway.formats.aac import aac_params
from tests.fixtures.hub import bare_stream
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.hlsjs import hls_js
from tests.fixtures.stamp import Rgb, read_stamp, stamp_age_ms
from tests.fixtures.net import run_async
from tests.test_browser import assert_smpte, bar_colours, wait_playing

# -- the segmenter, fed from a clip as the demux thread would -----------------------------


@pytest.fixture(scope="module")
def clip_packets() -> tuple[StreamParams, list[MediaPacket]]:
    """3 s of 25 fps H.264 (a keyframe each second) + 16 kHz AAC, as hub packets."""
    video = av.CodecContext.create("libx264", "w")
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.time_base = Fraction(1, 25)
    video.options = {"preset": "ultrafast", "g": "25", "bf": "0"}
    video.flags |= av.codec.context.Flags.global_header
    video.open()
    encoded = []
    for i in range(75):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.pts = i
        encoded += video.encode(frame)
    encoded += video.encode(None)
    sets = nal.split_annexb(bytes(video.extradata))
    params = StreamParams(VideoParams.from_h264(sets[0], sets[1]), aac_params(16000, 1))
    packets = []
    for p in encoded:
        nals = [n for n in nal.split_annexb(bytes(p)) if h264.nal_type(n) not in (h264.NAL_SPS, h264.NAL_PPS)]
        packets.append(MediaPacket("video", p.pts * 3600, p.pts * 3600, 3600, p.is_keyframe, nal.to_avcc(nals)))
    audio = av.CodecContext.create("aac", "w")
    audio.sample_rate, audio.layout, audio.format = 16000, "mono", "fltp"
    audio.time_base = Fraction(1, 16000)
    audio.open()
    for i in range(47):
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.sample_rate, frame.pts = 16000, i * 1024
        frame.planes[0].update(bytes(4096))
        packets += [MediaPacket("audio", p.pts, p.pts, 1024, True, bytes(p)) for p in audio.encode(frame) if p.pts >= 0]
    packets.sort(key=lambda p: p.dts / (90000 if p.kind == "video" else 16000))
    return params, packets


def feed(stream: Stream, params: StreamParams, packets: list[MediaPacket], switch: bool = False) -> None:
    """One camera session: starts at the first keyframe, as the demux thread does
    (`switch`: as the renewed input of an expiring source takes over)."""
    (stream.on_session_switch if switch else stream.on_session_start)(params)
    started = False
    for p in packets:
        started = started or p.kind == "video" and p.keyframe
        if started:
            stream.on_packet(MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data))


def segmenter(target: int = 1, count: int = 4) -> tuple[Stream, HlsSegmenter]:
    stream = bare_stream()
    seg = HlsSegmenter(stream, HlsSettings(count, target))
    stream.attach(seg)  # what touch() does, minus starting a real source
    return stream, seg


@pytest.mark.unit
def test_segments_start_at_keyframes_and_parts_are_200_ms(clip_packets):
    stream, seg = segmenter()
    feed(stream, *clip_packets)
    done = seg.complete_segments
    assert [s.msn for s in done] == [0, 1]  # the third second is still open
    for s in done:
        assert s.duration == pytest.approx(1.0)
        assert [p.duration for p in s.parts] == pytest.approx([0.2] * 5)
        assert [p.independent for p in s.parts] == [True, False, False, False, False]
        assert s.data == b"".join(p.data for p in s.parts)
        assert {p.kind for p in s.packets} == {"video", "audio"}
    assert seg.part_target == 0.2


@pytest.mark.unit
def test_a_jittery_camera_clock_still_cuts_every_gop(clip_packets):
    params, packets = clip_packets
    jittered = [MediaPacket(p.kind, p.dts - p.dts // 3600 % 3, p.pts - p.dts // 3600 % 3, p.duration, p.keyframe, p.data)
                if p.kind == "video" else p for p in packets]  # a keyframe a tick or two early
    stream, seg = segmenter()
    feed(stream, params, jittered)
    assert [len(s.parts) for s in seg.complete_segments] == [5, 5]
    assert seg.max_duration == 1


@pytest.mark.unit
def test_playlists_of_each_variant(clip_packets):
    stream, seg = segmenter()
    feed(stream, *clip_packets)
    v1, v2, ll = (media_playlist(seg, v, b"?session=S").decode() for v in ("v1", "v2", "ll"))
    assert "#EXT-X-VERSION:3" in v1 and "seg1.ts?session=S" in v1 and "EXT-X-MAP" not in v1
    assert '#EXT-X-MAP:URI="init1.mp4?session=S"' in v2 and "seg1.m4s?session=S" in v2
    assert "#EXT-X-PART" not in v1 + v2
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600" in ll
    assert "#EXT-X-PART-INF:PART-TARGET=0.200" in ll
    assert '#EXT-X-PART:DURATION=0.200,URI="part0.0.m4s?session=S",INDEPENDENT=YES' in ll
    open_parts = len(seg.open_segment.parts)
    assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part2.{open_parts}.m4s?session=S"' in ll
    for text in (v1, v2, ll):
        assert text.count("#EXT-X-PROGRAM-DATE-TIME:") >= 2 and "#EXT-X-MEDIA-SEQUENCE:0" in text
        assert all(float(d) <= 1 for d in re.findall(r"#EXTINF:([\d.]+),", text))


@pytest.mark.unit
def test_renewal_switch_continues_the_timeline_without_a_discontinuity(clip_packets):
    stream, seg = segmenter()
    video_dts: list[int] = []
    recorder = type("Recorder", (), {"on_params": lambda self, p: None,
                                     "on_packet": lambda self, p: p.kind == "video" and video_dts.append(p.dts)})()
    stream.attach(recorder)
    feed(stream, *clip_packets)
    feed(stream, *clip_packets, switch=True)  # the same camera through a fresh URL
    assert stream.online and not any(s.discontinuity for s in seg.segments)
    steps = [b - a for a, b in zip(video_dts, video_dts[1:])]
    assert set(steps) == {3600}  # 25 fps: one frame apart, across the switch too


@pytest.mark.unit
def test_reconnect_is_a_discontinuity_and_numbers_go_on(clip_packets):
    stream, seg = segmenter()
    feed(stream, *clip_packets)
    stream.on_session_end("camera gone")
    time.sleep(0.01)  # a new session: a new online_since
    feed(stream, *clip_packets)
    msns = [s.msn for s in seg.segments]
    assert msns == list(range(msns[0], msns[0] + len(msns)))
    flagged = [s.msn for s in seg.segments if s.discontinuity]
    assert flagged == [3]  # the open 3rd second is closed; the next session starts segment 3
    assert seg.segment(2).complete
    ll = media_playlist(seg, "ll", b"").decode()
    assert ll.count("#EXT-X-DISCONTINUITY\n") == 1
    # The hub keeps one timeline: decode times run on across the reconnect.
    video = [p.dts for s in seg.segments for p in s.packets if p.kind == "video"]
    assert video == sorted(video) and len(set(video)) == len(video)


@pytest.mark.unit
def test_only_the_window_is_kept(clip_packets):
    stream, seg = segmenter(count=1)
    for _ in range(3):
        feed(stream, *clip_packets)
        time.sleep(0.01)
    assert len(seg.segments) <= 1 + 2 + 1  # playlist window, extra, open
    assert seg.segments[-1].msn >= 8
    assert set(seg.inits) == {seg.init_id}


def ts_packets(data: bytes) -> list[tuple[int, int, bool]]:
    """(pid, continuity counter, has payload) of every TS packet."""
    assert len(data) % 188 == 0
    out = []
    for i in range(0, len(data), 188):
        packet = data[i : i + 188]
        assert packet[0] == 0x47
        out.append(((packet[1] & 0x1F) << 8 | packet[2], packet[3] & 0x0F, bool(packet[3] & 0x10)))
    return out


def test_ts_segments_decode_and_counters_run_on(clip_packets, tmp_path):
    stream, seg = segmenter()
    feed(stream, *clip_packets)
    writer = mpegts.TsWriter()
    data = b"".join(writer.segment(s.params, s.packets) for s in seg.complete_segments)
    last: dict[int, int] = {}
    for pid, counter, payload in ts_packets(data):
        if pid in last and payload:
            assert counter == (last[pid] + 1) % 16, pid
        last[pid] = counter
    path = tmp_path / "two.ts"
    path.write_bytes(data)
    probe = subprocess.run(["ffprobe", "-v", "warning", "-count_frames", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=30)
    assert probe.stderr == ""
    counts = {s["codec_name"]: int(s["nb_read_frames"]) for s in json.loads(probe.stdout)["streams"]}
    sent = {k: sum(p.kind == k for s in seg.complete_segments for p in s.packets) for k in ("video", "audio")}
    assert counts == {"h264": sent["video"], "aac": sent["audio"]}
    assert mpegts.crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value


# -- a real gateway and camera ------------------------------------------------------------


class HlsCam:
    """The gateway pulling one camera (G.711 audio, like a Hikvision), 1 s segments."""

    def __init__(self, root: Path, **camera: object):
        self.camera = RtspCamera(**camera)
        self.gw = Gateway(root, None, hls__nHLSDuration=1, source__nOnDemandLingerSec=1).start()
        self.session = self.gw.login()
        status, answer = self.gw.api("AddSrcRTSP", session=self.session, name="cam", token="cam", url=self.camera.url)
        assert status == 200, answer

    def url(self, path: str, **query: object) -> str:
        return f"{self.gw.url}{path}?{urllib.parse.urlencode({'session': self.session, **query})}"

    def get(self, path: str, timeout: float = 30, **query: object) -> tuple[int, str, bytes]:
        return self.gw.get(self.url(path, **query)[len(self.gw.url):], timeout)

    def text(self, path: str, **query: object) -> str:
        status, _, body = self.get(path, **query)
        assert status == 200, (status, body[:300], self.gw.log()[-2000:])
        return body.decode()

    def src(self) -> dict:
        return self.gw.api("GetSrc", session=self.session, token="cam")[1]["src"][0]

    def stop(self) -> None:
        self.gw.stop()
        self.camera.stop()


@pytest.fixture(scope="module")
def cam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HlsCam]:
    running = HlsCam(tmp_path_factory.mktemp("hls"), profile="main", audio="pcma")
    yield running
    running.stop()


PLAYLISTS = {"v1": "/hls/v1/cam/hls.m3u8", "v2": "/hls/v2/cam/hls.m3u8", "ll": "/cam/index.m3u8"}


@pytest.mark.parametrize("variant", ["v1", "v2", "ll"])
def test_ffmpeg_reads_5_s_of_h264_and_aac(cam, variant, tmp_path):
    out = tmp_path / "five.mkv"
    run = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", cam.url(PLAYLISTS[variant]), "-t", "5", "-c", "copy",
                          str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,profile,width,nb_read_frames", "-of", "json", str(out)],
                           capture_output=True, text=True, timeout=30)
    streams = {s["codec_name"]: s for s in json.loads(probe.stdout)["streams"]}
    assert set(streams) == {"h264", "aac"}
    assert streams["h264"]["profile"] == "Main" and streams["h264"]["width"] == 640
    assert int(streams["h264"]["nb_read_frames"]) >= 110  # ~5 s at 25 fps
    assert int(streams["aac"]["nb_read_frames"]) >= 60  # 16 kHz AAC from the camera's G.711


def test_v1_is_mpeg_ts_and_v2_is_fmp4_from_one_segmenter(cam):
    v1, v2 = cam.text(PLAYLISTS["v1"]), cam.text(PLAYLISTS["v2"])
    msn = re.findall(r"seg(\d+)\.ts", v1)[-1]
    status, kind, ts = cam.get(f"/hls/v1/cam/seg{msn}.ts")
    assert status == 200 and kind == "video/mp2t" and ts[0] == 0x47 and len(ts) % 188 == 0
    status, kind, mp4 = cam.get(f"/hls/v2/cam/seg{msn}.m4s")
    assert status == 200 and kind == "video/mp4" and mp4[4:8] == b"moof"
    assert f"seg{msn}.m4s" in v2  # the same cut for both
    # Two kinds of clients, one segmenter: the stream counts one viewer.
    assert cam.src()["nViewers"] == 1 and cam.src()["nHlsSegments"] >= 3


def test_ll_master_and_media_playlist(cam):
    master = cam.text(PLAYLISTS["ll"])
    codecs = re.search(r'CODECS="([^"]+)"', master)[1]
    assert codecs.split(",") == [c.strip() for c in cam.src()["strCodec"].split('"')[1].split(",")]
    assert codecs.startswith("avc1.4D") and codecs.endswith("mp4a.40.2") and "RESOLUTION=640x360" in master
    assert re.search(rf"^stream\.m3u8\?session={cam.session}$", master, re.M)
    media = cam.text("/cam/stream.m3u8")
    target = float(re.search(r"PART-TARGET=([\d.]+)", media)[1])
    assert float(re.search(r"PART-HOLD-BACK=([\d.]+)", media)[1]) >= 2 * target
    assert all(float(d) <= target for d in re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", media))
    assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in media and "#EXT-X-PROGRAM-DATE-TIME:" in media
    # A segment is exactly its parts, so LL and regular players see the same media.
    msn = re.findall(r"^seg(\d+)\.m4s", media, re.M)[-1]
    parts = re.findall(rf'URI="(part{msn}\.\d+\.m4s)', media)
    assert parts
    joined = b"".join(cam.get(f"/cam/{p}")[2] for p in parts)
    assert joined == cam.get(f"/cam/seg{msn}.m4s")[2]


def next_part(media: str) -> tuple[int, int]:
    """The part after the preload hint (the hint itself may be almost done)."""
    msn, index = map(int, re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s', media).groups())
    parts_per_segment = 5  # 1 s segments of 200 ms parts at 25 fps
    return (msn, index + 1) if index + 1 < parts_per_segment else (msn + 1, 0)


def test_blocking_reload_returns_when_the_part_exists(cam):
    media = cam.text("/cam/stream.m3u8")
    msn, index = next_part(media)
    uri = f"part{msn}.{index}.m4s"
    assert uri not in media
    seen: list[float] = []  # when a plain poller first sees the part

    def poll() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not seen:
            if uri in cam.text("/cam/stream.m3u8"):
                seen.append(time.monotonic())
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    asked = time.monotonic()
    status, _, body = cam.get("/cam/stream.m3u8", _HLS_msn=msn, _HLS_part=index)
    answered = time.monotonic()
    poller.join()
    assert status == 200 and uri in body.decode()
    assert answered - asked >= 0.1  # it waited for the part (1 to 2 parts away)...
    assert answered - asked < 2.0
    assert seen and abs(answered - seen[0]) < 0.4  # ...and answered as it appeared


def test_preload_hint_part_is_served_when_ready(cam):
    for _ in range(2):
        media = cam.text("/cam/stream.m3u8")
        hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="(part\d+\.\d+\.m4s)', media)[1]
        asked = time.monotonic()
        status, kind, body = cam.get(f"/cam/{hint}")
        if status != 404:
            break
        # The segment was cut at a keyframe before the request came: the hinted part
        # will never exist (the next one is part 0 of the next segment). Once, at most.
    assert status == 200 and kind == "video/mp4" and body[4:8] == b"moof"
    assert time.monotonic() - asked < 1.5
    assert cam.get(f"/cam/{hint}")[2] == body  # the part as it stays


@pytest.mark.parametrize("query,code,words", [
    ({"_HLS_msn": "next+2"}, 400, "too far ahead"),
    ({"_HLS_msn": "open", "_HLS_part": "99"}, 400, "too far ahead"),
    ({"_HLS_part": "1"}, 400, "needs _HLS_msn"),
    ({"_HLS_msn": "-1"}, 400, "whole number"),
    ({"_HLS_msn": "x"}, 400, "whole number"),
    ({"_HLS_msn": "\u00b2"}, 400, "whole number"),  # str.isdigit takes it, int() does not
    ({"_HLS_msn": "open", "_HLS_part": "\u00b2"}, 400, "whole number"),
    ({"_HLS_msn": "\u0661"}, 400, "whole number"),
])
def test_blocking_reload_bad_requests_are_refused_at_once(cam, query, code, words):
    media = cam.text("/cam/stream.m3u8")
    hint_msn = int(re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)', media)[1])
    values = {"next+2": hint_msn + 2, "open": hint_msn}
    asked = time.monotonic()
    status, kind, body = cam.get("/cam/stream.m3u8", **{k: values.get(v, v) for k, v in query.items()})
    assert time.monotonic() - asked < 1.0
    assert status == code and kind.startswith("application/json")
    answer = json.loads(body)
    assert answer["bStatus"] is False and words in answer["strCode"]
    assert "Traceback" not in cam.gw.log()


@pytest.mark.parametrize("path,session,code,words", [
    ("/hls/v1/cam/hls.m3u8", None, 401, "missing session"),
    ("/hls/v2/cam/hls.m3u8", "forged", 401, "invalid session"),
    ("/cam/index.m3u8", "forged", 401, "invalid session"),
    ("/cam/seg0.m4s", "", 401, "missing session"),
    ("/hls/v1/nope/hls.m3u8", "ok", 404, "unknown token"),
    ("/nope/index.m3u8", "ok", 404, "unknown token"),
    ("/hls/v1/cam/seg999999.ts", "ok", 404, "not available"),
    ("/hls/v2/cam/init999.mp4", "ok", 404, "not available"),
    ("/hls/v2/cam/other.bin", "ok", 404, "no such HLS file"),
])
def test_bad_session_token_or_file_is_a_json_error(cam, path, session, code, words):
    query = "" if session is None else "?session=" + (cam.session if session == "ok" else session)
    status, kind, body = cam.gw.get(path + query)
    assert status == code and kind.startswith("application/json")
    answer = json.loads(body)
    assert answer["bStatus"] is False and words in answer["strCode"]
    assert "Traceback" not in cam.gw.log()


def test_signed_url_plays_without_a_session(cam, tmp_path):
    status, answer = cam.gw.api("GetHlsUrl", session=cam.session, token="cam", expire=30)
    assert status == 200 and answer["nExpire"] == 30
    assert answer["strUrl"].startswith("cam/index.m3u8?hlstoken=")
    master = cam.gw.get("/" + answer["strUrl"])[2].decode()
    token = answer["strUrl"].split("hlstoken=")[1]
    assert f"stream.m3u8?hlstoken={token}" in master  # URIs carry the same credential
    out = tmp_path / "signed.mkv"
    run = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", f"{cam.gw.url}/{answer['strV1Url']}", "-t", "2",
                          "-c", "copy", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # Bound to its stream, and refused when forged.
    forged = token[:-1] + ("1" if token.endswith("0") else "0")
    assert cam.gw.get(f"/cam/index.m3u8?hlstoken={forged}")[0] == 401
    assert cam.gw.api("GetHlsUrl", session=cam.session, token="cam", expire=5)[0] == 400
    assert cam.gw.api("GetHlsUrl", token="cam")[0] == 401


def test_h5swscmnapi_keepalive_socket(cam):
    cookies: dict[str, list[str]] = {}  # the cookies each socket's handshake set

    async def talk(session: str, token: str) -> tuple[int | None, str]:
        url = f"{cam.gw.ws_url}/api/v1/h5swscmnapi?token={token}&session={session}"
        jar = aiohttp.CookieJar(unsafe=True)  # takes cookies from an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as http, http.ws_connect(url) as ws:
            cookies[session] = [f"{c.key} {c['httponly']} {c['samesite']} {c['path']}" for c in jar]
            for _ in range(2):
                await ws.send_str('{"type":"keepalive"}')
                try:
                    msg = await ws.receive(timeout=1)
                except asyncio.TimeoutError:
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return ws.close_code, msg.extra or ""
            return None, "open"

    assert run_async(lambda: talk(cam.session, "cam"), 20) == (None, "open")
    assert cookies[cam.session] == ["h5ss_hls True Strict /"]  # names the browser for its HLS requests
    code, reason = run_async(lambda: talk("forged", "cam"), 20)
    assert code == 4001 and "unauthorized" in reason and cookies["forged"] == []
    code, reason = run_async(lambda: talk(cam.session, "nope"), 20)
    assert code == 4004 and "unknown token" in reason


@pytest.mark.parametrize("variant", ["v1", "v2", "ll"])
def test_chromium_plays_each_natively(cam, page, variant):
    page.goto(f"{cam.gw.url}/login.html")
    if not page.evaluate("() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"):
        pytest.skip("this Chromium has no HLS of its own (H5sPlayerHls plays over MSE there)")
    page.evaluate("""u => { document.body.innerHTML = '<video muted autoplay playsinline></video>';
                            const v = document.querySelector('video'); v.src = u; v.play(); }""",
                  cam.url(PLAYLISTS[variant]))
    state = wait_playing(page)
    assert (state["width"], state["height"]) == (640, 360)
    assert_smpte(bar_colours(page))


# -- the stock h5s HLS player: no session in its URLs, a keepalive socket beside ----------

# Exactly what h5s H5sPlayerHls does (PROTOCOLS.md §2): connect() opens the socket
# (api/v1/h5swscmnapi?token&session; on open, {"type":"keepalive"} each second), then at
# once sets video.src to {protocol}//{host}{rootpath}hls/{hlsver}/{token}/hls.m3u8, no
# session in it. `socket_after` ms > 0 opens the socket that much later (src first).
STOCK_HLS_PLAYER = """([token, session, hlsver, socket_after]) => {
    document.body.innerHTML = '<video id="v" muted autoplay playsinline></video>';
    const conf = {protocol: location.protocol, host: location.host, rootpath: '/', token, session, hlsver};
    const video = document.getElementById('v');
    video.type = 'application/x-mpegURL';
    const socket = () => {
        const path = conf.rootpath + 'api/v1/h5swscmnapi?token=' + token + '&session=' + conf.session;
        const ws = new WebSocket((conf.protocol == 'https:' ? 'wss://' : 'ws://') + conf.host + path);
        ws.onopen = () => { window.keepalive = setInterval(() => ws.send(JSON.stringify({type: 'keepalive'})), 1000); };
        ws.onclose = e => { clearInterval(window.keepalive); window.closed = e.code; };
        window.h5sSocket = ws;
    };
    if (socket_after > 0) setTimeout(socket, socket_after); else socket();
    video.src = conf.protocol + '//' + conf.host + conf.rootpath + 'hls/' + hlsver + '/' + token + '/hls.m3u8';
    video.play();
}"""


def native_hls_page(cam: HlsCam, page) -> None:
    """A page on the gateway's origin, as the stock player's is; skip without native HLS."""
    page.goto(f"{cam.gw.url}/login.html")
    if not page.evaluate("() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"):
        pytest.skip("this Chromium has no HLS of its own (H5sPlayerHls plays over MSE there)")


def hls_answers(page) -> list[tuple[int, str]]:
    """(status, path) of the page's HLS requests from now on, as they are answered."""
    answers: list[tuple[int, str]] = []
    page.on("response", lambda r: answers.append((r.status, r.url.split("/", 3)[3])) if "/hls/" in r.url else None)
    return answers


def stock_player_playing(cam: HlsCam, page, answers: list[tuple[int, str]]) -> dict:
    """wait_playing, or what went wrong: the HLS answers, the video's error, the socket."""
    try:
        return wait_playing(page)
    except Exception as e:
        seen = page.evaluate("""() => ({error: document.querySelector('video').error?.message,
                                        socket: window.h5sSocket?.readyState, closed: window.closed})""")
        raise AssertionError(f"{seen} {answers[:6]}\n{cam.gw.log()[-1500:]}") from e


def page_status(page, path: str) -> int:
    """The status of a same-origin fetch from the page (with its cookies, as its <video> sends them)."""
    return page.evaluate("p => fetch(p).then(r => r.status)", path)


def open_socket(page, token: str, session: str) -> int | None:
    """Open the stock player's keepalive socket alone; None while open, else its close code."""
    return page.evaluate("""([token, session]) => new Promise(resolve => {
        const ws = new WebSocket('ws://' + location.host + '/api/v1/h5swscmnapi?token=' + token + '&session=' + session);
        ws.onopen = () => { window.keepalive = setInterval(() => ws.send(JSON.stringify({type: 'keepalive'})), 1000);
                            setTimeout(() => resolve(null), 1500); };
        ws.onclose = e => { clearInterval(window.keepalive); resolve(e.code); };
        window.h5sSocket = ws;
    })""", [token, session])


def other_token(cam: HlsCam) -> str:
    """A second source of the gateway (the same camera), added once."""
    if cam.gw.api("GetSrc", session=cam.session, token="cam2")[0] != 200:
        status, answer = cam.gw.api("AddSrcRTSP", session=cam.session, name="cam2", token="cam2", url=cam.camera.url)
        assert status == 200, answer
    return "cam2"


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_stock_hls_player_plays_without_a_session_in_its_urls(cam, page, variant):
    native_hls_page(cam, page)
    playlist = f"/hls/{variant}/cam/hls.m3u8"
    assert page_status(page, playlist) == 401  # no socket, no session: refused
    answers = hls_answers(page)
    page.evaluate(STOCK_HLS_PLAYER, ["cam", cam.gw.login(), variant, 0])
    state = stock_player_playing(cam, page, answers)
    assert state["frames"] > 0 and (state["width"], state["height"]) == (640, 360)
    assert_smpte(bar_colours(page))
    assert answers and {status for status, _ in answers} <= {200, 307}, answers
    assert not any("session=" in url for _, url in answers)
    # The socket's browser only: another client (here at the same address, without the
    # browser's cookie) is still refused.
    assert page_status(page, playlist) == 200
    assert cam.gw.get(playlist)[0] == 401


def test_stock_hls_player_whose_playlist_comes_before_its_socket(cam, page):
    native_hls_page(cam, page)
    # The playlist request, without the cookie yet, waits for the socket, then is sent
    # back to itself (307, marked) and comes again with the cookie the socket set (after
    # a first 307 in vain if another test's socket for the token opened just before).
    answers = hls_answers(page)
    page.evaluate(STOCK_HLS_PLAYER, ["cam", cam.gw.login(), "v1", 700])
    stock_player_playing(cam, page, answers)
    playlists = [answer for answer in answers if ".m3u8" in answer[1]]
    assert playlists[0] == (307, "hls/v1/cam/hls.m3u8") and (200, "hls/v1/cam/hls.m3u8?h5ss_again=1") in playlists
    assert 401 not in {status for status, _ in answers}, answers


def test_stock_hls_socket_grants_its_token_only_until_the_grace_after_it_closes(cam, page):
    native_hls_page(cam, page)
    session = cam.gw.login()  # its own: pages holding one session at one address are one client
    assert open_socket(page, other_token(cam), session) is None
    assert page_status(page, "/hls/v1/cam2/hls.m3u8") != 401  # its token (503 or 200: the camera starts)
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 401  # another token: nothing
    assert open_socket(page, "cam", session) is None
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 200
    assert page_status(page, "/cam/index.m3u8") == 200  # LL-HLS too
    page.evaluate("() => window.h5sSocket.close()")
    closed = time.monotonic()
    assert page_status(page, "/hls/v2/cam/hls.m3u8") == 200  # within the grace
    time.sleep(max(0.0, closed + GRACE + 0.5 - time.monotonic()))
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 401
    assert page_status(page, "/hls/v1/cam/seg0.ts") == 401


def test_stock_hls_socket_with_a_bad_session_is_refused_and_grants_nothing(cam, page):
    native_hls_page(cam, page)
    assert open_socket(page, "cam", "forged") == 4001
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 401
    # A socket whose session ends (Logout) closes and its grant goes at once.
    session = cam.gw.login()
    assert open_socket(page, "cam", session) is None
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 200
    assert cam.gw.api("Logout", session=session)[0] == 200
    page.wait_for_function("() => window.h5sSocket.readyState === WebSocket.CLOSED")
    assert page_status(page, "/hls/v1/cam/hls.m3u8") == 401


def open_hls_player(cam: HlsCam, page, hlsver: str, nativehls: str) -> None:
    page.goto(f"{cam.gw.url}/login.html")
    page.evaluate("""([session, hlsver, nativehls]) => new Promise(resolve => {
        document.body.innerHTML = '<video id="v" muted autoplay playsinline></video>';
        const s = document.createElement('script');
        s.src = '/js/h5splayer.js';
        s.onload = () => {
          window.h5ssPlayer = new H5sPlayerHls({videoid: 'v', token: 'cam', session, hlsver, nativehls});
          window.h5ssPlayer.connect();
          resolve();
        };
        document.head.appendChild(s);
    })""", [cam.session, hlsver, nativehls])


def test_player_ll_over_mse_keeps_near_live(cam, page):
    open_hls_player(cam, page, "ll", "false")
    wait_playing(page, 3)
    stats = page.evaluate("() => window.h5ssPlayer.stats()")
    assert stats["mode"] == "mse" and stats["mime"].startswith('video/mp4; codecs="avc1.4D')
    assert "mp4a.40.2" in stats["mime"] and stats["reconnects"] == 0
    assert stats["latency"] is not None and stats["latency"] < 1.5, stats
    assert_smpte(bar_colours(page))


def test_player_page_offers_hls(cam, page):
    page.goto(f"{cam.gw.url}/login.html")
    page.evaluate("s => { localStorage.setItem('h5ss.session', s); localStorage.setItem('h5ss.protocol', 'hls'); }",
                  cam.session)
    page.goto(f"{cam.gw.url}/player.html?token=cam")
    wait_playing(page)
    assert page.evaluate("() => window.h5ssPlayer.stats().hlsver") == "v1"
    assert_smpte(bar_colours(page))


# -- the first client of a live stream (own gateway: a stamped camera, 2 s segments) ------


class LiveCam(HlsCam):
    """A stamped camera (GOP 1 s) that is live before any HLS client (H5_ALWAYS), with the
    default 2 s segments: its first HLS client starts from the hub's cached GOP."""

    def __init__(self, root: Path):
        self.camera = RtspCamera(stamp=True, width=640, height=360, fps=25, gop=25, audio="none")
        self.gw = Gateway(root, None, hls__nHLSDuration=2).start()
        self.session = self.gw.login()
        status, answer = self.gw.api("AddSrcRTSP", session=self.session, name="cam", token="cam",
                                     url=self.camera.url, connecttype="H5_ALWAYS")
        assert status == 200, answer
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.src()["bOnline"]:
            time.sleep(0.2)
        time.sleep(1.5)  # a GOP cached

    def first_client(self) -> None:
        """Until no HLS client is left (the segmenter stops after 3 target durations)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.src()["nHlsSegments"]:
            time.sleep(0.2)
        assert self.src()["nHlsSegments"] == 0


@pytest.fixture(scope="module")
def live_cam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCam]:
    running = LiveCam(tmp_path_factory.mktemp("hls-live"))
    yield running
    running.stop()


def program_date_time(playlist: str) -> float:
    text = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", playlist)[1]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_first_playlists_of_a_live_stream_begin_at_its_cached_keyframe(live_cam, tmp_path):
    live_cam.first_client()
    asked = time.time()
    answers: dict[str, tuple[float, str]] = {}

    def ask(name: str, path: str) -> None:
        answers[name] = (time.time(), live_cam.text(path))

    askers = [threading.Thread(target=ask, args=item) for item in
              (("v1", PLAYLISTS["v1"]), ("v2", PLAYLISTS["v2"]), ("ll", "/cam/stream.m3u8"))]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    # Not after three new segments of the 2 s target (6 s): LL-HLS once the cached GOP's
    # segment is complete and PART-HOLD-BACK (3 parts) of the next is there; v1 and v2 with
    # three segments (Chromium's own HLS needs them), a GOP each, the first the cached one.
    assert answers["ll"][0] - asked < 2.5 and max(answers["v1"][0], answers["v2"][0]) - asked < 3.5, answers
    v1, v2, ll = answers["v1"][1], answers["v2"][1], answers["ll"][1]
    assert re.findall(r"^seg\d+\.ts", v1, re.M) == ["seg0.ts", "seg1.ts", "seg2.ts"]
    assert re.findall(r"^seg\d+\.m4s", v2, re.M) == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    assert "#EXT-X-MEDIA-SEQUENCE:0" in v1 and "#EXT-X-TARGETDURATION:2" in v2
    assert re.findall(r"^seg\d+\.m4s", ll, re.M) == ["seg0.m4s"] and 'URI="part1.3.m4s' in ll
    assert [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", v2)] == pytest.approx([1.0] * 3, abs=0.1)
    # The first segment is the cached GOP: it began before the request, and its date is
    # when its first frame was drawn.
    began = program_date_time(v2)
    assert began < asked and program_date_time(v1) == pytest.approx(began, abs=0.002)
    assert program_date_time(ll) == pytest.approx(began, abs=0.002)
    status, _, ts = live_cam.get("/hls/v1/cam/seg0.ts")
    assert status == 200
    (tmp_path / "seg0.ts").write_bytes(ts)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,width,nb_read_frames", "-of", "json", str(tmp_path / "seg0.ts")],
                           capture_output=True, text=True, timeout=30)
    assert probe.stderr == ""
    (video,) = json.loads(probe.stdout)["streams"]
    assert video["codec_name"] == "h264" and video["width"] == 640 and 20 <= int(video["nb_read_frames"]) <= 30
    with av.open(str(tmp_path / "seg0.ts")) as media:
        first = next(media.decode(video=0))
        assert first.key_frame
        drawn = read_stamp(Rgb(first))
    assert drawn is not None and 0 < stamp_age_ms(drawn, asked) < 3000  # drawn before the request
    assert abs((round(began * 1000) - drawn + 2**31) % 2**32 - 2**31) < 300  # ms from its date


def test_chromium_plays_v1_and_v2_natively_as_a_first_client(live_cam, page):
    """The stock h5s player's <video src>: Chromium's own HLS, on a first playlist."""
    page.goto(f"{live_cam.gw.url}/login.html")
    if not page.evaluate("() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"):
        pytest.skip("this Chromium has no HLS of its own")
    for variant in ("v1", "v2"):
        live_cam.first_client()
        page.evaluate("""u => { document.body.innerHTML = '<video muted autoplay playsinline></video>';
                                const v = document.querySelector('video'); v.src = u; v.play(); }""",
                      live_cam.url(PLAYLISTS[variant]))
        state = wait_playing(page, 2)
        assert (state["width"], state["height"]) == (640, 360), variant
        page.goto(f"{live_cam.gw.url}/login.html")  # the player gone: the next one is a first client


def test_hls_js_plays_a_first_playlist(live_cam, page):
    """hls.js (tests/js), as a live stream's first HLS client, plays each variant."""
    script = hls_js()
    for variant, path in (("ll", PLAYLISTS["ll"]), ("v1", PLAYLISTS["v1"]), ("v2", PLAYLISTS["v2"])):
        live_cam.first_client()
        page.goto(f"{live_cam.gw.url}/login.html")
        page.add_script_tag(path=str(script))
        page.evaluate("""([url, ll]) => {
            document.body.innerHTML = '<video muted autoplay playsinline></video>';
            const video = document.querySelector('video');
            window.hlsErrors = [];
            const hls = window.hls = new Hls({lowLatencyMode: ll});
            hls.on(Hls.Events.ERROR, (event, data) => { if (data.fatal) window.hlsErrors.push(data.details); });
            hls.loadSource(url);
            hls.attachMedia(video);
            video.play().catch(() => {});
        }""", [live_cam.url(path), variant == "ll"])
        state = wait_playing(page, 2)
        assert (state["width"], state["height"]) == (640, 360), variant
        assert page.evaluate("window.hlsErrors") == [], variant
        page.evaluate("window.hls.destroy()")  # no client left: the next variant's is a first one


# -- lifetime and reconnects (own gateways: they stop and restart things) -----------------


def test_segments_exist_only_while_clients_poll(tmp_path):
    running = HlsCam(tmp_path, audio="none")
    try:
        assert running.src()["strState"] == "idle"
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            running.text("/hls/v2/cam/hls.m3u8")
            time.sleep(0.5)
        polled = running.src()
        assert polled["nHlsSegments"] >= 3 and polled["strState"] == "online" and polled["nViewers"] == 1
        # No request for 3 target durations: the segmenter forgets its segments and
        # releases the on-demand camera, which disconnects after its 1 s linger.
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10 and running.src()["strState"] != "idle":
            time.sleep(0.25)
        idle = running.src()
        assert idle["strState"] == "idle" and idle["nHlsSegments"] == 0 and idle["nViewers"] == 0
        assert 2 <= time.monotonic() - stopped < 8
    finally:
        running.stop()


def test_camera_restart_is_a_discontinuity_players_ride_through(tmp_path, page):
    running = HlsCam(tmp_path, audio="pcma")
    try:
        open_hls_player(running, page, "ll", "false")
        wait_playing(page, 1)
        before = running.text("/cam/stream.m3u8")
        running.camera.stop()
        time.sleep(2)
        running.camera.start()
        deadline, media = time.monotonic() + 15, ""
        while time.monotonic() < deadline and "#EXT-X-DISCONTINUITY\n" not in media:
            media = running.text("/cam/stream.m3u8")
            time.sleep(0.3)
        assert "#EXT-X-DISCONTINUITY\n" in media, running.gw.log()[-2000:]
        first = lambda text: int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # noqa: E731
        numbers = [int(n) for n in re.findall(r"^seg(\d+)\.m4s", media, re.M)]
        assert first(media) >= first(before) and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        # The player goes on without reloading.
        resumed = page.evaluate("() => document.querySelector('video').currentTime")
        page.wait_for_function("t => document.querySelector('video').currentTime > t + 1", arg=resumed,
                               timeout=10_000)
        assert page.evaluate("() => window.h5ssPlayer.stats().reconnects") == 0
    finally:
        running.stop()

