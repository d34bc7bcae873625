"""Make the sample clip of the default config (token1) on first start.

A generated clip keeps a large binary out of the repository: FFmpeg's testsrc2 (moving
pattern with a running clock) and a sine tone, encoded with PyAV as H.264 + AAC.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import av
from av.video.frame import PictureType

log = logging.getLogger(__name__)

SAMPLE_NAME = "h5ss-sample.mp4"


def _pull_all(graph_source: str, args: str) -> Iterator[av.frame.Frame]:
    graph = av.filter.Graph()
    src = graph.add(graph_source, args)
    sink = graph.add("abuffersink" if graph_source == "sine" else "buffersink")
    src.link_to(sink)
    graph.configure()
    while True:
        try:
            yield sink.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            return


def make_sample(
    path: Path, seconds: int = 10, width: int = 1280, height: int = 720, fps: int = 25, bitrate: int = 2_000_000
) -> None:
    """Write the clip to a temp name and rename, so a half-made file is never played."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with av.open(str(tmp), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "bf": "0", "g": str(fps)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = bitrate
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
        for frame in _pull_all("testsrc2", f"size={width}x{height}:rate={fps}:duration={seconds}"):
            assert isinstance(frame, av.VideoFrame)
            frame.pict_type = PictureType.NONE  # testsrc2 marks every frame I, which x264 obeys: keep the GOP
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for frame in _pull_all("sine", f"frequency=440:sample_rate=48000:duration={seconds}:samples_per_frame=1024"):
            assert isinstance(frame, av.AudioFrame)
            for converted in resampler.resample(frame):
                out.mux(audio.encode(converted))
        out.mux(audio.encode(None))
    os.replace(tmp, path)


def ensure_sample(media_dir: Path) -> None:
    path = media_dir / SAMPLE_NAME
    if not path.exists():
        log.info("making the sample clip %s (first start only)", path)
        make_sample(path)
