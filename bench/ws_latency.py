"""Glass-to-glass latency of the WebSocket fMP4 path, camera to Chromium's screen.

Usage: python3 bench/ws_latency.py [--seconds 10] [--warmup 3] [--audio none|pcma]
                                    [--maxlatency S] [--no-probe]
       experiments: [--catchup S] [--aac-rate HZ]

A real RTSP camera (GStreamer, x264 zerolatency, 1280x720 25 fps) draws the wall-clock
milliseconds into every frame (tests/fixtures/rtsp_camera.py). The gateway pulls it
(AddSrcRTSP, H5_ALWAYS, TCP). Two measurements, one after the other so they do not share
the CPU:

  probe    a plain aiohttp WebSocket client decodes each fragment with PyAV and reads the
           stamp: now - T at the moment the fragment *arrived* (camera encode + RTSP +
           gateway demux/fragmenting + WebSocket), i.e. what the gateway adds before the
           browser gets the bytes.
  browser  a page on the gateway's origin plays the stream with the real /js/h5splayer.js
           (H5sPlayerWS, default conf); video.requestVideoFrameCallback draws each
           presented frame to a canvas, reads the stamp and records Date.now() - T.
           Also recorded per frame: the player's buffer lag (buffered end - currentTime)
           and metadata.expectedDisplayTime - T.

Camera, gateway and browser share the machine clock. Target: browser p50 <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import tempfile
import time
from pathlib import Path

from common import (Gateway, RtspCamera, add_rtsp, launch_chromium, machine_note, open_bench_page,
                    show, source_state, summary, wait_until)
from tests.fixtures.stamp import decode_bits  # after common, which puts the repo on sys.path

TOKEN = "lat"
TARGET_P50_MS = 200


# Experiment (--aac-rate): the gateway process imports this at start-up (PYTHONPATH) and
# changes the AAC rate G.711 is transcoded to; nothing on disk outside the temp dir changes.
AAC_PATCH = """
import os, sys
import gateway.formats.audio_transcode as audio
if hasattr(audio, "AAC_RATE"):
    audio.AAC_RATE = int(os.environ["BENCH_AAC_RATE"])
else:
    print("bench: gateway.formats.audio_transcode.AAC_RATE is gone; --aac-rate has no effect", file=sys.stderr)
"""


def patch_aac_rate(tmp: Path, rate: int) -> None:
    (tmp / "patch").mkdir()
    (tmp / "patch" / "sitecustomize.py").write_text(AAC_PATCH)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp / "patch"), os.environ.get("PYTHONPATH")]))
    os.environ["BENCH_AAC_RATE"] = str(rate)


# --- probe: a WS client that reads the stamp from the fragments it receives --------------

def boxes(data: bytes, pos: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes in data[pos:end]: type -> (payload start, payload end)."""
    end = len(data) if end is None else end
    out = {}
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size < 8:
            break
        out.setdefault(kind, (pos + 8, pos + size))
        pos += size
    return out


def avcc_of(init: bytes) -> bytes:
    """The avcC payload (AVCDecoderConfigurationRecord) of an init segment."""
    at = init.index(b"avcC")
    size = struct.unpack(">I", init[at - 4:at])[0]
    return init[at + 4:at - 4 + size]


def timescales(init: bytes) -> dict[int, int]:
    """track id -> mdhd timescale, from an init segment."""
    out = {}
    moov = boxes(init).get(b"moov")
    pos, end = moov
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", init[pos:pos + 8])
        if kind == b"trak":
            parts = boxes(init, pos + 8, pos + size)
            tkhd = parts[b"tkhd"][0]
            track = struct.unpack(">I", init[tkhd + (20 if init[tkhd] == 1 else 12):][:4])[0]
            mdhd = boxes(init, *parts[b"mdia"])[b"mdhd"][0]
            out[track] = struct.unpack(">I", init[mdhd + (20 if init[mdhd] == 1 else 12):][:4])[0]
        pos += max(size, 8)
    return out


