"""Time to first frame over the WebSocket fMP4 path: live (source already up) and cold on-demand.

Usage: python3 bench/first_frame.py [--runs 10] [--audio none|pcma] [--codec h264|h265] [--skip-browser]

Two real RTSP cameras (GStreamer, 1280x720 25 fps, --gop 25 = 1 s) feed one gateway:
  live  AddSrcRTSP connecttype=H5_ALWAYS, online and warmed before measuring;
  cold  AddSrcRTSP connecttype=H5_ONDEMAND, source.nOnDemandLingerSec=1, and before every
        run the bench waits until GetSrc says the source is `idle` again (disconnected).
Each case is measured --runs times, in two clients:
  browser  Chromium on the gateway's origin with the real /js/h5splayer.js: from
           player.connect() to the first video.requestVideoFrameCallback (a new <video>
           and H5sPlayerWS each run); the socket's open / MIME / init / first moof are
           timed by a WebSocket wrapper in the page.
  ws       a plain aiohttp client: from starting the connect to the handshake, the MIME
           frame, the init segment, the first moof and the first video (key) moof.
For the cold case the camera's own cost is shown too: PyAV opening the camera with the
gateway's input options (gateway.ingest.stream.input_options) until the first keyframe.
With `--codec h265` the cameras send H.265 and both clients take the H.264 rendition (the
WS client says nothing of hevc=, Debian's Chromium has no H.265 decoder), and each live run
waits until the rendition has stopped (its linger), so it measures the first viewer without
H.265 of a live camera: the rendition's start from the camera's GOP cache.
Target: live first frame in the browser <= 300 ms (median).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import tempfile
import time
from pathlib import Path

from common import (Gateway, RtspCamera, add_rtsp, launch_chromium, machine_note, open_bench_page,
                    source_state, wait_until)

TARGET_LIVE_MS = 300
LINGER = 1

RUN_JS = r"""
async ([token, session, timeoutMs, fastStart]) => {
  var box = document.getElementById('box');
  box.innerHTML = '';
  var video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  video.width = 640; video.height = 360;
  box.appendChild(video);
  var player = new H5sPlayerWS({ videodom: video, token: token, session: session,
                                 protocol: location.protocol, host: location.host, rootpath: '/' });
  window.benchPlayer = player;
  var traces = window.wsTraces.length;
  return await new Promise(function (resolve) {
    var t0 = 0, done = false;
    function finish(result) {
      if (done) return;
      done = true;
      var tr = window.wsTraces[traces] || {};
      function rel(t) { return t ? t - t0 : null; }
      result.created = rel(tr.created); result.open = rel(tr.open); result.mime = rel(tr.mime);
      result.init = rel(tr.init); result.firstMoof = rel(tr.firstMoof); result.firstVideo = rel(tr.firstVideo);
      result.state = player.stats().state; result.error = player.stats().lastError;
      player.disconnect();
      resolve(result);
    }
    video.requestVideoFrameCallback(function (now, meta) {
      finish({ frame: performance.now() - t0, display: meta.expectedDisplayTime - t0 });
    });
    setTimeout(function () { finish({ frame: null, display: null }); }, timeoutMs);
    if (fastStart) {
      // Experiment (--fast-start): do the player's gap skip as soon as media is buffered
      // instead of on its 250 ms check timer.
      var poll = setInterval(function () {
        if (done) { clearInterval(poll); return; }
        var sb = player.sourceBuffer;
        if (!sb || sb.updating || !sb.buffered.length) return;
        if (video.currentTime < sb.buffered.start(0)) video.currentTime = sb.buffered.start(0) + 0.01;
        clearInterval(poll);
      }, 5);
    }
    t0 = performance.now();
    player.connect();
  });
}
"""


# --- the plain WebSocket client ----------------------------------------------------------

def first_sample_is_sync(fragment: bytes) -> bool:
    """Whether a one-traf moof's first sample is a sync sample (trun per-sample flags)."""
    at = fragment.find(b"trun")
    flags = struct.unpack(">I", fragment[at + 4:at + 8])[0] & 0xFFFFFF
    pos = at + 12 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
    pos += (4 if flags & 0x100 else 0) + (4 if flags & 0x200 else 0)
    if not flags & 0x400:
        return True
    return not struct.unpack(">I", fragment[pos:pos + 4])[0] & 0x10000


