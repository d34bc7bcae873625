"""Playback of recordings: seek response, start time, gateway CPU per WS playback viewer,
and the time to stitch a download.

A 720p25 2 Mbit/s H.264 + AAC clip (1 s GOP) is cut (ffmpeg, copy) into 10 s fragmented-MP4
segments written into the gateway's store at the contract paths, with their index rows,
as the recorder would leave them. Python WebSocket clients then play ranges of it:

- start: connect → first media fragment;
- seek: H5_SEEK sent → first fragment of the new position (the server's part of a seek;
  the browser adds its decode from the keyframe);
- CPU: the gateway process's CPU with N viewers playing at 1×, above none;
- download: DownloadRecord of the whole minute (remux across 6 files).

Target: seek p50 ≤ 200 ms (the server's part; a seek should feel immediate).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, Gateway, cpu_percent, machine_note, make_clip, show  # noqa: E402
from gateway.store.index import MediaEntry, MediaIndex  # noqa: E402
from tests.fixtures.recordings import store_path  # noqa: E402

SEGMENT = 10
SEGMENTS = 6
TZ = timezone(timedelta(hours=8))
SEEK_TARGET_MS = 200


def h5_time(epoch: float) -> str:
    return quote(datetime.fromtimestamp(epoch, TZ).strftime("%Y-%m-%dT%H%M%S%z"))


def write_store(store: Path, start: float) -> None:
    clip = make_clip(CACHE / "playback-720p.mp4", 1280, 720, 25, SEGMENT * SEGMENTS, 2_000_000)
    entries = []
    for n in range(SEGMENTS):
        at = start + n * SEGMENT
        rel = store_path("cam", at, TZ, f"seg{n}")
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(n * SEGMENT), "-i", str(clip), "-t", str(SEGMENT),
                        "-c", "copy", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(store / rel)],
                       check=True, timeout=60)
        entries.append(MediaEntry("record", "cam", rel, at, SEGMENT, (store / rel).stat().st_size, "+0800"))
    index = MediaIndex(store / "index.sqlite3")
    index.put_many(entries)
    index.close()


class Viewer:
    """One WS playback client that counts what it gets and can time a seek."""

    def __init__(self, url: str):
        self.url = url
        self.first_media: float | None = None
        self.seek_sent = 0.0
        self.seek_media = asyncio.Event()
        self.seek_times: list[float] = []
        self.bytes = 0

    async def run(self, http: aiohttp.ClientSession, until: asyncio.Event) -> None:
        opened = time.monotonic()
        async with http.ws_connect(self.url, max_msg_size=0) as ws:
            self.ws = ws
            reader = asyncio.ensure_future(self._read(ws, opened))
            await until.wait()
            reader.cancel()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, opened: float) -> None:
        seeking, binaries = False, 0
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if json.loads(msg.data).get("type") == "H5_SEEK":
                    seeking = True
                continue
            binaries += 1
            self.bytes += len(msg.data)
            if binaries >= 3 and self.first_media is None:
                self.first_media = time.monotonic() - opened
            if seeking:
                seeking = False
                self.seek_times.append(1000 * (time.monotonic() - self.seek_sent))
                self.seek_media.set()

    async def seek(self, seconds: float) -> None:
        self.seek_media.clear()
        self.seek_sent = time.monotonic()
        await self.ws.send_str(json.dumps({"cmd": "H5_SEEK", "nSeekTime": seconds}))
        await asyncio.wait_for(self.seek_media.wait(), 10)


async def play(gw: Gateway, url: str, viewers: int, seconds: float, seeks: int = 0) -> list[Viewer]:
    until = asyncio.Event()
    clients = [Viewer(url) for _ in range(viewers)]
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.ensure_future(c.run(http, until)) for c in clients]
        await asyncio.sleep(1.0)
        for _ in range(seeks):
            await clients[0].seek(random.uniform(0, SEGMENT * SEGMENTS - 5))
            await asyncio.sleep(0.3)
        if seconds:
            await asyncio.to_thread(lambda: print(f"  {viewers:>3} viewers: gateway CPU "
                                                  f"{cpu_percent(gw.proc.pid, seconds):5.1f} % of one core"))
        until.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return clients


def main() -> None:
    print(machine_note())
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp), [])
        start = float(int(time.time()) - 3600)
        write_store(Path(tmp) / "mediastore", start)
        gw.start()
        try:
            session = gw.login()
            url = (f"{gw.ws_url}/api/v1/h5swsapi?playback=true&token=cam&session={session}"
                   f"&begintime={h5_time(start)}&endtime={h5_time(start + SEGMENT * SEGMENTS)}")
            clients = asyncio.run(play(gw, url, 1, 0, seeks=30))
            show("seek → first fragment", clients[0].seek_times)
            starts = []
            for _ in range(10):
                starts += [1000 * c.first_media for c in asyncio.run(play(gw, url, 1, 0)) if c.first_media]
            show("connect → first fragment", starts)
            print(f"  {0:>3} viewers: gateway CPU {cpu_percent(gw.proc.pid, 5):5.1f} % of one core")
            for n in (1, 10, 30):
                asyncio.run(play(gw, url, n, 8))
            t0 = time.monotonic()
            with urllib.request.urlopen(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={session}"
                                        f"&start={h5_time(start)}&end={h5_time(start + SEGMENT * SEGMENTS)}",
                                        timeout=120) as r:
                size = len(r.read())
            print(f"  download of {SEGMENT * SEGMENTS} s across {SEGMENTS} files: {time.monotonic() - t0:.2f} s, "
                  f"{size / 1e6:.1f} MB")
            p50 = sorted(clients[0].seek_times)[len(clients[0].seek_times) // 2]
            verdict = "PASS" if p50 <= SEEK_TARGET_MS else "MISS"
            print(f"{verdict}: seek p50 {p50:.0f} ms (target ≤ {SEEK_TARGET_MS} ms)")
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
