"""Glass-to-glass latency of HLS in Chromium: LL-HLS and h5s HLS v1 with 1 s segments.

Usage: python3 bench/hls_latency.py [--seconds 15] [--warmup 4] [--modes ll,v1,v1-native]

A real RTSP camera (GStreamer, x264 zerolatency, 1280x720 25 fps, an IDR every second)
draws the wall-clock milliseconds into every frame (tests/fixtures/rtsp_camera.py). The
gateway pulls it (AddSrcRTSP, H5_ALWAYS, TCP) and segments it with hls.nHLSDuration = 1
(1 s segments, 200 ms LL-HLS parts). A page on the gateway's origin plays it with the
real /js/h5splayer.js; video.requestVideoFrameCallback draws each presented frame to a
canvas, reads the stamp and records Date.now() - T. Modes, one after the other:

  ll         H5sPlayerHls hlsver 'll' (default: MSE, part by part with blocking reload)
  v1         H5sPlayerHls hlsver 'v1' (default: MSE, whole segments of the fMP4 rendition)
  v1-native  H5sPlayerHls hlsver 'v1', nativehls 'true' (Chromium's own HLS, MPEG-TS)

Camera, gateway and browser share the machine clock. Targets: LL-HLS p50 <= 1.2 s,
v1 p50 <= 3.5 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import (Gateway, RtspCamera, chosen_modes, launch_chromium, live_gateway, machine_note, open_bench_page, show,
                    summary)

TOKEN = "lat"
MODES = {"ll": ("ll", "auto"), "v1": ("v1", "auto"), "v1-native": ("v1", "true")}
TARGETS_MS = {"ll": 1200, "v1": 3500}

START_JS = r"""
([token, session, hlsver, nativehls]) => {
  var box = document.getElementById('box');
  var video = document.createElement('video');
  video.id = 'v'; video.muted = true; video.autoplay = true; video.playsInline = true;
  video.width = 1280; video.height = 720;
  box.appendChild(video);
  var canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 16;
  var ctx = canvas.getContext('2d', { willReadFrequently: true });
  var player = new H5sPlayerHls({ videodom: video, token: token, session: session, protocol: location.protocol,
                                  host: location.host, rootpath: '/', hlsver: hlsver, nativehls: nativehls });
  var b = window.bench = { player: player, ages: [], lags: [], bad: 0, recording: false, first: 0, stalls: [] };
  video.addEventListener('waiting', function () {
    if (b.recording) b.stalls.push([video.currentTime, player.latency(), video.buffered.length]);
  });
  function onFrame(now, meta) {
    var wall = Date.now();
    if (!b.first) b.first = wall;
    ctx.drawImage(video, 0, 0, 640, 16, 0, 0, 640, 16);
    var stamp = readStamp(ctx);
    if (b.recording) {
      if (stamp === null) b.bad++;
      else { b.ages.push(stampAge(stamp, wall)); b.lags.push(player.latency()); }
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
  player.connect();
}
"""


def run_mode(browser, gw: Gateway, session: str, mode: str, warmup: float, seconds: float) -> dict:
    hlsver, nativehls = MODES[mode]
    page = open_bench_page(browser, gw, session)
    try:
        started = time.monotonic()
        page.evaluate(START_JS, [TOKEN, session, hlsver, nativehls])
        page.wait_for_function("window.bench.first > 0", timeout=30_000)
        first_frame = time.monotonic() - started
        time.sleep(warmup)
        page.evaluate("window.bench.recording = true")
        time.sleep(seconds)
        result = page.evaluate("""() => { var b = window.bench, q = document.getElementById('v').getVideoPlaybackQuality();
            return { ages: b.ages, lags: b.lags, bad: b.bad, stats: b.player.stats(), stalls: b.stalls,
                     decoded: q.totalVideoFrames, dropped: q.droppedVideoFrames }; }""")
        page.evaluate("window.bench.player.disconnect()")
        result["first_frame"] = first_frame
        return result
    finally:
        page.context.close()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="recording time per mode (s)")
    parser.add_argument("--warmup", type=float, default=4, help="seconds after the first frame before recording")
    parser.add_argument("--modes", default="ll,v1,v1-native")
    parser.add_argument("--json", action="store_true", help="also print the summaries as JSON")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, MODES)

    from playwright.sync_api import sync_playwright

    print(machine_note())
    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, gop=25, audio="none")
    out: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with live_gateway(Path(tmp), camera.url, TOKEN, hls__nHLSDuration=1) as (gw, session):
                print("camera: 1280x720 25 fps x264 zerolatency, IDR every 1 s; gateway: RTSP/TCP, "
                      "hls.nHLSDuration 1 (1 s segments, 200 ms parts)")
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    try:
                        for mode in modes:
                            r = run_mode(browser, gw, session, mode, args.warmup, args.seconds)
                            st = r["stats"]
                            print(f"\n{mode}: H5sPlayerHls hlsver {st['hlsver']}, {st['mode']} "
                                  f"({st.get('mime') or 'native'}), first frame after {r['first_frame']:.1f} s")
                            show("glass-to-glass (rVFC Date.now-T)", r["ages"])
                            show("player lag (buffered end-current)", [1000 * x for x in r["lags"] if x is not None])
                            print(f"  frames decoded {r['decoded']}, dropped {r['dropped']}, unreadable stamps "
                                  f"{r['bad']}, stalls {len(r['stalls'])}, jumps {st.get('jumps')}, "
                                  f"reconnects {st['reconnects']}, last error {st['lastError'] or '-'}")
                            out[mode] = summary(r["ages"])
                    finally:
                        browser.close()
    finally:
        camera.stop()
    print()
    for mode, target in TARGETS_MS.items():
        s = out.get(mode)
        if s and s["n"]:
            verdict = "PASS" if s["p50"] <= target else "MISS"
            print(f"{mode} glass-to-glass p50 {s['p50']:.0f} ms (target <= {target} ms): {verdict}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
