"""The real-parts fixtures are real: what the camera, the RTMP origin and the browser serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest

from tests.fixtures.camera import CameraError, RtspCamera
from tests.fixtures.net import free_port, wait_port
from tests.fixtures.rtmp_origin import RtmpOrigin
from tests.fixtures.stamp import Rgb, read_stamp, stamp_age_ms

# The default smpte pattern's top bars, left to right (see rtsp_camera.py).
SMPTE_BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
              (255, 0, 255), (255, 0, 0), (0, 0, 255)]


def probe(url: str, *extra: str) -> dict[str, dict[str, Any]]:
    """ffprobe's view of ``url``: each stream's fields by codec_type."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", *extra, "-show_entries",
         "stream=codec_type,codec_name,profile,width,height,sample_rate,channels",
         "-of", "json", url],
        capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}


def slices_per_frame(url: str, frames: int = 12) -> list[int]:
    """Slice NAL units (types 1 and 5) in each of the first ``frames`` access units."""
    counts = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 10)) as container:
        for packet in container.demux(container.streams.video[0]):
            data = bytes(packet)
            if not data:
                continue
            types = [data[m.end()] & 0x1F for m in re.finditer(b"\x00\x00\x01", data)
                     if m.end() < len(data)]
            counts.append(sum(t in (1, 5) for t in types))
            if len(counts) == frames:
                break
    return counts


def test_camera_serves_h264_and_pcma() -> None:
    with RtspCamera(width=640, height=360) as cam:
        streams = probe(cam.url, "-rtsp_transport", "tcp")
    video, audio = streams["video"], streams["audio"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 640, 360)
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("pcm_alaw", "8000", 1)


@pytest.mark.parametrize("slices", [1, 2])
def test_camera_slices_per_frame(slices: int) -> None:
    with RtspCamera(slices=slices, audio="none") as cam:
        counts = slices_per_frame(cam.url)
    assert counts == [slices] * len(counts) and len(counts) == 12


def test_camera_profile_high() -> None:
    with RtspCamera(profile="high", audio="none") as cam:
        assert probe(cam.url, "-rtsp_transport", "tcp")["video"]["profile"] == "High"


def test_camera_stamp_is_wall_clock_time() -> None:
    """Frames carry their capture time; a decoder a moment later reads it back."""
    with RtspCamera(width=1280, height=720, stamp=True) as cam, \
            av.open(cam.url, options={"rtsp_transport": "tcp"}, timeout=(10, 10)) as container:
        stamps: list[int | None] = []
        for frame in container.decode(video=0):
            decoded_at = time.time()
            rgb = Rgb(frame)
            stamps.append(read_stamp(rgb))
            if len(stamps) == 40:  # well past ffmpeg's start-up buffering
                break
    assert (rgb.width, rgb.height) == (1280, 720)
    assert None not in stamps, stamps
    steps = [b - a for a, b in zip(stamps, stamps[1:])]  # type: ignore[operator]
    assert all(0 < step < 200 for step in steps), steps
    age = stamp_age_ms(stamps[-1], decoded_at)  # type: ignore[arg-type]
    assert age < 2000, age
    for i, colour in enumerate(SMPTE_BARS):
        sample = rgb[int((i + 0.5) * rgb.width / 7), rgb.height // 2]
        assert all(abs(a - b) <= 12 for a, b in zip(sample, colour)), (i, sample)


def test_camera_restarts_on_the_same_port() -> None:
    with RtspCamera(audio="none") as cam:
        cam.stop()
        assert not cam.running
        cam.start()
        assert probe(cam.url, "-rtsp_transport", "tcp")["video"]["codec_name"] == "h264"
        cam.kill()
        cam.start()
        assert probe(cam.url, "-rtsp_transport", "tcp")["video"]["codec_name"] == "h264"


def test_camera_digest_auth() -> None:
    with RtspCamera(user="admin", password="s3cret", audio="none") as cam:
        assert cam.url.startswith("rtsp://admin:s3cret@127.0.0.1:")
        assert probe(cam.url, "-rtsp_transport", "tcp")["video"]["codec_name"] == "h264"
        bare = cam.url.replace("admin:s3cret@", "")
        result = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", bare],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode != 0 and "401" in result.stderr


def test_camera_reports_a_bad_option() -> None:
    with pytest.raises(CameraError, match="pattern"):
        RtspCamera(pattern="no-such-pattern")


def test_rtmp_origin_plays_h264_and_aac(tmp_path: Path) -> None:
    with RtmpOrigin(workdir=tmp_path / "rtmp") as origin:
        origin.publish("cam1", 640, 360, 25)
        streams = probe(origin.url("cam1"))
    assert (streams["video"]["codec_name"], streams["video"]["width"]) == ("h264", 640)
    assert streams["audio"]["codec_name"] == "aac"
    assert (tmp_path / "rtmp" / "nginx.conf").exists()


def test_chromium_loads_a_local_page(tmp_path: Path, page) -> None:
    """The session's Chromium (conftest: launch_chromium) serves pages and has H.264 MSE."""
    (tmp_path / "index.html").write_text("<title>h5ss</title><p id=x>served</p>")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port)
        page.goto(f"http://127.0.0.1:{port}/index.html", timeout=10_000)
        assert page.inner_text("#x", timeout=5_000) == "served"
        # Debian's Chromium has the H.264 decoder MSE playback needs.
        assert page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.640028\"')")
    finally:
        server.terminate()
        server.wait(timeout=5)