def fragment_parts(fragment: bytes) -> tuple[int, int, int, bytes] | None:
    """(track id, tfdt base, summed trun durations, mdat payload) of a one-traf moof+mdat."""
    top = boxes(fragment)
    if b"moof" not in top or b"mdat" not in top:
        return None
    traf = boxes(fragment, *top[b"moof"]).get(b"traf")
    parts = boxes(fragment, *traf) if traf else {}
    if not {b"tfhd", b"tfdt", b"trun"} <= parts.keys():
        return None
    track = struct.unpack(">I", fragment[parts[b"tfhd"][0] + 4:][:4])[0]
    at = parts[b"tfdt"][0]
    base = struct.unpack(">Q", fragment[at + 4:at + 12])[0] if fragment[at] == 1 else \
        struct.unpack(">I", fragment[at + 4:at + 8])[0]
    at = parts[b"trun"][0]
    flags, count = struct.unpack(">I", fragment[at:at + 4])[0] & 0xFFFFFF, struct.unpack(">I", fragment[at + 4:at + 8])[0]
    pos = at + 8 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
    record = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    duration = 0
    if flags & 0x100:
        duration = sum(struct.unpack(">I", fragment[pos + i * record:][:4])[0] for i in range(count))
    start, end = top[b"mdat"]
    return track, base, duration, fragment[start:end]


def luma_stamp(frame) -> int | None:
    """The stamp from the Y plane (cells are pure grey: luma 235 = 1, 16 = 0)."""
    plane = frame.planes[0]
    row = memoryview(plane)[8 * plane.line_size: 8 * plane.line_size + 640]
    return decode_bits([1 if row[16 * i + 8] > 128 else 0 for i in range(40)])


async def probe(url: str, warmup: float, seconds: float) -> dict:
    import aiohttp
    import av

    arrivals: dict[int, float] = {}
    ages: list[float] = []
    audio_behind: list[float] = []  # newest video end - newest audio end, ms of media time
    unreadable = 0
    codec = None
    scales: dict[int, int] = {}
    ends: dict[int, float] = {}
    count = 0
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, max_msg_size=0) as ws:
            mime = (await ws.receive(timeout=20)).data
            t_start = time.monotonic()
            while time.monotonic() - t_start < warmup + seconds:
                msg = await ws.receive(timeout=10)
                arrived = time.time()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        continue
                    raise RuntimeError(f"socket ended: {msg.type} {msg.extra}")
                data = msg.data
                if data[4:8] == b"ftyp":
                    codec = av.CodecContext.create("h264", "r")
                    codec.extradata = avcc_of(data)
                    codec.thread_type = "NONE"  # no frame-threading delay in the probe
                    scales = timescales(data)
                    continue
                parts = fragment_parts(data) if codec is not None else None
                if parts is None:
                    continue
                track, base, duration, sample = parts
                ends[track] = (base + duration) / scales[track]
                if track != 1:
                    if 1 in ends and time.monotonic() - t_start >= warmup:
                        audio_behind.append(1000 * (ends[1] - ends[track]))
                    continue
                count += 1
                arrivals[count] = arrived
                packet = av.Packet(sample)
                packet.pts = count
                for frame in codec.decode(packet):
                    at = arrivals.pop(frame.pts, None)
                    stamp = luma_stamp(frame)
                    if at is None or time.monotonic() - t_start < warmup:
                        continue
                    if stamp is None:
                        unreadable += 1
                    else:
                        ages.append((int(at * 1000) - stamp) % 2**32)
    return {"mime": mime if isinstance(mime, str) else mime.decode(), "ages": ages,
            "unreadable": unreadable, "audio_behind": audio_behind}


# --- browser -------------------------------------------------------------------------------

