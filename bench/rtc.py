"""WebRTC: glass-to-glass latency, time to first frame, and gateway CPU per peer.

Usage: python3 bench/rtc.py [--seconds 10] [--peers 1,10,20] [--skip-latency] [--skip-cpu]

latency     A stamped camera (tests/fixtures/rtsp_camera.py --stamp, 1280x720 25 fps) pulled
            by the gateway (H5_ALWAYS); Chromium plays it with the real H5sPlayerRTC (h5s
            signalling) and reads the stamp of every presented frame (requestVideoFrameCallback):
            Date.now() - T. Also: player.connect() -> first presented frame, live source.
cpu         A 4 Mbit/s 640x360 H.264 + AAC clip (file source, always on: the 2-core box stays
            free for the peers); N recvonly peers in one Chromium page over WHEP; the
            gateway's own CPU (/proc) with N peers minus with none, per peer ("per peer",
            which spreads the per-stream work that starts with the first peer, the AAC->Opus
            transcode, over the peers), and above the 1-peer row per added peer ("added").
Targets: p50 <= 100 ms, first frame <= 700 ms, <= 1 % of one core per ~4 Mbit/s peer.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import (Gateway, RtspCamera, add_rtsp, cpu_percent, launch_chromium, machine_note, make_clip,
                    open_bench_page, source_state, summary, wait_until)

CACHE = Path(__file__).resolve().parent / ".cache"

LATENCY_JS = r"""
([token, session]) => new Promise(resolve => {
  var box = document.getElementById('box');
  var video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  box.appendChild(video);
  var canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 16;
  var ctx = canvas.getContext('2d', { willReadFrequently: true });
  var b = window.bench = { ages: [], bad: 0, recording: false, first: 0 };
  var started = performance.now();
  var player = new H5sPlayerRTC({ videodom: video, token: token, session: session,
                                  protocol: location.protocol, host: location.host, rootpath: '/' });
  b.player = player;
  function onFrame(now, meta) {
    var wall = Date.now();
    if (!b.first) b.first = performance.now() - started;
    if (video.videoWidth >= 640) {
      ctx.drawImage(video, 0, 0, 640, 16, 0, 0, 640, 16);
      var stamp = readStamp(ctx);
      if (b.recording) { if (stamp === null) b.bad++; else b.ages.push(stampAge(stamp, wall)); }
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
  player.connect();
  resolve();
})
"""

PEERS_JS = r"""
async ([token, session, count]) => {
  window.pcs = window.pcs || [];
  for (let i = 0; i < count; i++) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch('/' + token + '/whep', {method: 'POST', body: pc.localDescription.sdp,
      headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + session}});
    await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    window.pcs.push(pc);
  }
}
"""

RECEIVED_JS = r"""
async () => { let bytes = 0, connected = 0;
  for (const pc of window.pcs) { if (pc.connectionState === 'connected') connected++;
    (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp') bytes += r.bytesReceived; }); }
  return [connected, bytes]; }
"""


def latency(seconds: float) -> None:
    from playwright.sync_api import sync_playwright

    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, audio="pcma")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(Path(tmp) / "gw", system__strLogLevel="warning").start()
            try:
                session = gw.login()
                add_rtsp(gw, session, "lat", camera.url, "H5_ALWAYS")
                if not wait_until(lambda: source_state(gw, session, "lat")["bOnline"], 20):
                    raise SystemExit(f"source did not come online:\n{gw.log()}")
                time.sleep(1)
                firsts: list[float] = []
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    for attempt in range(6):  # first frame, live source; the last run also records latency
                        page = open_bench_page(browser, gw, session)
                        page.evaluate(LATENCY_JS, ["lat", session])
                        page.wait_for_function("window.bench.first > 0", timeout=20_000)
                        firsts.append(page.evaluate("window.bench.first"))
                        if attempt < 5:
                            page.evaluate("window.bench.player.disconnect()")
                            page.context.close()
                    time.sleep(3)
                    page.evaluate("window.bench.recording = true")
                    time.sleep(seconds)
                    result = page.evaluate("({ages: window.bench.ages, bad: window.bench.bad})")
                    browser.close()
                s = summary(result["ages"])
                print("camera: 1280x720 25 fps x264 zerolatency + PCMA; gateway H5_ALWAYS; Chromium H5sPlayerRTC")
                print(f"  glass-to-glass   p50 {s['p50']:.0f}  p90 {s['p90']:.0f}  p99 {s['p99']:.0f}  "
                      f"min {s['min']:.0f}  max {s['max']:.0f} ms  (n={s['n']}, unreadable {result['bad']})"
                      f"   target p50 <= 100 ms")
                print(f"  first frame (live source, connect() -> first presented frame): "
                      f"median {statistics.median(firsts):.0f}  max {max(firsts):.0f} ms  (n={len(firsts)})"
                      f"   target <= 700 ms")
            finally:
                gw.stop()
    finally:
        camera.stop()


def cpu(counts: list[int], seconds: float) -> None:
    from playwright.sync_api import sync_playwright

    CACHE.mkdir(exist_ok=True)
    clip = make_clip(CACHE / "clip-360p-4M.mp4", 640, 360, 25, 20, 4_000_000)
    mbps = clip.stat().st_size * 8 / 20 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp) / "gw", [{"strName": "b", "strToken": "b", "nType": "H5_FILE",
                                          "strUrl": clip.name, "nConnectType": "H5_ALWAYS"}],
                     system__strLogLevel="warning")
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        try:
            session = gw.login()
            time.sleep(2)
            pid = gw.proc.pid
            base = cpu_percent(pid, seconds)
            print(f"\nstream: 640x360 25 fps H.264 {mbps:.1f} Mbit/s + AAC (-> Opus), file source, always on")
            print(f"{'peers':>6} {'CPU %':>7} {'above 0':>8} {'per peer':>9} {'added':>7} {'Mbit/s in browser':>18}")
            print(f"{0:>6} {base:>7.1f}")
            one_peer: float | None = None
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                for count in counts:
                    page = open_bench_page(browser, gw, session)
                    page.evaluate(PEERS_JS, ["b", session, count])
                    if not wait_until(lambda: page.evaluate(RECEIVED_JS)[0] == count, 30, 0.5):
                        print(f"{count:>6} not all peers connected")
                        page.context.close()
                        continue
                    time.sleep(2)
                    before = page.evaluate(RECEIVED_JS)[1]
                    t0 = time.monotonic()
                    used = cpu_percent(pid, seconds)
                    rate = (page.evaluate(RECEIVED_JS)[1] - before) * 8 / (time.monotonic() - t0) / 1e6
                    above = used - base
                    if count == 1:
                        one_peer = used
                    added = f"{(used - one_peer) / (count - 1):.2f}" if one_peer is not None and count > 1 else ""
                    print(f"{count:>6} {used:>7.1f} {above:>8.1f} {above / count:>9.2f} {added:>7} {rate:>18.1f}")
                    page.context.close()
                    time.sleep(8)  # peers are cleaned up by ICE consent (~5 s)
                browser.close()
        finally:
            gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--peers", default="1,10,20")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    print(machine_note())
    if not args.skip_latency:
        latency(args.seconds)
    if not args.skip_cpu:
        cpu([int(c) for c in args.peers.split(",")], args.seconds)


if __name__ == "__main__":
    main()
