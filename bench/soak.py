"""Soak: 16 on-demand cameras, a viewer joining and one leaving every second over WS fMP4,
WebRTC (WHEP) and HLS, for N minutes; the gateway's RSS, fds, threads and event-loop lag
printed each minute; then every viewer leaves and the sources must go idle, with fds and
threads back where they started.

Usage: python3 bench/soak.py [--minutes 10] [--viewers 24] [--cameras 16]

The cameras are GStreamer RTSP servers (tests/fixtures/rtsp_camera.py, 640x360 25 fps H.264
+ PCMA, like a Hikvision's sub stream); four camera processes serve the 16 sources, four
RTSP sessions each (the gateway sees 16 cameras: 16 inputs, 16 hubs). The viewers are real
clients in this process: aiohttp WebSockets on h5swsapi that read every byte, aiortc WHEP
peers that decode what they get, and HLS v2 players that fetch each new segment. Once
`--viewers` are connected, every second the oldest leaves and a new one joins (protocols
in turn, tokens in turn), so the load is the same from minute to minute and the figures
can be compared.

"Start" is measured after a warm-up (one viewer of each protocol, then idle), because the
first WebRTC peer loads aiortc and the first thread-pool jobs make their threads: those
stay, and are not a leak. The cold figures are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import Gateway, RtspCamera, cpu_seconds, machine_note, rss_mb

PROTOCOLS = ("ws", "webrtc", "hls")
LINGER = 5  # source.nOnDemandLingerSec for the soak: idle comes soon after the last viewer


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_files(pid: int) -> Counter[str]:
    """What the process's fds point at (sockets and pipes by kind only)."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kinds[re.sub(r"\[\d+\]$", "", target)] += 1
    return kinds


def idle_pool_workers(pid: int) -> int:
    """Idle ThreadPoolExecutor workers of the process, as py-spy names them (0 without py-spy)."""
    if not shutil.which("py-spy"):
        return 0
    dump = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return len(re.findall(r'^Thread \d+ \(idle\): "[^"]*"\n\s+_worker \(concurrent/futures/thread\.py', dump, re.M))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


class Viewers:
    """The clients: each viewer is a task that plays until cancelled; counts what they got."""

    def __init__(self, gw: Gateway, session: str):
        self.gw, self.session = gw, session
        self.bytes: Counter[str] = Counter()
        self.frames = 0
        self.errors: Counter[str] = Counter()
        self.started: Counter[str] = Counter()
        self.http: Any = None

    async def play(self, protocol: str, token: str) -> None:
        self.started[protocol] += 1
        try:
            await getattr(self, protocol)(token)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a viewer that fails is counted, and the soak goes on
            self.errors[f"{protocol}: {type(e).__name__}: {str(e)[:80]}"] += 1

    async def ws(self, token: str) -> None:
        url = f"{self.gw.ws_url}/api/v1/h5swsapi?token={token}&session={self.session}"
        async with self.http.ws_connect(url, max_msg_size=0) as ws:

            async def keepalive() -> None:
                while True:
                    await ws.send_str('{"cmd":"H5_KEEPALIVE"}')
                    await asyncio.sleep(1)

            beat = asyncio.ensure_future(keepalive())
            try:
                async for msg in ws:
                    self.bytes["ws"] += len(msg.data)
            finally:
                beat.cancel()
            raise RuntimeError(f"socket closed by the gateway ({ws.close_code})")

    async def webrtc(self, token: str) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection()
        location = None
        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {self.session}"}
            async with self.http.post(
                f"{self.gw.url}/{token}/whep", data=pc.localDescription.sdp, headers=headers
            ) as r:
                answer = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"WHEP {r.status}: {answer[:80]}")
                location = r.headers["Location"]
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            track = pc.getTransceivers()[0].receiver.track
            while True:
                await track.recv()
                self.frames += 1
        finally:
            if location is not None:
                try:
                    async with self.http.delete(
                        f"{self.gw.url}{location}", headers={"Authorization": f"Bearer {self.session}"}
                    ):
                        pass
                except Exception:
                    pass
            await pc.close()

    async def hls(self, token: str) -> None:
        base = f"{self.gw.url}/hls/v2/{token}/"
        seen: set[str] = set()
        while True:
            async with self.http.get(f"{base}hls.m3u8?session={self.session}") as r:
                if r.status != 200:
                    raise RuntimeError(f"playlist {r.status}")
                playlist = await r.text()
            uris = re.findall(r'URI="([^"]+)"', playlist) + [
                line for line in playlist.splitlines() if line and not line.startswith("#")
            ]
            for uri in uris:
                if uri not in seen:
                    seen.add(uri)
                    async with self.http.get(base + uri) as r:
                        self.bytes["hls"] += len(await r.read())
            await asyncio.sleep(1)