START_JS = r"""
([token, session, maxlatency, catchup]) => {
  var box = document.getElementById('box');
  var video = document.createElement('video');
  video.id = 'v'; video.muted = true; video.autoplay = true; video.playsInline = true;
  video.width = 1280; video.height = 720;
  box.appendChild(video);
  var canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 16;
  var ctx = canvas.getContext('2d', { willReadFrequently: true });
  var conf = { videodom: video, token: token, session: session, protocol: location.protocol,
               host: location.host, rootpath: '/', consolelog: 'false' };
  if (maxlatency !== null) conf.maxlatency = String(maxlatency);
  var player = new H5sPlayerWS(conf);
  var b = window.bench = { player: player, rows: [], bad: 0, callbacks: 0, recording: false,
                           first: 0, lastPresented: 0, missed: 0 };
  function onFrame(now, meta) {
    var wall = Date.now();
    b.callbacks++;
    if (!b.first) b.first = wall;
    if (b.lastPresented && meta.presentedFrames > b.lastPresented + 1)
      b.missed += meta.presentedFrames - b.lastPresented - 1;
    b.lastPresented = meta.presentedFrames;
    ctx.drawImage(video, 0, 0, 640, 16, 0, 0, 640, 16);
    var stamp = readStamp(ctx);
    if (b.recording) {
      if (stamp === null) b.bad++;
      else {
        var display = performance.timeOrigin + meta.expectedDisplayTime;
        var tr = window.wsTraces[window.wsTraces.length - 1] || {};
        b.rows.push([stampAge(stamp, wall), stampAge(stamp, Math.round(display)), player.latency(),
                     tr.videoStart ? tr.videoStart - meta.mediaTime : null,
                     tr.audioEnd ? tr.videoEnd - tr.audioEnd : null]);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
  if (catchup !== null) {
    // Experiment (--catchup): hold the lag near a target by playing slightly fast
    // instead of seeking; pair with a large --maxlatency so the player never jumps.
    setInterval(function () {
      var lag = player.latency();
      if (lag === null) return;
      video.playbackRate = lag > catchup + 0.04 ? 1.15 : lag < catchup ? 1.0 : video.playbackRate;
    }, 100);
  }
  player.connect();
}
"""


