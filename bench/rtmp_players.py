"""Gateway CPU for 1 and 100 RTMP players of one 1080p ~4 Mbit/s stream, beside nginx-rtmp
(C) serving the same clip to the same players (the C baseline).

Usage: python3 bench/rtmp_players.py [--seconds 10] [--counts 1,100]
Players run in a separate process: raw sockets that do the handshake, connect, createStream
and play (read with the gateway's own chunk reader until NetStream.Play.Start) and then
only drain and count bytes, so the numbers are the server's own CPU (user+system, % of one
core) from /proc. The gateway serves an always-on file source with logins off; nginx-rtmp
gets the same clip from `ffmpeg -re -stream_loop -1 -c copy -f flv` (its CPU is not counted).
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
from collections.abc import Callable
from pathlib import Path

from common import Gateway, count_bytes, cpu_percent, machine_note, make_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gateway.outputs.rtmp import amf0, commands
from gateway.outputs.rtmp.chunk_reader import ChunkReader
from gateway.outputs.rtmp.message import COMMAND_AMF0
from tests.fixtures.net import free_port
from tests.fixtures.rtmp_origin import RtmpOrigin

CACHE = Path(__file__).resolve().parent / ".cache"


async def play(port: int, name: str, counter: list[int], i: int, playing: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(b"\x03" + bytes(1536))
    s0s1 = await reader.readexactly(1 + 1536)
    await reader.readexactly(1536)  # S2
    writer.write(s0s1[1:])  # C2: S1 echoed
    writer.write(commands.command("connect", 1.0, {"app": "live", "tcUrl": f"rtmp://127.0.0.1:{port}/live"}))
    writer.write(commands.command("createStream", 2.0, None))
    writer.write(commands.command("play", 0.0, None, name, stream_id=1))
    chunks = ChunkReader()
    started = False
    while not started:
        data = await reader.read(1 << 18)
        assert data, "the server closed the connection"
        counter[i] += len(data)
        for message in chunks.feed(data):
            if message.type == COMMAND_AMF0:
                values = amf0.decode(message.payload)
                started |= values[0] == "onStatus" and values[3]["code"] == "NetStream.Play.Start"
    playing[0] += 1
    while data := await reader.read(1 << 18):
        counter[i] += len(data)


async def players(port: int, name: str, count: int, seconds: float) -> None:
    received, playing = [0] * count, [0]
    await count_bytes([play(port, name, received, i, playing) for i in range(count)], received, playing, seconds)


def measure(pid: int, port: int, name: str, counts: list[int], seconds: float) -> dict[int, float]:
    cpu: dict[int, float] = {}
    base = cpu_percent(pid, seconds)
    print(f"{'players':>8} {'CPU %':>7} {'above 0':>8} {'MB/s out':>9} {'slowest MB/s':>13}")
    print(f"{0:>8} {base:>7.1f} {0:>8.1f} {0:>9.1f}")
    for count in counts:
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", str(port), name, str(count), str(seconds + 1)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None and client.stdout.readline().strip() == "playing"
        cpu[count] = cpu_percent(pid, seconds)
        out = json.loads(client.communicate(timeout=60)[0].strip().splitlines()[-1])
        rate, slowest = out["bytes"] / (seconds + 1) / 1e6, out["min_client_bytes"] / (seconds + 1) / 1e6
        print(f"{count:>8} {cpu[count]:>7.1f} {cpu[count] - base:>8.1f} {rate:>9.1f} {slowest:>13.2f}")
        time.sleep(2)
    return cpu


def measure_gateway(clip: Path, counts: list[int], seconds: float) -> dict[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        source = {"strName": "bench", "strToken": "bench", "nType": "H5_FILE", "strUrl": clip.name,
                  "nConnectType": "H5_ALWAYS"}  # fmt: skip
        gw = Gateway(Path(tmp), [source], system__strLogLevel="warning", rtmp__nRTMPPort=port, http__bAuth=False)
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        try:
            assert gw.proc is not None
            time.sleep(3)
            return measure(gw.proc.pid, port, "bench", counts, seconds)
        finally:
            gw.stop()


def measure_nginx(clip: Path, counts: list[int], seconds: float) -> dict[int, float]:
    with RtmpOrigin() as origin:
        publisher = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
             "-f", "flv", origin.url("bench")],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(3)
            assert origin.proc is not None
            return measure(origin.proc.pid, origin.port, "bench", counts, seconds)
        finally:
            publisher.terminate()
            publisher.wait(10)


def above_one(label: str, cpu: dict[int, float], counts: list[int], say: Callable[[str], None]) -> float:
    top = max(counts)
    above = cpu[top] - cpu[1]
    say(f"{label}, {top} players above one: {above:.1f} % of a core ({above / (top - 1):.3f} % per player)")
    return above


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--counts", default="1,100")
    parser.add_argument("--client", nargs=4, metavar=("PORT", "NAME", "COUNT", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, name, count, seconds = args.client
        asyncio.run(players(int(port), name, int(count), float(seconds)))
        return
    print(machine_note(), flush=True)
    CACHE.mkdir(exist_ok=True)
    clip = make_clip(CACHE / "clip-1080p-4M.mp4", 1920, 1080, 25, 20, 4_000_000)
    print(f"stream: H.264 + AAC 1920x1080 25 fps, {clip.stat().st_size * 8 / 20 / 1e6:.1f} Mbit/s (file, always on)")
    counts = [int(c) for c in args.counts.split(",")]
    print("gateway:", flush=True)
    gateway = measure_gateway(clip, counts, args.seconds)
    print("nginx-rtmp:", flush=True)
    nginx = measure_nginx(clip, counts, args.seconds)
    if 1 in counts and len(counts) > 1:
        above_one("gateway", gateway, counts, print)
        above_one("nginx-rtmp", nginx, counts, print)


if __name__ == "__main__":
    main()
