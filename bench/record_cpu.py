"""Gateway CPU recording one 4 Mbit/s camera, against ffmpeg writing the same stream.

Usage: python3 bench/record_cpu.py [--seconds 15] [--width 1920 --height 1080 --bitrate 4000]

A real RTSP camera (GStreamer, x264, 25 fps, an IDR every second, G.711 audio as a
Hikvision sends) is recorded, in one run and one after the other so they do not share the
CPU:

  gateway pull     the gateway pulls the camera (AddSrcRTSP, H5_ALWAYS) with nobody
                   watching: demux and G.711 -> AAC
  gateway record   the same plus ManualRecordStart: fragmented MP4 on disk
  ffmpeg           `ffmpeg -rtsp_transport tcp -i rtsp://... -c:v copy -c:a aac -ar 16000
                   -f mp4 -movflags frag_keyframe+empty_moov out.mp4` (the gateway's source
                   is deleted first): pulling and writing the same file, with the same
                   audio transcode, since an MP4 cannot carry G.711 either way

The fair comparison is the whole job against the whole job: gateway (pull + record) over
ffmpeg (pull + write), both from zero (neither process does anything else). CPU is
user+system of the process from /proc, % of one core. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import RtspCamera, cpu_percent, live_gateway, machine_note, wait_until

TOKEN = "rec"
TARGET_RATIO = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--bitrate", type=int, default=4000, help="camera kbit/s")
    args = parser.parse_args()
    print(machine_note())
    camera = RtspCamera(width=args.width, height=args.height, fps=25, gop=25, bitrate=args.bitrate, audio="pcma")
    print(f"camera: {args.width}x{args.height} 25 fps x264 at {args.bitrate} kbit/s, IDR every 1 s, G.711; "
          f"{args.seconds:.0f} s per phase")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with live_gateway(Path(tmp) / "gw", camera.url, TOKEN, audio=True) as (gw, session):
                time.sleep(2)
                pull = cpu_percent(gw.proc.pid, args.seconds)
                status, answer = gw.api("ManualRecordStart", session=session, token=TOKEN)
                assert status == 200, answer
                time.sleep(2)
                record = cpu_percent(gw.proc.pid, args.seconds)
                status, stopped = gw.api("ManualRecordStop", session=session, token=TOKEN)
                assert status == 200, stopped
                written = sum(p.stat().st_size for p in (gw.root / "mediastore" / "record").rglob("*.mp4"))
                assert gw.api("DelSrc", session=session, token=TOKEN)[0] == 200
            out = Path(tmp) / "ffmpeg.mp4"
            ffmpeg = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", camera.url,
                 "-c:v", "copy", "-c:a", "aac", "-ar", "16000", "-f", "mp4",
                 "-movflags", "frag_keyframe+empty_moov", str(out)])
            try:
                if not wait_until(lambda: out.exists() and out.stat().st_size > 0, 20):
                    raise SystemExit("ffmpeg wrote nothing")
                time.sleep(2)
                reference = cpu_percent(ffmpeg.pid, args.seconds)
            finally:
                ffmpeg.terminate()
                ffmpeg.wait(10)
    finally:
        camera.stop()
    ratio = record / reference if reference else float("inf")
    print(f"{'':<16} {'CPU %':>6}")
    print(f"{'gateway pull':<16} {pull:>6.1f}")
    print(f"{'gateway record':<16} {record:>6.1f}   (recording itself: {record - pull:.1f} above the pull; "
          f"{written / 1e6:.1f} MB written)")
    print(f"{'ffmpeg -c copy':<16} {reference:>6.1f}")
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"gateway pull+record / ffmpeg pull+write = {ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")


if __name__ == "__main__":
    main()
