"""Shared bench helpers: a gateway process, clip making, process CPU and RSS from /proc,
the test camera and Chromium, percentiles, and a same-origin bench page in the browser."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from contextlib import contextmanager
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.browser import launch_chromium  # noqa: E402
from tests.fixtures.camera import RtspCamera  # noqa: E402
from tests.fixtures.gateway import Gateway  # noqa: E402  (the same runner the tests use)

CLK_TCK = os.sysconf("SC_CLK_TCK")
CACHE = Path(__file__).resolve().parent / ".cache"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_percent(pid: int, seconds: float) -> float:
    """Average CPU of `pid` over `seconds`, in % of one core."""
    start, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - t0)


async def count_bytes(clients: list[Awaitable[None]], received: list[int], playing: list[int], seconds: float) -> None:
    """The client side of a many-clients bench (in its own process): run `clients` (each
    adds what it reads to its slot of `received`, and 1 to `playing[0]` once it plays);
    when all play, print `playing`, then after `seconds` a JSON line with the bytes all
    of them and the slowest one received."""
    tasks = [asyncio.ensure_future(client) for client in clients]
    while playing[0] < len(tasks):  # noqa: ASYNC110 (logins are PBKDF2 checks: all in before measuring)
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    print("playing", flush=True)
    joined = list(received)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    got = [after - before for before, after in zip(joined, received, strict=True)]
    print(json.dumps({"bytes": sum(got), "min_client_bytes": min(got)}), flush=True)


def make_clip(path: Path, width: int, height: int, fps: int, seconds: int, bitrate: int) -> Path:
    """An H.264 + AAC clip of the given size/bit rate, made once and reused."""
    if path.exists():
        return path
    from gateway.ingest.sample import make_sample

    make_sample(path, seconds=seconds, width=width, height=height, fps=fps, bitrate=bitrate)
    return path


def make_h265_clip(path: Path, h264_clip: Path, bitrate: int) -> Path:
    """`h264_clip` with its video re-encoded by libx265 (ultrafast, hvc1, an IDR each second,
    no B-frames, as the H.264 clip) at `bitrate`, its audio as it is; made once and reused."""
    if path.exists():
        return path
    import av

    tmp = path.with_name(f".{path.name}.part")
    with av.open(str(h264_clip)) as source, av.open(str(tmp), "w", format="mp4") as out:
        video_in, audio_in = source.streams.video[0], source.streams.audio[0]
        fps = int(video_in.average_rate or 25)
        params = f"keyint={fps}:min-keyint={fps}:bframes=0:log-level=error"
        video = out.add_stream("libx265", rate=fps, options={"preset": "ultrafast", "x265-params": params})
        video.width, video.height, video.pix_fmt = video_in.width, video_in.height, "yuv420p"
        video.bit_rate, video.codec_tag = bitrate, "hvc1"
        audio = out.add_stream_from_template(audio_in)
        for packet in source.demux(video_in, audio_in):
            if packet.stream is audio_in:
                if packet.dts is not None:
                    packet.stream = audio
                    out.mux(packet)
                continue
            for frame in packet.decode():
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(video.encode(frame))
        out.mux(video.encode(None))
    os.replace(tmp, path)
    return path


def chosen_modes(parser: argparse.ArgumentParser, text: str, known: Iterable[str]) -> list[str]:
    """The comma-separated modes of `text`; an unknown one ends the bench with a usage error."""
    modes = [m for m in text.split(",") if m]
    known = list(known)
    unknown = set(modes) - set(known)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))} (choose from {', '.join(known)})")
    return modes


def machine_note() -> str:
    """CPU count and load average, printed by each bench: other work on the box skews every number."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"machine: {os.cpu_count()} CPUs, load average {' / '.join(load)} (1 / 5 / 15 min) at start"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank-interpolated percentile (p in 0..100) of a non-empty list."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99, min, max, mean of a list (empty: n=0 only)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def show(label: str, values: list[float], unit: str = "ms") -> None:
    """One summary line: p50/p90/p99/min/max and the sample count."""
    s = summary(values)
    if not s["n"]:
        print(f"  {label:<36} no samples")
        return
    print(f"  {label:<36} p50 {s['p50']:6.0f}  p90 {s['p90']:6.0f}  p99 {s['p99']:6.0f}  "
          f"min {s['min']:6.0f}  max {s['max']:6.0f} {unit}  (n={s['n']})")


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; that value, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def source_state(gw: Gateway, session: str, token: str) -> dict[str, Any]:
    """GetSrc's entry for one token (bOnline, strState, nViewers, ...)."""
    status, answer = gw.api("GetSrc", session=session, token=token)
    assert status == 200 and answer["bStatus"], answer
    return answer["src"][0]