def track_of(fragment: bytes) -> int:
    at = fragment.find(b"tfhd")
    return struct.unpack(">I", fragment[at + 8:at + 12])[0]


async def ws_first(url: str, timeout: float = 20) -> dict:
    import aiohttp

    marks: dict[str, float | bool | None] = {}
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        async with http.ws_connect(url, max_msg_size=0) as ws:
            marks["open"] = time.perf_counter() - t0
            deadline = t0 + timeout
            while "video" not in marks:
                msg = await ws.receive(timeout=max(0.1, deadline - time.perf_counter()))
                now = time.perf_counter() - t0
                if msg.type == aiohttp.WSMsgType.TEXT:
                    continue
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"socket ended before video: {msg.type} {msg.extra}")
                data = msg.data
                if "mime" not in marks:
                    marks["mime"] = now
                elif data[4:8] == b"ftyp":
                    marks.setdefault("init", now)
                elif data[4:8] == b"moof":
                    marks.setdefault("moof", now)
                    if track_of(data) == 1:
                        marks["video"] = now
                        marks["key"] = first_sample_is_sync(data)
    return {k: 1000 * v if isinstance(v, float) else v for k, v in marks.items()}


def direct_open(url: str) -> dict:
    """PyAV opening the camera as the gateway does: ms to av.open and to the first keyframe."""
    import av

    from gateway.ingest.stream import input_options

    t0 = time.perf_counter()
    container = av.open(url, options=input_options(url), timeout=(5, 5))
    try:
        opened = time.perf_counter() - t0
        video = container.streams.video[0]
        for packet in container.demux(video):
            if packet.is_keyframe and packet.size:
                return {"open": 1000 * opened, "key": 1000 * (time.perf_counter() - t0)}
    finally:
        container.close()
    return {"open": 1000 * opened, "key": None}


# --- runs ----------------------------------------------------------------------------------

def wait_idle(gw: Gateway, session: str, token: str) -> None:
    if not wait_until(lambda: source_state(gw, session, token)["strState"] == "idle", LINGER + 15, 0.1):
        raise SystemExit(f"source {token} did not go idle: {source_state(gw, session, token)}")
    time.sleep(0.3)  # let the camera tear its media down too


def live_pause(rendition: bool) -> None:
    """Between live runs: a moment, or until the rendition's linger is over (it stops)."""
    time.sleep(LINGER + 1.5 if rendition else 0.5)


def browser_runs(
    gw: Gateway, session: str, runs: int, fast_start: bool = False, rendition: bool = False
) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[dict]] = {"live": [], "cold": []}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_bench_page(browser, gw, session)
            page.evaluate(RUN_JS, ["live", session, 20000, fast_start])  # warm the page's decoder, not counted
            for _ in range(runs):
                live_pause(rendition)
                out["live"].append(page.evaluate(RUN_JS, ["live", session, 20000, fast_start]))
            for _ in range(runs):
                wait_idle(gw, session, "cold")
                out["cold"].append(page.evaluate(RUN_JS, ["cold", session, 20000, fast_start]))
        finally:
            browser.close()
    return out


def ws_runs(gw: Gateway, session: str, runs: int, rendition: bool = False) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"live": [], "cold": []}
    for case in ("live", "cold"):
        url = f"{gw.ws_url}/api/v1/h5swsapi?token={case}&session={session}"
        for _ in range(runs):
            if case == "cold":
                wait_idle(gw, session, "cold")
            else:
                live_pause(rendition)
            out[case].append(asyncio.run(ws_first(url)))
    return out


