"""Resident memory of the gateway: idle, with 4 live streams each watched over WebSocket, and
whether it stays flat for a minute.

Usage: python3 bench/rss.py [--streams 4] [--settle 25] [--seconds 60] [--every 5]
       experiment: [--malloc-tuned]

Sources are file sources (H5_FILE, H5_ALWAYS) of one 1920x1080 25 fps ~4 Mbit/s H.264 +
AAC clip made by common.make_clip (the same clip as ws_viewers.py), so no camera encoder
competes for the 2 cores; each source demuxes, remuxes and caches its GOP exactly as a
camera source does. They are added through the REST API (AddSrcFile) after the idle
reading. One aiohttp WebSocket viewer per stream runs in a separate process; the "live"
reading is taken --settle s later (after the clip's first loop, when each file source
re-opens its input), then RSS is read every --every s for --seconds s. RSS is the
gateway process's VmRSS from /proc (anonymous + file-backed pages such as the FFmpeg
libraries); RssAnon is shown beside it. Target: RSS with 4 live streams <= 120 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (CACHE, Gateway, cpu_seconds, machine_note, make_clip, rss_mb, source_state,
                    wait_until)

TARGET_MB = 120


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reading(pid: int) -> dict[str, float]:
    return {"rss": rss_mb(pid), "anon": status_kb(pid, "RssAnon") / 1024,
            "file": status_kb(pid, "RssFile") / 1024, "hwm": status_kb(pid, "VmHWM") / 1024,
            "threads": status_kb(pid, "Threads")}


async def viewers(urls: list[str], seconds: float) -> None:
    import aiohttp

    received = [0] * len(urls)

    async def one(i: int, url: str, http: aiohttp.ClientSession) -> None:
        async with http.ws_connect(url, max_msg_size=0) as ws:
            async for msg in ws:
                received[i] += len(msg.data)

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(one(i, url, http)) for i, url in enumerate(urls)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
    print(json.dumps({"bytes": received}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--settle", type=float, default=25,
                        help="seconds from adding the sources to the 'live' reading (past the first "
                             "loop of the 20 s clip, when a file source re-opens its input)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to watch for growth after that")
    parser.add_argument("--every", type=float, default=5, help="seconds between readings")
    parser.add_argument("--malloc-tuned", action="store_true",
                        help="experiment: run the gateway with MALLOC_MMAP_THRESHOLD_ and "
                             "MALLOC_TRIM_THRESHOLD_ at 128 KiB (glibc gives big freed buffers back)")
    parser.add_argument("--client", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(viewers(args.client[1:], float(args.client[0])))
        return

    if args.malloc_tuned:
        os.environ.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    print(machine_note(), flush=True)
    CACHE.mkdir(exist_ok=True)
    clip = make_clip(CACHE / "clip-1080p-4M.mp4", 1920, 1080, 25, 20, 4_000_000)
    mbps = clip.stat().st_size * 8 / 20 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp), system__strLogLevel="warning")
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        client = None
        try:
            pid = gw.proc.pid
            session = gw.login()
            time.sleep(3)
            idle = reading(pid)
            print(f"streams: {args.streams} x file source {clip.name} (1920x1080 25 fps, {mbps:.1f} Mbit/s "
                  f"H.264 + AAC, H5_ALWAYS), 1 WebSocket viewer each"
                  + ("; EXPERIMENT: glibc malloc thresholds 128 KiB" if args.malloc_tuned else ""))
            print(f"{'when':<26} {'RSS MB':>7} {'anon MB':>8} {'file MB':>8} {'threads':>8}")

            def line(label: str, r: dict[str, float]) -> None:
                print(f"{label:<26} {r['rss']:>7.1f} {r['anon']:>8.1f} {r['file']:>8.1f} {r['threads']:>8.0f}",
                      flush=True)

            line("idle, no sources", idle)
            tokens = [f"s{i}" for i in range(args.streams)]
            for token in tokens:
                status, answer = gw.api("AddSrcFile", session=session, name=token, token=token,
                                        url=clip.name, connecttype="H5_ALWAYS")
                assert status == 200 and answer["bStatus"], answer
            if not wait_until(lambda: all(source_state(gw, session, t)["bOnline"] for t in tokens), 20):
                raise SystemExit(f"sources did not come online:\n{gw.log()}")
            urls = [f"{gw.ws_url}/api/v1/h5swsapi?token={t}&session={session}" for t in tokens]
            watch = args.settle + args.seconds + 5
            client = subprocess.Popen([sys.executable, __file__, "--client", str(watch), *urls],
                                      stdout=subprocess.PIPE, text=True)
            t0 = time.monotonic()
            live: dict[str, float] | None = None
            window: list[tuple[float, float]] = []  # (s since the live reading, RSS MB)
            cpu0 = 0.0
            every_reading: list[float] = []
            for at in [args.every * i for i in range(1, int((args.settle + args.seconds) / args.every) + 1)]:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                r = reading(pid)
                every_reading.append(r["rss"])
                if live is None and at >= args.settle:
                    live, cpu0, t_live = r, cpu_seconds(pid), time.monotonic()
                    line(f"{args.streams} streams live (+{at:.0f} s)", r)
                    window.append((0.0, r["rss"]))
                    continue
                line(f"  +{at:4.0f} s", r)
                if live is not None:
                    window.append((time.monotonic() - t_live, r["rss"]))
            assert live is not None
            end = reading(pid)
            cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t_live)
            out = json.loads(client.communicate(timeout=60)[0].strip().splitlines()[-1])
            client = None
            per_viewer = [b * 8 / watch / 1e6 for b in out["bytes"]]
            samples = [mb for _, mb in window]
            third = max(1, len(samples) // 3)
            drift = statistics.median(samples[-third:]) - statistics.median(samples[:third])
            print(f"\nviewers received {min(per_viewer):.1f}-{max(per_viewer):.1f} Mbit/s each; "
                  f"gateway CPU {cpu:.0f} % of one core while live")
            print(f"RSS idle {idle['rss']:.1f} MB; {args.streams} streams live {live['rss']:.1f} MB "
                  f"(+{live['rss'] - idle['rss']:.1f} MB over idle, {args.settle:.0f} s after adding them)")
            print(f"after {window[-1][0]:.0f} s more: {end['rss']:.1f} MB, delta {end['rss'] - live['rss']:+.1f} MB, "
                  f"range {min(samples):.1f}-{max(samples):.1f} MB, "
                  f"median of the last third - first third {drift:+.1f} MB "
                  f"(peak VmHWM {end['hwm']:.1f} MB)")
            worst = max(every_reading)
            verdict = "PASS" if worst <= TARGET_MB else "MISS"
            print(f"RSS with {args.streams} live streams, highest reading {worst:.1f} MB since adding them "
                  f"(target <= {TARGET_MB} MB): {verdict}")
            flat = abs(drift) <= 3
            print(f"memory over the last {window[-1][0]:.0f} s: {'flat' if flat else 'NOT flat'} "
                  f"(medians of the first and last third of the readings within 3 MB)")
        finally:
            if client is not None:
                client.kill()
                client.wait()
            gw.stop()


if __name__ == "__main__":
    main()