@contextmanager
def live_gateway(root: Path, url: str, token: str, audio: bool = False, **settings: Any) -> Iterator[tuple[Gateway, str]]:
    """(gateway, session): a gateway in `root` pulling the camera at `url` as `token`
    (H5_ALWAYS), online; stopped on exit. `settings` as for Gateway (section__key=value)."""
    gw = Gateway(root, system__strLogLevel="warning", **settings)
    gw.start()
    try:
        session = gw.login()
        add_rtsp(gw, session, token, url, "H5_ALWAYS", audio=audio)
        if not wait_until(lambda: source_state(gw, session, token)["bOnline"], 20):
            raise SystemExit(f"source did not come online:\n{gw.log()}")
        yield gw, session
    finally:
        gw.stop()


def add_rtsp(gw: Gateway, session: str, token: str, url: str, connecttype: str = "H5_ALWAYS",
             audio: bool = False) -> None:
    """AddSrcRTSP (TCP) through the REST API, as an integration would."""
    status, answer = gw.api("AddSrcRTSP", session=session, name=token, token=token, url=url,
                            connecttype=connecttype, audio="true" if audio else "false")
    assert status == 200 and answer["bStatus"], answer


# --- the browser side ---------------------------------------------------------------

# Reads the camera's --stamp time code (tests/fixtures/rtsp_camera.py docstring) from a
# frame drawn on a canvas at its natural size: 40 cells of 16x16 at the top-left.
STAMP_JS = r"""
window.readStamp = function (ctx) {
  var d = ctx.getImageData(0, 0, 640, 16).data, bits = [], i;
  for (i = 0; i < 40; i++) {
    var at = (8 * 640 + 16 * i + 8) * 4;
    bits.push((d[at] + d[at + 1] + d[at + 2]) / 3 > 128 ? 1 : 0);
  }
  if (bits[0] !== 1 || bits[1] !== 0 || bits[38] !== 0 || bits[39] !== 1) return null;
  var value = 0, check = 0, crc = 0;
  for (i = 2; i < 34; i++) value = value * 2 + bits[i];
  for (i = 34; i < 38; i++) crc = crc * 2 + bits[i];
  for (var shift = 0; shift < 32; shift += 4) check ^= Math.floor(value / Math.pow(2, shift)) & 0xF;
  return check === crc ? value : null;
};
window.stampAge = function (stamp, nowMs) {
  var M = 4294967296;
  return ((nowMs % M) - stamp + M) % M;
};
"""

