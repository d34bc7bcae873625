"""The H.264 rendition of an H.265 stream: its CPU, and the latency it adds over WS.

Usage: python3 bench/rendition.py [--seconds 10] [--modes cpu,latency] [--grain]

cpu      A 1920x1080 25 fps H.265 file source (libx265, 4 Mbit/s, GOP 25, AAC; made once
         with ffmpeg into bench/.cache) is played by the gateway (H5_FILE, real time). One WS
         viewer takes it as H.265 (`hevc=true`: no transcode), then one takes it as H.264
         (`hevc=false`: the rendition), at the source's size and, from a second source,
         downscaled to 720 lines. Gateway CPU (from /proc, % of one core) over `--seconds`
         each after a 3 s warm-up; the rendition's cost is the difference. `--grain` adds
         moving film grain to the clip (FFmpeg's noise filter), closer to a camera at night
         than testsrc2's flat colours.
latency  Glass-to-glass over WS in Chromium (bench/ws_latency.py's probe and page: the real
         H5sPlayerWS, requestVideoFrameCallback, the camera's --stamp), in one sitting: a
         1280x720 25 fps H.264 camera, then the same camera in H.265 (x265), which Debian's
         Chromium cannot decode, so it plays the rendition. The difference of the p50s is
         what the rendition adds. Target: <= +150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import (CACHE, Gateway, RtspCamera, add_rtsp, chosen_modes, cpu_percent, machine_note, show,
                    source_state, summary, wait_until)
from tests.fixtures.ws_client import WsViewer  # after common, which puts the repo on sys.path
from ws_latency import TOKEN, browser_run, probe

CLIPS = {False: "hevc-1080p25.mp4", True: "hevc-1080p25-grain.mp4"}
TARGET_ADDED_MS = 150


def hevc_clip(grain: bool) -> Path:
    """10 s of testsrc2 (moving picture; with `grain`, moving noise on it) in H.265 1080p25
    4 Mbit/s with AAC, made once."""
    path = CACHE / CLIPS[grain]
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        picture = "testsrc2=size=1920x1080:rate=25" + (",noise=alls=16:allf=t" if grain else "")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", picture,
             "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=16000", "-t", "10",
             "-c:v", "libx265", "-preset", "ultrafast", "-b:v", "4M",
             "-x265-params", "keyint=25:min-keyint=25:scenecut=0:bframes=0:log-level=error",
             "-tag:v", "hvc1", "-c:a", "aac", "-ac", "1", str(path)],
            check=True,
        )
    return path


def cpu_run(seconds: float, grain: bool) -> dict[str, float]:
    clip = hevc_clip(grain)
    with tempfile.TemporaryDirectory() as tmp:
        sources = [
            {"strName": token, "strToken": token, "nType": "H5_FILE", "strUrl": clip.name,
             "nConnectType": "H5_ALWAYS", **extra}
            for token, extra in (("full", {}), ("hd", {"nH264RenditionHeight": 720}))
        ]
        gw = Gateway(Path(tmp) / "gw", sources, system__strLogLevel="warning")
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        try:
            session = gw.login()
            for token in ("full", "hd"):
                if not wait_until(lambda t=token: source_state(gw, session, t)["bOnline"], 20):
                    raise SystemExit(f"{token} did not come online:\n{gw.log()}")
            pid = gw.proc.pid
            out = {"idle": measure(pid, seconds)}
            print(f"  {'2 sources playing, no viewer':<44} {out['idle']:5.1f} %", flush=True)
            for label, token, hevc in (("WS viewer taking H.265 (passthrough)", "full", True),
                                       ("WS viewer of the rendition, 1080p", "full", False),
                                       ("WS viewer of the rendition, 720p", "hd", False)):
                viewer = WsViewer(gw.ws_url, token, session, f"&hevc={str(hevc).lower()}")
                viewer.start()
                try:
                    if not viewer.wait_frames(25, 20):
                        raise SystemExit(f"no frames for {label}: {viewer.close_reason}\n{gw.log()}")
                    time.sleep(3)
                    frames, t0 = len(viewer.frames), time.monotonic()
                    out[label] = cpu_percent(pid, seconds)
                    fps = (len(viewer.frames) - frames) / (time.monotonic() - t0)
                    transcoding = source_state(gw, session, token)["bH264Rendition"]
                    print(f"  {label:<44} {out[label]:5.1f} %  ({fps:.1f} frames/s received; {viewer.mime}; "
                          f"transcoding: {transcoding})", flush=True)
                finally:
                    viewer.stop()
                wait_until(lambda t=token: not source_state(gw, session, t)["bH264Rendition"], 15)
        finally:
            gw.stop()
    return out


def measure(pid: int, seconds: float) -> float:
    time.sleep(3)
    return cpu_percent(pid, seconds)


def latency_run(codec: str, seconds: float) -> dict:
    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, audio="none", codec=codec)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(Path(tmp) / "gw", system__strLogLevel="warning").start()
            try:
                session = gw.login()
                add_rtsp(gw, session, TOKEN, camera.url, "H5_ALWAYS")
                if not wait_until(lambda: source_state(gw, session, TOKEN)["bOnline"], 20):
                    raise SystemExit(f"source did not come online:\n{gw.log()}")
                time.sleep(1)
                url = f"{gw.ws_url}/api/v1/h5swsapi?token={TOKEN}&session={session}&hevc=false"
                p = asyncio.run(probe(url, 1.0, 6))
                time.sleep(2)  # the probe's rendition stops (linger) before the browser's starts it again
                r = browser_run(gw, session, 3, seconds, 200, None)
                transcoding = source_state(gw, session, TOKEN)["bH264Rendition"]
            finally:
                gw.stop()
    finally:
        camera.stop()
    g2g = [row[0] for row in r["rows"]]
    print(f"\n{codec} camera 1280x720 25 fps -> WS ({p['mime']}), "
          f"{'transcoded' if codec == 'h265' else 'as it is'}:")
    show("stamp age at fragment arrival (probe)", p["ages"])
    show("glass-to-glass in Chromium", g2g)
    print(f"  frames decoded {r['decoded']}, dropped {r['dropped']}, unreadable stamps {r['bad']}"
          + (f"; rendition was transcoding: {transcoding}" if codec == "h265" else ""), flush=True)
    return {"probe": summary(p["ages"]), "browser": summary(g2g)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds measured per row")
    parser.add_argument("--modes", default="cpu,latency", help="cpu, latency, or both (comma-separated)")
    parser.add_argument("--grain", action="store_true", help="cpu: a clip with moving film grain")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, ("cpu", "latency"))
    print(machine_note(), flush=True)
    if "cpu" in modes:
        print(f"\nGateway CPU, % of one core (H.265 1080p25 4 Mbit/s file source{' with grain' if args.grain else ''}, "
              "H5_ALWAYS):", flush=True)
        cpu = cpu_run(args.seconds, args.grain)
        base = cpu["WS viewer taking H.265 (passthrough)"]
        for label in ("WS viewer of the rendition, 1080p", "WS viewer of the rendition, 720p"):
            print(f"  rendition cost, {label.rsplit(', ', 1)[1]}: {cpu[label] - base:5.1f} % of one core "
                  f"above the H.265 viewer")
    if "latency" in modes:
        plain = latency_run("h264", args.seconds)
        transcoded = latency_run("h265", args.seconds)
        added = transcoded["browser"].get("p50", float("nan")) - plain["browser"].get("p50", float("nan"))
        probe_added = transcoded["probe"].get("p50", float("nan")) - plain["probe"].get("p50", float("nan"))
        verdict = "PASS" if added <= TARGET_ADDED_MS else "MISS"
        print(f"\nadded by the rendition: glass-to-glass p50 {added:+.0f} ms, at the WS client {probe_added:+.0f} ms "
              f"(target <= +{TARGET_ADDED_MS} ms): {verdict}")


if __name__ == "__main__":
    main()