async def scrape_lag(gw: Gateway, session: str, http: Any) -> str:
    """h5ss_event_loop_lag_seconds from /metrics, in ms, or n/a when the gateway has no such metric."""
    try:
        async with http.get(f"{gw.url}/metrics?session={session}") as r:
            text = await r.text() if r.status == 200 else ""
    except Exception:
        text = ""
    m = re.search(r"^h5ss_event_loop_lag_seconds(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M)
    return f"{float(m.group(1)) * 1000:.1f}" if m else "n/a"


def online(gw: Gateway, session: str) -> int:
    status, answer = gw.api("GetSrc", session=session)
    assert status == 200, answer
    return sum(1 for s in answer["src"] if s["bOnline"])


async def wait_idle(gw: Gateway, session: str, timeout: float) -> float | None:
    """Seconds until no source is online, or None at the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await asyncio.to_thread(online, gw, session) == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    return None


async def soak(gw: Gateway, session: str, tokens: list[str], minutes: float, count: int) -> bool:
    import aiohttp

    pid = gw.proc.pid
    viewers = Viewers(gw, session)
    cold = (rss_mb(pid), fds(pid), threads(pid))
    async with aiohttp.ClientSession() as http:  # warm-up: one viewer of each protocol for 8 s
        viewers.http = http
        warm = [asyncio.ensure_future(viewers.play(p, tokens[0])) for p in PROTOCOLS]
        await asyncio.sleep(8)
        for task in warm:
            task.cancel()
        await asyncio.gather(*warm, return_exceptions=True)
    if await wait_idle(gw, session, LINGER + 30) is None:
        print("warm-up: the source did not go idle")
        return False
    await asyncio.sleep(3)
    start = (rss_mb(pid), fds(pid), threads(pid))
    start_files = open_files(pid)
    print(f"start (cold): RSS {cold[0]:.0f} MB, {cold[1]} fds, {cold[2]} threads")
    print(f"start (after warm-up, idle): RSS {start[0]:.0f} MB, {start[1]} fds, {start[2]} threads")
    async with aiohttp.ClientSession() as http:
        viewers.http = http
        print(
            f"{count} viewers at a time, one joining and the oldest leaving each second "
            f"({', '.join(PROTOCOLS)} in turn over {len(tokens)} cameras)"
        )
        print(
            f"{'min':>4} {'RSS MB':>7} {'fds':>5} {'thr':>4} {'lag ms':>7} {'CPU %':>6} {'online':>6} "
            f"{'joins':>6} {'WS MB':>7} {'HLS MB':>7} {'RTC fr':>7} {'errors':>6}"
        )

        playing: list[asyncio.Future[None]] = []
        turns = zip(itertools.cycle(PROTOCOLS), itertools.cycle(tokens))
        t0 = time.monotonic()
        cpu0, next_print, minute = cpu_seconds(pid), t0 + 60, 0
        rows: list[tuple[float, int]] = []
        while minute < minutes:
            protocol, token = next(turns)
            playing.append(asyncio.ensure_future(viewers.play(protocol, token)))
            if len(playing) > count:
                oldest = playing.pop(0)
                oldest.cancel()
            await asyncio.sleep(1)
            now = time.monotonic()
            if now >= next_print:
                minute += 1
                cpu = 100 * (cpu_seconds(pid) - cpu0) / 60
                cpu0, next_print = cpu_seconds(pid), next_print + 60
                row = (rss_mb(pid), fds(pid), threads(pid))
                rows.append(row[:2])
                lag = await scrape_lag(gw, session, http)
                await asyncio.to_thread(gw.api, "Keepalive", session=session)  # a session lives 600 s without
                up = await asyncio.to_thread(online, gw, session)
                print(
                    f"{minute:>4} {row[0]:>7.0f} {row[1]:>5} {row[2]:>4} {lag:>7} {cpu:>6.1f} {up:>6} "
                    f"{sum(viewers.started.values()):>6} {viewers.bytes['ws'] / 1e6:>7.1f} "
                    f"{viewers.bytes['hls'] / 1e6:>7.1f} {viewers.frames:>7} {sum(viewers.errors.values()):>6}",
                    flush=True,
                )

        for task in playing:
            task.cancel()
        await asyncio.gather(*playing, return_exceptions=True)
    # The client session is closed now: its pooled keep-alive connections no longer hold
    # sockets on the gateway's side.
    idle_after = await wait_idle(gw, session, LINGER + 60)
    await asyncio.sleep(3)  # closing sockets and threads ending
    end = (rss_mb(pid), fds(pid), threads(pid))
    now_files = open_files(pid)
    more_files, fewer_files = now_files - start_files, start_files - now_files
    pool_workers = idle_pool_workers(pid) if end[2] != start[2] else 0

    for error, n in viewers.errors.most_common(8):
        print(f"  viewer error x{n}: {error}")
    print(
        f"all left: sources idle after {idle_after:.1f} s"
        if idle_after is not None
        else "all left: sources NOT idle after the linger"
    )
    print(
        f"end: RSS {end[0]:.0f} MB, {end[1]} fds ({end[1] - start[1]:+d}), "
        f"{end[2]} threads ({end[2] - start[2]:+d}) vs the start after warm-up"
    )
    if more_files or fewer_files:
        print(f"  fds more than at the start: {dict(more_files)}, fewer: {dict(fewer_files)}")
    steady = rows[1:] if len(rows) > 1 else rows
    if pool_workers:
        print(f"  of the threads, {pool_workers} are idle thread-pool workers (made on first use and kept: not a leak)")
    ok = idle_after is not None and end[1] == start[1] and end[2] - pool_workers <= start[2]
    if steady:
        for name, i in (("RSS", 0), ("fds", 1)):
            values = [r[i] for r in steady]
            middle = statistics.median(values)
            off = max(abs(v - middle) for v in values) / max(1e-9, middle) * 100
            first = 2 if len(rows) > 1 else 1
            print(
                f"{name} from minute {first} to {len(rows)}: min {min(values):.0f}, median {middle:.0f}, "
                f"max {max(values):.0f}: within ±{off:.1f} % of the median (target ±5 %)"
            )
    print("PASS" if ok else "FAIL: sources not idle or counts not back to the start")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--viewers", type=int, default=24, help="viewers connected at a time")
    parser.add_argument("--cameras", type=int, default=16)
    args = parser.parse_args()
    print(machine_note(), flush=True)
    processes = 4
    cameras = [
        RtspCamera(mount=f"cam{i}", audio="pcma", pattern=pattern)
        for i, pattern in zip(range(processes), ("smpte", "ball", "smpte75", "colors"), strict=True)
    ]
    tokens = [f"cam{i:02d}" for i in range(args.cameras)]
    sources = [
        {
            "strName": t,
            "strToken": t,
            "nType": "H5_STREAM",
            "strUrl": cameras[i % processes].url,
            "nConnectType": "H5_ONDEMAND",
            "bEnableAudio": True,
        }
        for i, t in enumerate(tokens)
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(
                Path(tmp),
                sources,
                system__strLogLevel="warning",
                hls__nHLSSinkType="H5_HLS_V2",
                source__nOnDemandLingerSec=LINGER,
            )
            gw.start()
            try:
                session = gw.login()
                ok = asyncio.run(soak(gw, session, tokens, args.minutes, args.viewers))
            finally:
                gw.stop()
                errors = [line for line in gw.log().splitlines() if "Traceback" in line or "ERROR" in line]
                print(f"gateway log: {len(gw.log().splitlines())} lines, {len(errors)} errors/tracebacks")
                for line in errors[:5]:
                    print("  " + line[:160])
    finally:
        for camera in cameras:
            camera.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
