"""Gateway CPU with 100 HLS clients polling one camera (regular v1/v2 and LL-HLS clients).

Usage: python3 bench/hls_cpu.py [--clients 100] [--seconds 15] [--kinds v1,v2,ll] [--width 640 --height 360]

A real RTSP camera (GStreamer, x264, 25 fps, an IDR every second, G.711 audio as a
Hikvision sends; --width/--height, default 640x360 at 1 Mbit/s) is pulled by the gateway
(AddSrcRTSP, H5_ALWAYS) and segmented with the default hls section (2 s segments, 200 ms
parts). The clients run in a separate process (aiohttp), so the numbers are the
gateway's own CPU (user+system, % of one core) from /proc:

  v1, v2  a regular HLS player: the playlist every target duration (half of it when
          nothing changed), each new segment once (TS for v1, fMP4 for v2), starting
          three segments from the end
  ll      an LL-HLS player: a blocking playlist reload for the next part, then that part
          (two requests per 200 ms part)

The baseline is the same camera with no HLS client (demux and G.711 -> AAC only), so
"above" is what HLS costs: one segmenter plus the HTTP serving. Target: 100 polling
clients <= 10 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Gateway, RtspCamera, cpu_percent, live_gateway, machine_note

TOKEN = "cpu"
TARGET_PERCENT = 10.0
PLAYLISTS = {"v1": "/hls/v1/{t}/hls.m3u8", "v2": "/hls/v2/{t}/hls.m3u8", "ll": "/{t}/stream.m3u8"}


class Player:
    """One client's counters; `first` is when its first media item came."""

    def __init__(self) -> None:
        self.requests = self.media = self.bytes = self.errors = 0
        self.first = 0.0

    async def get(self, http, url: str, media: bool = False) -> str:
        async with http.get(url) as r:
            body = await r.read()
        self.requests += 1
        if media:
            self.media += 1
            self.bytes += len(body)
            self.first = self.first or time.monotonic()
        return body.decode(errors="replace")


async def regular_client(http, player: Player, url: str) -> None:
    folder = url.rsplit("/", 1)[0] + "/"
    seen: set[str] = set()
    while True:
        text = await player.get(http, url)
        target = float(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)[1])
        uris = re.findall(r"^(seg\d+\.\w+\?\S+)$", text, re.M)
        new = [u for u in uris if u not in seen][-3 if not seen else None:]
        for uri in new:
            await player.get(http, folder + uri, media=True)
            seen.add(uri)
        await asyncio.sleep(target if new else target / 2)


async def ll_client(http, player: Player, url: str) -> None:
    folder = url.rsplit("/", 1)[0] + "/"
    block = ""
    while True:
        text = await player.get(http, url + block)  # answered once the part asked for exists
        newest = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text)[-1]
        await player.get(http, folder + newest, media=True)
        msn, part = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)', text).groups()
        block = f"&_HLS_msn={msn}&_HLS_part={part}"


async def clients(base: str, session: str, kind: str, count: int, seconds: float) -> None:
    import aiohttp

    url = base + PLAYLISTS[kind].format(t=TOKEN) + f"?session={session}"
    play = ll_client if kind == "ll" else regular_client
    players = [Player() for _ in range(count)]

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(i * 2.0 / count)  # players arrive over two seconds, not in lockstep
        while True:
            try:
                await play(http, players[i], url)
            except (aiohttp.ClientError, TypeError, asyncio.TimeoutError):
                players[i].errors += 1
                await asyncio.sleep(0.5)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(count)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
    now = time.monotonic()
    totals = {k: sum(getattr(p, k) for p in players) for k in ("requests", "media", "bytes", "errors")}
    totals["playing"] = sum(now - p.first for p in players if p.first)
    print(json.dumps(totals), flush=True)


def run_clients(gw: Gateway, session: str, kind: str, count: int, procs: int, seconds: float) -> list:
    """Start `count` clients of one kind, spread over `procs` processes; their Popen objects."""
    sizes = [count // procs + (i < count % procs) for i in range(procs)]
    return [subprocess.Popen([sys.executable, __file__, "--client", gw.url, session, kind, str(n), str(seconds)],
                             stdout=subprocess.PIPE, text=True) for n in sizes if n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="client processes the clients are spread over")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--kinds", default="v1,v2,ll")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--bitrate", type=int, default=1000, help="camera kbit/s")
    parser.add_argument("--client", nargs=5, metavar=("BASE", "SESSION", "KIND", "COUNT", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        base, session, kind, count, seconds = args.client
        asyncio.run(clients(base, session, kind, int(count), float(seconds)))
        return

    print(machine_note())
    camera = RtspCamera(width=args.width, height=args.height, fps=25, gop=25, bitrate=args.bitrate, audio="pcma")
    results = {}
    settle = 8  # clients arrive, and a cold segmenter waits for its first three segments
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with live_gateway(Path(tmp), camera.url, TOKEN, audio=True) as (gw, session):
                pid = gw.proc.pid
                time.sleep(2)
                base_cpu = cpu_percent(pid, args.seconds)
                print(f"camera: {args.width}x{args.height} 25 fps x264 at {args.bitrate} kbit/s, IDR every 1 s, G.711 "
                      f"(AAC for HLS); hls: 2 s segments, 200 ms parts; {args.clients} clients in {args.procs} processes")
                print(f"{'clients':>9} {'CPU %':>6} {'above':>6} {'per client':>10} {'req/s':>6} {'MB/s out':>8} "
                      f"{'items/s/client':>14} {'errors':>6}")
                print(f"{'none':>9} {base_cpu:>6.1f} {0:>6.1f}")
                for kind in [k for k in args.kinds.split(",") if k]:
                    total = settle + args.seconds + 1
                    procs = run_clients(gw, session, kind, args.clients, args.procs, total)
                    time.sleep(settle)
                    cpu = cpu_percent(pid, args.seconds)
                    counts = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
                    out = {k: sum(c[k] for c in counts) for k in counts[0]}
                    above = cpu - base_cpu
                    results[kind] = {"cpu": cpu, "above": above, **out}
                    rate = out["media"] / out["playing"] if out["playing"] else 0.0  # per client, once playing
                    print(f"{kind + ' x' + str(args.clients):>9} {cpu:>6.1f} {above:>6.1f} {above / args.clients:>10.3f} "
                          f"{out['requests'] / total:>6.0f} {out['bytes'] / total / 1e6:>8.2f} {rate:>14.2f} "
                          f"{out['errors']:>6}")
                    time.sleep(3)
    finally:
        camera.stop()
    print("(items/s/client: a regular client needs 0.5 segments/s, an LL client 5 parts/s to keep up)")
    for kind, r in results.items():
        verdict = "PASS" if r["cpu"] <= TARGET_PERCENT else "MISS"
        print(f"{kind}: {args.clients} polling clients {r['cpu']:.1f} % of one core in all "
              f"({r['above']:.1f} above the camera alone; target <= {TARGET_PERCENT:.0f} %): {verdict}")


if __name__ == "__main__":
    main()
