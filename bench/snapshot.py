"""Snapshot and GetImage latency from a live stream.

Usage: python3 bench/snapshot.py [--count 15] [--width 1280 --height 720]

A real RTSP camera (GStreamer, x264, 25 fps, an IDR every second) is pulled by the gateway
(AddSrcRTSP, H5_ALWAYS). Each request goes out just after a new keyframe can have arrived
(1.05 s apart), so every answer pays the real cost: one H.264 keyframe decode and one JPEG
encode of the cached keyframe (plus, for Snapshot, the file written and indexed). A second
run right after shows the cached case (same keyframe). Times are request → whole answer
over HTTP on loopback. Target: p50 <= 150 ms for the uncached case.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import RtspCamera, live_gateway, machine_note, show

TOKEN = "snap"
TARGET_MS = 150.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=15)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    print(machine_note())
    camera = RtspCamera(width=args.width, height=args.height, fps=25, gop=25, bitrate=2000, audio="none")
    print(f"camera: {args.width}x{args.height} 25 fps x264, IDR every 1 s")
    fresh: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with live_gateway(Path(tmp) / "gw", camera.url, TOKEN) as (gw, session):
                time.sleep(1)
                for label, call in (
                    ("GetImage", lambda: gw.get(f"/api/v1/GetImage?token={TOKEN}&session={session}")[0]),
                    ("Snapshot", lambda: gw.api("Snapshot", session=session, token=TOKEN)[0]),
                ):
                    new, cached = [], []
                    for _ in range(args.count):
                        time.sleep(1.05)
                        for times in (new, cached):
                            t = time.perf_counter()
                            status = call()
                            times.append((time.perf_counter() - t) * 1000)
                            assert status == 200, status
                    show(f"{label}, new keyframe", new)
                    show(f"{label}, same keyframe (cached)", cached)
                    fresh[label] = new
                jpegs = list((gw.root / "mediastore" / "snapshot").rglob("*.jpg"))
                size = sum(p.stat().st_size for p in jpegs) // len(jpegs)
                print(f"{len(jpegs)} JPEGs in the store, {size} bytes each")
    finally:
        camera.stop()
    for label, times in fresh.items():
        p50 = sorted(times)[len(times) // 2]
        verdict = "PASS" if p50 <= TARGET_MS else "MISS"
        print(f"{label} from a live {args.width}x{args.height} stream, new keyframe: p50 {p50:.0f} ms "
              f"(target <= {TARGET_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