def browser_run(gw: Gateway, session: str, warmup: float, seconds: float, min_samples: int,
                maxlatency: float | None, catchup: float | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_bench_page(browser, gw, session)
            page.evaluate(START_JS, [TOKEN, session, maxlatency, catchup])
            page.wait_for_function("window.bench.first > 0", timeout=20_000)
            time.sleep(warmup)
            page.evaluate("window.bench.recording = true; window.bench.missed = 0")
            t0 = time.monotonic()
            while True:
                time.sleep(0.5)
                n = page.evaluate("window.bench.rows.length")
                elapsed = time.monotonic() - t0
                if elapsed >= seconds and n >= min_samples or elapsed >= max(3 * seconds, 30):
                    break
            result = page.evaluate("""() => { var b = window.bench, v = document.getElementById('v');
                var q = v.getVideoPlaybackQuality();
                return { rows: b.rows, bad: b.bad, missed: b.missed, stats: b.player.stats(),
                         decoded: q.totalVideoFrames, dropped: q.droppedVideoFrames,
                         size: [v.videoWidth, v.videoHeight] }; }""")
            result["elapsed"] = time.monotonic() - t0
            page.evaluate("window.bench.player.disconnect()")
            return result
        finally:
            browser.close()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="browser recording time (s)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds after the first frame before recording")
    parser.add_argument("--min-samples", type=int, default=200)
    parser.add_argument("--audio", choices=["none", "pcma"], default="none",
                        help="camera audio (pcma: G.711, transcoded to AAC by the gateway)")
    parser.add_argument("--maxlatency", type=float, default=None,
                        help="player conf maxlatency in s (default: the player's own)")
    parser.add_argument("--catchup", type=float, default=None, metavar="S",
                        help="experiment: page-side playbackRate 1.15 while the player's lag > S s "
                             "(use with --maxlatency 30 to turn the player's seeks off)")
    parser.add_argument("--aac-rate", type=int, default=None, metavar="HZ",
                        help="experiment: make the gateway transcode G.711 to AAC at HZ (default 16000) "
                             "by patching it at start-up; with --audio pcma")
    parser.add_argument("--probe-seconds", type=float, default=6)
    parser.add_argument("--no-probe", action="store_true", help="skip the WS-client probe")
    parser.add_argument("--json", action="store_true", help="also print the raw summary as JSON")
    args = parser.parse_args()

    print(machine_note(), flush=True)
    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, audio=args.audio)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(Path(tmp) / "gw", system__strLogLevel="warning")
            if args.aac_rate:
                patch_aac_rate(Path(tmp), args.aac_rate)
            gw.start()
            try:
                session = gw.login()
                add_rtsp(gw, session, TOKEN, camera.url, "H5_ALWAYS", audio=args.audio != "none")
                if not wait_until(lambda: source_state(gw, session, TOKEN)["bOnline"], 20):
                    raise SystemExit(f"source did not come online:\n{gw.log()}")
                time.sleep(1)
                url = f"{gw.ws_url}/api/v1/h5swsapi?token={TOKEN}&session={session}"
                print(f"camera: 1280x720 25 fps x264 zerolatency, GOP 25, audio {args.audio}; "
                      f"gateway pulls it over RTSP/TCP (H5_ALWAYS)"
                      + (f"; EXPERIMENT: G.711 -> AAC at {args.aac_rate} Hz" if args.aac_rate else ""))
                out: dict = {}
                if not args.no_probe:
                    p = asyncio.run(probe(url, 1.0, args.probe_seconds))
                    out["probe"] = summary(p["ages"])
                    print(f"\nWS client probe (aiohttp + PyAV, {p['mime']}):")
                    show("stamp age at fragment arrival", p["ages"])
                    if p["audio_behind"]:
                        show("audio end behind video end", p["audio_behind"])
                    if p["unreadable"]:
                        print(f"  unreadable stamps: {p['unreadable']}")
                r = browser_run(gw, session, args.warmup, args.seconds, args.min_samples, args.maxlatency,
                               args.catchup)
                rows = r["rows"]
                g2g = [row[0] for row in rows]
                display = [row[1] for row in rows]
                lag = [1000 * row[2] for row in rows if row[2] is not None]
                behind = [1000 * row[3] for row in rows if row[3] is not None]
                audio_behind = [1000 * row[4] for row in rows if row[4] is not None]
                st = r["stats"]
                extra = f", page catch-up to {args.catchup} s" if args.catchup is not None else ""
                print(f"\nChromium, H5sPlayerWS (maxlatency {st.get('latencyLimit', '?')} s in use{extra}), "
                      f"{r['size'][0]}x{r['size'][1]}, {r['elapsed']:.1f} s recorded after {args.warmup:.0f} s warm-up:")
                show("glass-to-glass (rVFC Date.now-T)", g2g)
                show("at expectedDisplayTime", display)
                show("player buffer lag (end-currentTime)", lag)
                show("newest video received - shown", behind)
                if audio_behind:
                    show("audio end behind video end", audio_behind)
                print(f"  frames: decoded {r['decoded']}, dropped {r['dropped']}, rVFC missed {r['missed']}, "
                      f"unreadable stamps {r['bad']}, player jumps {st.get('jumps')}, reconnects {st.get('reconnects')}")
                skew = summary(audio_behind)
                if skew["n"] and skew["p50"] > 150:
                    print(f"  !! the audio timeline trails video by ~{skew['p50']:.0f} ms: MSE plays the end both "
                          f"tracks share, so that skew is added to the latency (see bench/README.md)")
                s = summary(g2g)
                out["browser"] = s
                out["display"] = summary(display)
                out["buffer_lag"] = summary(lag)
                out["video_behind"] = summary(behind)
                verdict = "PASS" if s["n"] and s["p50"] <= TARGET_P50_MS else "MISS"
                print(f"\nglass-to-glass p50 {s.get('p50', float('nan')):.0f} ms "
                      f"(target <= {TARGET_P50_MS} ms): {verdict}")
                if args.json:
                    print(json.dumps(out))
            finally:
                gw.stop()
    finally:
        camera.stop()


if __name__ == "__main__":
    main()