def cell(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"{'-':>7} {'-':>7}"
    return f"{statistics.median(got):>7.0f} {max(got):>7.0f}"


def table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    print(f"\n{title} (n={len(rows)}; median / max in ms from the start of the connect)")
    for label, key in columns:
        print(f"  {label:<34} {cell([r.get(key) for r in rows])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--audio", choices=["none", "pcma"], default="none",
                        help="camera audio (pcma: G.711, transcoded to AAC by the gateway)")
    parser.add_argument("--gop", type=int, default=25, help="camera frames between IDRs")
    parser.add_argument("--codec", choices=["h264", "h265"], default="h264",
                        help="h265: x265 cameras, played through the H.264 rendition")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--fast-start", action="store_true",
                        help="experiment: the page seeks into the first buffered range at once "
                             "instead of waiting for the player's 250 ms check")
    args = parser.parse_args()

    print(machine_note(), flush=True)
    rendition = args.codec == "h265"
    cams = [RtspCamera(width=1280, height=720, fps=25, audio=args.audio, gop=args.gop, codec=args.codec)
            for _ in range(2)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(Path(tmp), system__strLogLevel="warning", source__nOnDemandLingerSec=LINGER)
            gw.start()
            try:
                session = gw.login()
                audio = args.audio != "none"
                add_rtsp(gw, session, "live", cams[0].url, "H5_ALWAYS", audio=audio)
                add_rtsp(gw, session, "cold", cams[1].url, "H5_ONDEMAND", audio=audio)
                if not wait_until(lambda: source_state(gw, session, "live")["bOnline"], 20):
                    raise SystemExit(f"live source did not come online:\n{gw.log()}")
                time.sleep(2)
                encoder = "x265 (played as the H.264 rendition)" if rendition else "x264"
                print(f"cameras: 1280x720 25 fps {encoder} zerolatency, GOP {args.gop} ({args.gop / 25:g} s), audio {args.audio}; "
                      f"RTSP/TCP; on-demand linger {LINGER} s")

                direct = [direct_open(cams[1].url) for _ in range(min(args.runs, 5))]
                ws = ws_runs(gw, session, args.runs, rendition)
                ws_cols = [("handshake done", "open"), ("MIME frame", "mime"), ("init segment", "init"),
                           ("first moof", "moof"), ("first video moof (keyframe)", "video")]
                table("WS client, live (H5_ALWAYS)", ws["live"], ws_cols)
                table("WS client, cold on-demand (H5_ONDEMAND, idle)", ws["cold"], ws_cols)
                table("reference: PyAV opens the idle camera itself", direct,
                      [("av.open (RTSP DESCRIBE/SETUP/PLAY)", "open"), ("first keyframe packet", "key")])
                not_key = sum(1 for r in ws["live"] + ws["cold"] if r.get("key") is False)
                if not_key:
                    print(f"  !! {not_key} runs started on a non-keyframe video fragment")
                live_median = None
                if not args.skip_browser:
                    br = browser_runs(gw, session, args.runs, args.fast_start, rendition)
                    br_cols = [("WebSocket open", "open"), ("MIME frame", "mime"), ("init segment", "init"),
                               ("first moof", "firstMoof"), ("first video moof", "firstVideo"),
                               ("first requestVideoFrameCallback", "frame"),
                               ("  its expectedDisplayTime", "display")]
                    note = " + page fast start (experiment)" if args.fast_start else ""
                    table(f"Chromium H5sPlayerWS{note}, live (H5_ALWAYS)", br["live"], br_cols)
                    table(f"Chromium H5sPlayerWS{note}, cold on-demand", br["cold"], br_cols)
                    failed = [r for r in br["live"] + br["cold"] if r.get("frame") is None]
                    if failed:
                        print(f"  !! {len(failed)} runs showed no frame within 20 s: {failed[:2]}")
                    live = [r["frame"] for r in br["live"] if r.get("frame") is not None]
                    live_median = statistics.median(live) if live else None
                if live_median is not None:
                    verdict = "PASS" if live_median <= TARGET_LIVE_MS else "MISS"
                    print(f"\nlive first frame in Chromium: median {live_median:.0f} ms "
                          f"(target <= {TARGET_LIVE_MS} ms): {verdict}")
            finally:
                gw.stop()
    finally:
        for cam in cams:
            cam.stop()


if __name__ == "__main__":
    main()
