"""H.265 carried as it is through every output but WebRTC, proven with real parts.

One gateway pulls three H.265 inputs for the whole module:
- `cam`, a GStreamer RTSP camera (x265enc, rtph265pay) with G.711 A-law audio, as a
  Hikvision camera sends it; the hub transcodes its audio to AAC;
- `file`, an H5_FILE source: an MP4 of libx265 + AAC made here with PyAV;
- `flv`, an H5_FILE source: the same as enhanced FLV (FourCC hvc1), what an enhanced-RTMP
  publisher sends, read by the same FFmpeg FLV demuxer that reads an rtmp:// URL.

Why files and not RTMP: the issue asks for an H.265 RTMP publisher into nginx-rtmp, or
a file source if nginx-rtmp cannot relay it. It cannot. Debian's ffmpeg (5.1) refuses
H.265 in FLV ("Video codec hevc not compatible with flv"); PyAV's FFmpeg 8 does publish
enhanced RTMP (FourCC hvc1), but Debian's nginx-rtmp (libnginx-mod-rtmp 1.2.2) relays none
of its video: a player, whether it joins before or after the publisher, gets an FLV with only
the AAC track (PyAV's FFmpeg 8 and Debian's ffprobe alike), and nginx's own `record all`
file of the publish has no video either, while the same publisher's H.264 (legacy FLV) is
relayed, and its H.265 written to a file reads back as hevc + aac. nginx-rtmp takes a video
tag's frame type from the top nibble of its first byte; in enhanced RTMP that byte carries
the IsExHeader bit (0x90 for the sequence start, 0x93 key frames, 0xA3 the others), so no
tag ever counts as a key frame and a player is never started on video.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.store.fmp4_scan import media_duration
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway
from tests.fixtures.ws_client import WsViewer
from tests.test_browser import SMPTE_BARS, open_player
from tests.test_playback import _play_all, h5_time, run_async
from tests.test_record import search, wait_for

WIDTH, HEIGHT = 640, 360
FILE_SIZE = (320, 240)
FILE_COLOURS = [(255, 0, 0), (0, 0, 255)]  # the file's left and right halves
RECORD_SECONDS = 5
# LL-HLS: the master's H.265 variant (ffmpeg given the master opens every variant, the
# H.264 rendition too; the master itself is checked by its own test).
PLAYLISTS = {"v1": "/hls/v1/{t}/hls.m3u8", "v2": "/hls/v2/{t}/hls.m3u8", "ll": "/{t}/stream.m3u8"}


def make_h265_file(path: Path, seconds: int = 4) -> None:
    """An MP4 (hvc1) or enhanced FLV of libx265 (a keyframe each second) + AAC: left half
    red, right half blue."""
    width, height = FILE_SIZE
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx265", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if path.suffix == ".mp4":
            video.codec_tag = "hvc1"
        video.options = {"preset": "ultrafast", "x265-params": "keyint=25:min-keyint=25:bframes=0:log-level=error"}
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        picture = np.zeros((height, width, 3), np.uint8)
        picture[:, : width // 2], picture[:, width // 2 :] = FILE_COLOURS
        for i in range(25 * seconds):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        for i in range(16 * seconds - 1):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 16000, i * 1024
            out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


class H265Gateway:
    def __init__(self, root: Path):
        self.camera = RtspCamera(codec="h265", audio="pcma", width=WIDTH, height=HEIGHT)
        media = root / "media"
        media.mkdir(parents=True)
        make_h265_file(media / "h265.mp4")
        make_h265_file(media / "h265.flv")
        sources = [
            {"strName": "H.265 camera", "strToken": "cam", "nType": "H5_STREAM", "strUrl": self.camera.url},
            {"strName": "H.265 file", "strToken": "file", "nType": "H5_FILE", "strUrl": "h265.mp4"},
            {"strName": "H.265 FLV", "strToken": "flv", "nType": "H5_FILE", "strUrl": "h265.flv"},
        ]
        self.gw = Gateway(root, sources, hls__nHLSDuration=1).start()
        self.session = self.gw.login()

    def get(self, path: str, **query: object) -> bytes:
        url = f"{path}?{urllib.parse.urlencode({'session': self.session, **query})}"
        status, _, body = self.gw.get(url)
        assert status == 200, (url, status, body[:300], self.gw.log()[-2000:])
        return body

    def src(self, token: str) -> dict:
        return self.gw.api("GetSrc", session=self.session, token=token)[1]["src"][0]

    def stop(self) -> None:
        self.gw.stop()
        self.camera.stop()


@pytest.fixture(scope="module")
def h265(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H265Gateway]:
    running = H265Gateway(tmp_path_factory.mktemp("h265"))
    yield running
    running.stop()


def ffprobe(path: Path, *entries: str) -> dict[str, dict]:
    """Each stream's fields (and the format's) by codec name, from ffprobe's JSON."""
    run = subprocess.run(["ffprobe", "-v", "error", "-show_entries", ":".join(entries), "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    answer = json.loads(run.stdout)
    return {**{s["codec_name"]: s for s in answer["streams"]}, "format": answer.get("format", {})}


STREAM_FIELDS = "stream=codec_name,codec_tag_string,profile,width,height,nb_read_frames"


def assert_hevc_and_aac(path: Path, size: tuple[int, int], tag: str | None = "hvc1") -> dict[str, dict]:
    probe = ffprobe(path, STREAM_FIELDS, "format=duration")
    assert {"hevc", "aac"} <= set(probe), probe
    hevc = probe["hevc"]
    assert (hevc["width"], hevc["height"], hevc["profile"]) == (*size, "Main"), hevc
    assert tag is None or hevc["codec_tag_string"] == tag, hevc
    return probe


def count_frames(path: Path) -> int:
    """Video frames that decode (PyAV, so a broken stream shows as an exception or too few)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def middle_colour(frame: av.VideoFrame, x: float) -> tuple[int, int, int]:
    rgb = frame.to_ndarray(format="rgb24")
    return tuple(int(c) for c in rgb[rgb.shape[0] // 2, int(x * rgb.shape[1])])


def assert_close(got: tuple[int, ...], want: tuple[int, ...], tolerance: int = 40) -> None:
    assert all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True)), (got, want)


def ws_bytes(gw: H265Gateway, token: str, hevc: str, seconds_of_frames: int = 50) -> tuple[str, bytes]:
    """The MIME string and the media bytes after it of `seconds_of_frames` WS messages."""
    viewer = WsViewer(gw.gw.ws_url, token, gw.session, f"&hevc={hevc}")
    viewer.start()
    try:
        assert viewer.wait_frames(seconds_of_frames, 20), (viewer.close_reason, viewer.error, gw.gw.log()[-2000:])
    finally:
        viewer.stop()
    assert viewer.mime is not None
    return viewer.mime, viewer.stream_bytes()


# -- WebSocket fMP4 ------------------------------------------------------------------------


def test_ws_hevc_true_sends_hvc1_that_ffprobe_and_pyav_read(h265, tmp_path):
    mime, data = ws_bytes(h265, "cam", "true")
    assert re.fullmatch(r'video/mp4; codecs="hvc1\.1\.6\.L\d+\.[0-9A-F]+(\.[0-9A-F]+)*, mp4a\.40\.2"', mime), mime
    assert data[4:8] == b"ftyp"
    path = tmp_path / "ws.mp4"
    path.write_bytes(data)
    assert_hevc_and_aac(path, (WIDTH, HEIGHT))
    assert count_frames(path) >= 45  # every frame from the first keyframe on decodes
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    for i, bar in enumerate(SMPTE_BARS):
        assert_close(middle_colour(frame, (i + 0.5) / 7), bar)


@pytest.mark.parametrize("token", ["file", "flv"])
def test_h265_file_sources_play_over_ws_as_hvc1(h265, token, tmp_path):
    if token == "flv":  # enhanced FLV: a video tag's first byte has IsExHeader set, then the FourCC
        flv = (h265.gw.root / "media" / "h265.flv").read_bytes()
        assert re.search(rb"\x09.{10}\x90hvc1", flv, re.S)  # tag type 9, header, sequence start
    mime, data = ws_bytes(h265, token, "true", 30)
    assert mime.startswith('video/mp4; codecs="hvc1.1.6.') and mime.endswith(', mp4a.40.2"'), mime
    path = tmp_path / "file.mp4"
    path.write_bytes(data)
    assert_hevc_and_aac(path, FILE_SIZE)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert_close(middle_colour(frame, 0.25), FILE_COLOURS[0])
    assert_close(middle_colour(frame, 0.75), FILE_COLOURS[1])


# -- HLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["v1", "v2", "ll"])
def test_hls_variants_carry_hevc_and_aac(h265, variant, tmp_path):
    out = tmp_path / "three.mkv"
    url = f"{h265.gw.url}{PLAYLISTS[variant].format(t='cam')}?session={h265.session}"
    run = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-t", "3", "-c", "copy", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert_hevc_and_aac(out, (WIDTH, HEIGHT), tag=None)  # Matroska keeps no sample entry tag
    assert count_frames(out) >= 70  # ~3 s at 25 fps, all decodable


def test_hls_v1_ts_declares_hevc_stream_type_and_carries_its_parameter_sets(h265):
    playlist = h265.get("/hls/v1/cam/hls.m3u8").decode()
    msn = re.findall(r"seg(\d+)\.ts", playlist)[-1]
    ts = h265.get(f"/hls/v1/cam/seg{msn}.ts")
    pmt = next(ts[i : i + 188] for i in range(0, len(ts), 188) if (ts[i + 1] & 0x1F) << 8 | ts[i + 2] == 0x1000)
    # PMT section: pointer, 12 header bytes (incl. PCR PID and program info length), then streams.
    assert pmt[4 + 1 + 12] == 0x24  # HEVC video (ISO/IEC 13818-1 table 2-34)
    for kind in (32, 33, 34, 35):  # VPS, SPS, PPS (in band, before the IRAP picture), AUD
        assert bytes([0, 0, 1, kind << 1]) in ts, kind


def test_ll_hls_playlists_name_the_hvc1_codec(h265):
    master = h265.get("/cam/index.m3u8").decode()
    mime = h265.src("cam")["strCodec"]
    hvc1 = re.search(r'codecs="(hvc1[^,"]+)', mime)[1]
    variant = next(line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF") and hvc1 in line)
    assert f'CODECS="{hvc1},mp4a.40.2"' in variant and f"RESOLUTION={WIDTH}x{HEIGHT}" in variant
    uri = master.splitlines()[master.splitlines().index(variant) + 1].split("?")[0]
    media = h265.get(f"/cam/{uri}").decode()
    assert "#EXT-X-PART-INF" in media and "#EXT-X-MAP:" in media
    init = h265.get("/cam/" + re.search(r'#EXT-X-MAP:URI="([^"?]+)', media)[1])
    assert b"hvc1" in init and b"hvcC" in init


# -- recording, download, playback -----------------------------------------------------------


@pytest.fixture(scope="module")
def recording(h265: H265Gateway) -> tuple[dict, float]:
    status, answer = h265.gw.api("Record", session=h265.session, token="cam", duration=RECORD_SECONDS, filename="h265")
    assert status == 200, answer
    found = wait_for(lambda: [r for r in search(h265.gw, h265.session, token="cam")
                              if r["strDuration"] == str(RECORD_SECONDS)], 20)
    assert found, (search(h265.gw, h265.session, token="cam"), h265.gw.log()[-2000:])
    start = datetime.strptime(found[0]["strStartTime"], "%Y-%m-%dT%H%M%S%z").timestamp()
    return found[0], start


def test_a_5_s_recording_is_hvc1_mp4(h265, recording):
    entry, _ = recording
    path = h265.gw.root / "mediastore" / entry["strPath"].removeprefix("/mediastore/")
    probe = assert_hevc_and_aac(path, (WIDTH, HEIGHT))
    assert abs(float(probe["format"]["duration"]) - RECORD_SECONDS) <= 0.5, probe["format"]
    assert count_frames(path) >= 25 * RECORD_SECONDS - 5
    # What the store reads after a crash: the fragments' own length, whatever the codec.
    assert media_duration(path) == pytest.approx(float(probe["format"]["duration"]), abs=0.1)


def test_download_record_is_hvc1_mp4_of_5_s(h265, recording, tmp_path):
    _, start = recording
    body = h265.get("/api/v1/DownloadRecord", token="cam", start=urllib.parse.unquote(h5_time(start - 1)),
                    end=urllib.parse.unquote(h5_time(start + RECORD_SECONDS + 2)))
    path = tmp_path / "download.mp4"
    path.write_bytes(body)
    probe = assert_hevc_and_aac(path, (WIDTH, HEIGHT))
    assert abs(float(probe["format"]["duration"]) - RECORD_SECONDS) <= 0.5, probe["format"]
    assert count_frames(path) >= 25 * RECORD_SECONDS - 5


def test_ws_playback_of_the_recording_is_hvc1(h265, recording, tmp_path):
    _, start = recording
    url = (f"{h265.gw.ws_url}/api/v1/h5swsapi?playback=true&token=cam&session={h265.session}"
           f"&begintime={h5_time(start - 1)}&endtime={h5_time(start + RECORD_SECONDS + 2)}")
    binary, events, code, _ = run_async(_play_all(url, [{"cmd": "H5_SPEED", "nSpeed": 8}]))
    assert binary[0].startswith(b'video/mp4; codecs="hvc1.1.6.') and binary[0].endswith(b', mp4a.40.2"'), binary[0]
    assert [e["type"] for e in events] == ["H5_PLAYBACK_START", "H5_PLAYBACK_END"] and code == 1000, events
    path = tmp_path / "played.mp4"
    path.write_bytes(b"".join(binary[1:]))
    assert_hevc_and_aac(path, (WIDTH, HEIGHT))
    assert count_frames(path) >= 25 * RECORD_SECONDS - 5


# -- snapshot and GetSrc ---------------------------------------------------------------------


def test_get_image_is_a_jpeg_of_the_camera_size_and_picture(h265):
    jpeg = h265.get("/api/v1/GetImage", token="cam")
    assert jpeg[:3] == b"\xff\xd8\xff"
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    for i, bar in enumerate(SMPTE_BARS):
        assert_close(middle_colour(frame, (i + 0.5) / 7), bar)


def test_get_src_names_the_video_codec(h265):
    h265.get("/api/v1/GetImage", token="file")  # the file plays on demand: now it has parameters
    cam, file = h265.src("cam"), h265.src("file")
    assert cam["strVideoCodec"] == "H.265" and file["strVideoCodec"] == "H.265"
    assert cam["strCodec"].startswith('video/mp4; codecs="hvc1.1.6.')
    assert (cam["nWidth"], cam["nHeight"]) == (WIDTH, HEIGHT)


# -- the player page -------------------------------------------------------------------------

# What a browser with an H.265 decoder answers (Chrome with hardware HEVC, Safari).
HEVC_CAPABLE = """(() => {
    const ask = MediaSource.isTypeSupported.bind(MediaSource);
    MediaSource.isTypeSupported = type => type.includes('hvc1') || ask(type);
})();"""


def player_socket_url(h265: H265Gateway, page, init_script: str | None = None) -> str:
    """The h5swsapi URL the player page opens for `cam`."""
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    if init_script:
        page.add_init_script(init_script)
    open_player(h265.gw, page, "cam")
    page.wait_for_function("() => document.getElementById('st-codec').textContent === 'H.265'")
    live = wait_for(lambda: [u for u in urls if "/api/v1/h5swsapi?" in u], 10, 0.05)
    assert live, urls
    return live[0]


def test_the_player_page_asks_for_h264_where_mse_has_no_hevc(h265, page):
    url = player_socket_url(h265, page)
    assert page.evaluate("""() => MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L120.90"')""") is False
    assert "hevc=false" in url and "hevc=true" not in url


def test_the_player_page_asks_for_h265_where_mse_plays_it(h265, page):
    url = player_socket_url(h265, page, HEVC_CAPABLE)
    assert "hevc=true" in url and "hevc=false" not in url