# Wraps window.WebSocket so every h5swsapi socket the player opens is traced without
# touching the player: performance.now() of creation, open, the MIME frame, the init
# segment, the first moof and first video moof, and the newest media time received per
# track (seconds, from tfdt + trun durations and the init segment's mdhd timescales).
TRACE_JS = r"""
(() => {
  if (window.wsTraces) return;
  window.wsTraces = [];
  function boxes(dv, pos, end) {
    var out = [];
    while (pos + 8 <= end) {
      var size = dv.getUint32(pos), type = '';
      for (var i = 4; i < 8; i++) type += String.fromCharCode(dv.getUint8(pos + i));
      if (size < 8 || pos + size > end) break;
      out.push({ type: type, start: pos + 8, end: pos + size });
      pos += size;
    }
    return out;
  }
  function child(dv, b, type) {
    var list = boxes(dv, b.start, b.end);
    for (var i = 0; i < list.length; i++) if (list[i].type === type) return list[i];
    return null;
  }
  function readInit(dv, trace) {
    var moov = boxes(dv, 0, dv.byteLength).filter(function (b) { return b.type === 'moov'; })[0];
    if (!moov) return;
    boxes(dv, moov.start, moov.end).forEach(function (trak) {
      if (trak.type !== 'trak') return;
      var tkhd = child(dv, trak, 'tkhd'), mdia = child(dv, trak, 'mdia');
      var mdhd = mdia && child(dv, mdia, 'mdhd'), hdlr = mdia && child(dv, mdia, 'hdlr');
      if (!tkhd || !mdhd) return;
      var v1 = dv.getUint8(tkhd.start) === 1, id = dv.getUint32(tkhd.start + (v1 ? 20 : 12));
      var m1 = dv.getUint8(mdhd.start) === 1, scale = dv.getUint32(mdhd.start + (m1 ? 20 : 12));
      var kind = '';
      if (hdlr) for (var i = 8; i < 12; i++) kind += String.fromCharCode(dv.getUint8(hdlr.start + i));
      trace.tracks[id] = { scale: scale, kind: kind === 'vide' ? 'video' : 'audio' };
    });
  }
  function readMoof(dv, trace, now) {
    var top = boxes(dv, 0, dv.byteLength), moof = top[0];
    var traf = child(dv, moof, 'traf');
    if (!traf) return;
    var tfhd = child(dv, traf, 'tfhd'), tfdt = child(dv, traf, 'tfdt'), trun = child(dv, traf, 'trun');
    if (!tfhd || !tfdt || !trun) return;
    var track = trace.tracks[dv.getUint32(tfhd.start + 4)];
    if (!track) return;
    var base = dv.getUint8(tfdt.start) === 1 ? dv.getUint32(tfdt.start + 4) * 4294967296 + dv.getUint32(tfdt.start + 8)
                                             : dv.getUint32(tfdt.start + 4);
    var flags = dv.getUint32(trun.start) & 0xFFFFFF, count = dv.getUint32(trun.start + 4);
    var at = trun.start + 8 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0), duration = 0;
    var rec = 4 * ((flags & 0x100 ? 1 : 0) + (flags & 0x200 ? 1 : 0) + (flags & 0x400 ? 1 : 0) + (flags & 0x800 ? 1 : 0));
    if (flags & 0x100) for (var i = 0; i < count; i++) duration += dv.getUint32(at + i * rec);
    var end = (base + duration) / track.scale;
    if (track.kind === 'video') {
      if (!trace.firstVideo) trace.firstVideo = now;
      trace.videoStart = base / track.scale; trace.videoEnd = end; trace.videoAt = now; trace.videoFragments++;
    } else {
      trace.audioEnd = end; trace.audioAt = now; trace.audioFragments++;
    }
  }
  var Native = window.WebSocket;
  class TracedWebSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      var trace = { url: String(url), created: performance.now(), open: 0, mime: 0, init: 0,
                    firstMoof: 0, firstVideo: 0, messages: 0, tracks: {}, videoStart: 0, videoEnd: 0, audioEnd: 0,
                    videoAt: 0, audioAt: 0, videoFragments: 0, audioFragments: 0 };
      window.wsTraces.push(trace);
      this.addEventListener('open', function () { trace.open = performance.now(); });
      this.addEventListener('message', function (ev) {
        var now = performance.now();
        if (typeof ev.data === 'string') return;
        trace.messages++;
        var dv = new DataView(ev.data instanceof ArrayBuffer ? ev.data : new ArrayBuffer(0));
        if (!trace.mime) { trace.mime = now; return; }
        if (dv.byteLength < 8) return;
        var type = String.fromCharCode(dv.getUint8(4), dv.getUint8(5), dv.getUint8(6), dv.getUint8(7));
        try {
          if (type === 'ftyp') { if (!trace.init) trace.init = now; readInit(dv, trace); }
          else if (type === 'moof') { if (!trace.firstMoof) trace.firstMoof = now; readMoof(dv, trace, now); }
        } catch (e) { trace.error = String(e); }
      });
    }
  }
  window.WebSocket = TracedWebSocket;
})()
"""

# Turns a page of the gateway into the bench page: an empty #box and the real player script.
PAGE_JS = r"""
() => new Promise((resolve, reject) => {
  document.title = 'h5ss bench';
  document.body.className = '';
  document.body.style.cssText = 'margin:0;background:#000';
  document.body.innerHTML = '<div id="box"></div>';
  var script = document.createElement('script');
  script.src = '/js/h5splayer.js?bench=' + Date.now();
  script.onload = resolve;
  script.onerror = function () { reject(new Error('cannot load /js/h5splayer.js')); };
  document.head.appendChild(script);
})
"""


def open_bench_page(browser: Any, gw: Gateway, session: str) -> Any:
    """A page on the gateway's own origin holding the real /js/h5splayer.js it serves, the
    stamp reader, the WebSocket tracer (window.wsTraces) and an empty #box; the session is
    in localStorage as login.html puts it.

    It is a real page of the gateway (login.html, emptied), not HTML answered by Playwright:
    Chromium's Local Network Access checks block a synthesized page's WebSocket to
    127.0.0.1 (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS), a served one is loopback.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{gw.url}/login.html", timeout=15_000)
    page.evaluate("s => { try { localStorage.setItem('h5ss.session', s); } catch (e) {} }", session)
    page.evaluate(PAGE_JS)
    page.evaluate(STAMP_JS)
    page.evaluate(TRACE_JS)
    page.wait_for_function("typeof H5sPlayerWS === 'function' && typeof readStamp === 'function'",
                           timeout=10_000)
    return page


__all__ = ["CACHE", "Gateway", "RtspCamera", "add_rtsp", "cpu_percent", "cpu_seconds",
           "launch_chromium", "machine_note", "make_clip", "open_bench_page", "percentile", "rss_mb", "show",
           "source_state", "summary", "wait_until"]
