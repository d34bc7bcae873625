"""CPU and RSS of the gateway for 0/1/10/100 WebSocket fMP4 viewers of one 1080p ~4 Mbps stream.

Usage: python3 bench/ws_viewers.py [--seconds 10] [--counts 1,10,100] [--spread 0] [--codecs h264]
Viewers run in a separate process (aiohttp clients that read and count bytes), so the
numbers are the gateway's own CPU (user+system, % of one core) from /proc. With
`--spread S` the viewers join one by one over S seconds, so they start at different
keyframes and each has its own decode times (every viewer starts at 0): the worst case of
the per-viewer moofs; by default they join at once and share one copy of each message.
`--codecs h264,h265` runs the whole table once per codec, one after the other: the H.265
clip is the H.264 one re-encoded by libx265 at the same bit rate, watched with `hevc=true`
(passed through as it is, as an H.265-capable browser gets it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Gateway, chosen_modes, cpu_percent, machine_note, make_clip, make_h265_clip, rss_mb

CACHE = Path(__file__).resolve().parent / ".cache"


async def viewers(url: str, count: int, seconds: float, spread: float) -> None:
    import aiohttp

    received = [0] * count

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(i * spread / count)
        async with http.ws_connect(url, max_msg_size=0) as ws:
            async for msg in ws:
                received[i] += len(msg.data)

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(count)]
        await asyncio.sleep(spread)
        joined = list(received)  # count from when all have joined
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
    got = [after - before for before, after in zip(joined, received, strict=True)]
    print(json.dumps({"bytes": sum(got), "min_viewer_bytes": min(got)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--counts", default="1,10,100")
    parser.add_argument("--spread", type=float, default=0.0)
    parser.add_argument("--codecs", default="h264", help="h264, h265 or both (comma-separated), in turn")
    parser.add_argument("--client", nargs=4, metavar=("URL", "COUNT", "SECONDS", "SPREAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        url, count, seconds, spread = args.client
        asyncio.run(viewers(url, int(count), float(seconds), float(spread)))
        return
    codecs = chosen_modes(parser, args.codecs, ("h264", "h265"))

    print(machine_note(), flush=True)
    CACHE.mkdir(exist_ok=True)
    clips = {"h264": make_clip(CACHE / "clip-1080p-4M.mp4", 1920, 1080, 25, 20, 4_000_000)}
    if "h265" in codecs:
        clips["h265"] = make_h265_clip(CACHE / "clip-1080p-4M-h265.mp4", clips["h264"], 4_000_000)
    for codec in codecs:
        measure(codec, clips[codec], args)


def measure(codec: str, clip: Path, args: argparse.Namespace) -> None:
    """The table for one clip: CPU and RSS at 0 viewers, then at each count."""
    mbps = clip.stat().st_size * 8 / 20 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp), [{"strName": "bench", "strToken": "bench", "nType": "H5_FILE",
                                  "strUrl": clip.name, "nConnectType": "H5_ALWAYS"}], system__strLogLevel="warning")
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        try:
            session = gw.login()
            pid = gw.proc.pid
            time.sleep(3)
            base = cpu_percent(pid, args.seconds)
            name = {"h264": "H.264", "h265": "H.265"}[codec]
            print(f"stream: {name} 1920x1080 25 fps, {mbps:.1f} Mbit/s (file source, always on), "
                  f"joins over {args.spread:g} s")
            print(f"{'viewers':>8} {'CPU %':>7} {'above 0':>8} {'per viewer':>11} {'MB/s out':>9} {'RSS MB':>7}")
            print(f"{0:>8} {base:>7.1f} {0:>8.1f} {'':>11} {0:>9.1f} {rss_mb(pid):>7.0f}")
            hevc = "true" if codec == "h265" else "false"
            url = f"{gw.ws_url}/api/v1/h5swsapi?token=bench&session={session}&hevc={hevc}"
            for count in [int(c) for c in args.counts.split(",")]:
                client = subprocess.Popen(
                    [sys.executable, __file__, "--client", url, str(count), str(args.seconds + 4), str(args.spread)],
                    stdout=subprocess.PIPE, text=True,
                )
                time.sleep(3 + args.spread)  # connect and settle
                cpu = cpu_percent(pid, args.seconds)
                rss = rss_mb(pid)
                out = json.loads(client.communicate(timeout=60)[0].strip().splitlines()[-1])
                rate = out["bytes"] / (args.seconds + 4) / 1e6
                above = cpu - base
                print(f"{count:>8} {cpu:>7.1f} {above:>8.1f} {above / count:>11.2f} {rate:>9.1f} {rss:>7.0f}")
                time.sleep(2)
        finally:
            gw.stop()

if __name__ == "__main__":
    main()
