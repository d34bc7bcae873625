"""hls.js in Chromium: time to first frame and glass-to-glass of LL-HLS, HLS v1 and HLS v2.

Usage: python3 bench/hls_js.py [--runs 5] [--modes ll,v1,v2] [--segment 2] [--warmup 3] [--seconds 8]

A real RTSP camera (GStreamer, x264 zerolatency, 1280x720 25 fps, an IDR every second)
draws the wall-clock milliseconds into every frame (tests/fixtures/rtsp_camera.py). The
gateway pulls it (AddSrcRTSP, H5_ALWAYS, TCP: live, its GOP cached) with
hls.nHLSDuration = --segment (the default config's 2 s unless told). Each run is the
stream's first HLS client: before it the bench waits until the gateway has stopped
segmenting (GetSrc nHlsSegments 0, after 3 target durations without a request).

A page on the gateway's origin (its login.html, emptied) gets hls.js (npm `hls.js`, pinned
in tests/js, installed there with `npm ci` on the first run) and plays with a new <video>
and `new Hls({lowLatencyMode})` per run:

  ll  /{token}/index.m3u8           LL-HLS, lowLatencyMode true (parts, blocking reload)
  v1  /hls/v1/{token}/hls.m3u8      MPEG-TS segments, lowLatencyMode false
  v2  /hls/v2/{token}/hls.m3u8      fMP4 segments, lowLatencyMode false

Time to first frame: from creating the player to the first video.requestVideoFrameCallback
(also shown: when hls.js had the media playlist). Glass-to-glass: Date.now() - T of every
presented frame for --seconds after --warmup, all runs of a mode together. Modes take
turns, run by run. Targets: first frame (median) <= 1.5 s LL-HLS, <= 2.5 s v1 and v2;
LL-HLS glass-to-glass p50 <= 0.8 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import (Gateway, RtspCamera, chosen_modes, launch_chromium, live_gateway, machine_note, open_bench_page,
                    percentile, source_state, summary, wait_until)

from tests.fixtures.hlsjs import hls_js, pinned_version

TOKEN = "hlsjs"
PATHS = {"ll": f"/{TOKEN}/index.m3u8", "v1": f"/hls/v1/{TOKEN}/hls.m3u8", "v2": f"/hls/v2/{TOKEN}/hls.m3u8"}
FIRST_FRAME_TARGET_MS = {"ll": 1500, "v1": 2500, "v2": 2500}
GLASS_TARGET_MS = {"ll": 800}

START_JS = r"""
([url, lowLatency]) => {
  var box = document.getElementById('box');
  box.innerHTML = '';
  var video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  video.width = 1280; video.height = 720;
  box.appendChild(video);
  var canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 16;
  var ctx = canvas.getContext('2d', { willReadFrequently: true });
  var b = window.bench = { ages: [], latencies: [], bad: 0, recording: false, first: 0, playlist: 0, manifest: 0,
                           fragment: 0, stalls: 0, errors: [] };
  var t0 = performance.now();
  var hls = b.hls = new Hls({ lowLatencyMode: lowLatency });
  function since() { return performance.now() - t0; }
  hls.on(Hls.Events.MANIFEST_LOADED, function () { if (!b.manifest) b.manifest = since(); });
  hls.on(Hls.Events.LEVEL_LOADED, function () { if (!b.playlist) b.playlist = since(); });
  hls.on(Hls.Events.FRAG_LOADED, function () { if (!b.fragment) b.fragment = since(); });
  hls.on(Hls.Events.ERROR, function (event, data) { b.errors.push((data.fatal ? 'fatal ' : '') + data.details); });
  video.addEventListener('waiting', function () { if (b.first) b.stalls++; });
  function onFrame(now, meta) {
    var wall = Date.now();
    if (!b.first) b.first = since();
    if (b.recording) {
      ctx.drawImage(video, 0, 0, 640, 16, 0, 0, 640, 16);
      var stamp = readStamp(ctx);
      if (stamp === null) b.bad++;
      else b.ages.push(stampAge(stamp, wall));
      if (hls.latency) b.latencies.push(hls.latency);
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(function () {});
}
"""

RESULT_JS = """() => { var b = window.bench;
  var r = { first: b.first, playlist: b.playlist, manifest: b.manifest, fragment: b.fragment, ages: b.ages,
            latencies: b.latencies, bad: b.bad, stalls: b.stalls, errors: b.errors };
  b.hls.destroy();
  return r; }"""


def segmenter_stopped(gw: Gateway, session: str, target: float) -> None:
    """Until the stream has no HLS segmenter running: the next client is a first one."""
    if not wait_until(lambda: source_state(gw, session, TOKEN).get("nHlsSegments", 0) == 0, 6 * target + 10, 0.2):
        raise SystemExit("the HLS segmenter did not stop")


def run(browser, gw: Gateway, session: str, script: Path, mode: str, warmup: float, seconds: float) -> dict:
    page = open_bench_page(browser, gw, session)
    try:
        page.add_script_tag(path=str(script))
        page.wait_for_function("typeof Hls === 'function' && Hls.isSupported()", timeout=10_000)
        page.evaluate(START_JS, [f"{gw.url}{PATHS[mode]}?session={session}", mode == "ll"])
        page.wait_for_function("window.bench.first > 0", timeout=30_000)
        time.sleep(warmup)
        page.evaluate("window.bench.recording = true")
        time.sleep(seconds)
        return page.evaluate(RESULT_JS)
    finally:
        page.context.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per mode")
    parser.add_argument("--modes", default="ll,v1,v2")
    parser.add_argument("--segment", type=int, default=2, help="hls.nHLSDuration, the target segment length (s)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds after the first frame before recording")
    parser.add_argument("--seconds", type=float, default=8, help="glass-to-glass recording per run (s)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, PATHS)

    from playwright.sync_api import sync_playwright

    script = hls_js(install=True)
    print(machine_note())
    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, gop=25, audio="none")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with live_gateway(Path(tmp), camera.url, TOKEN, hls__nHLSDuration=args.segment) as (gw, session):
                print(f"camera: 1280x720 25 fps x264 zerolatency, IDR every 1 s; gateway: RTSP/TCP, H5_ALWAYS, "
                      f"hls.nHLSDuration {args.segment}; hls.js {pinned_version()}")
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    try:
                        for i in range(args.runs):
                            for mode in modes:
                                segmenter_stopped(gw, session, args.segment)
                                r = run(browser, gw, session, script, mode, args.warmup, args.seconds)
                                results[mode].append(r)
                                g2g = summary(r["ages"])
                                print(f"  run {i + 1} {mode:<2}  first frame {r['first']:6.0f} ms  (media playlist "
                                      f"{r['playlist']:5.0f}, first fragment {r['fragment']:5.0f})  glass-to-glass "
                                      f"p50 {g2g.get('p50', float('nan')):5.0f} ms  stalls {r['stalls']}  "
                                      f"errors {','.join(r['errors']) or '-'}", flush=True)
                    finally:
                        browser.close()
    finally:
        camera.stop()

    print(f"\nhls.js {pinned_version()}, {args.runs} runs per mode, {args.segment} s segments; ms")
    print(f"{'mode':<5} {'first frame med':>15} {'min':>6} {'max':>6} {'playlist med':>13} {'g2g p50':>8} "
          f"{'p90':>6} {'hls.js latency':>15} {'stalls':>7} {'errors':>7}")
    out = {}
    for mode in modes:
        rs = results[mode]
        firsts = [r["first"] for r in rs]
        ages = [a for r in rs for a in r["ages"]]
        latencies = [1000 * x for r in rs for x in r["latencies"]]
        g2g = summary(ages)
        out[mode] = {"first_frame_ms": firsts, "playlist_ms": [r["playlist"] for r in rs], "glass_to_glass": g2g,
                     "stalls": [r["stalls"] for r in rs], "errors": [r["errors"] for r in rs]}
        print(f"{mode:<5} {median(firsts):15.0f} {min(firsts):6.0f} {max(firsts):6.0f} "
              f"{median([r['playlist'] for r in rs]):13.0f} {g2g.get('p50', float('nan')):8.0f} "
              f"{g2g.get('p90', float('nan')):6.0f} {percentile(latencies, 50) if latencies else float('nan'):15.0f} "
              f"{sum(r['stalls'] for r in rs):7d} {sum(len(r['errors']) for r in rs):7d}")
    print()
    for mode in modes:
        first = median(out[mode]["first_frame_ms"])
        target = FIRST_FRAME_TARGET_MS[mode]
        print(f"{mode} first frame median {first:.0f} ms (target <= {target} ms): "
              f"{'PASS' if first <= target else 'MISS'}")
        if mode in GLASS_TARGET_MS and out[mode]["glass_to_glass"]["n"]:
            p50, target = out[mode]["glass_to_glass"]["p50"], GLASS_TARGET_MS[mode]
            print(f"{mode} glass-to-glass p50 {p50:.0f} ms (target <= {target} ms): {'PASS' if p50 <= target else 'MISS'}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
