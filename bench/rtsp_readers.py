"""Gateway CPU for 1 and 100 RTSP-over-TCP readers of one 1080p ~4 Mbit/s stream, beside
ffmpeg's own RTSP muxer sending the same clip to one reader (the C baseline per reader).

Usage: python3 bench/rtsp_readers.py [--seconds 10] [--counts 1,100]
Readers run in a separate process: raw sockets that do DESCRIBE, SETUP (interleaved, every
track), PLAY and then only drain and count bytes, so the numbers are the gateway's own CPU
(user+system, % of one core) from /proc. The baseline: `ffmpeg -re -stream_loop -1 -i clip
-c copy -f rtsp rtsp://...` pushing to an `ffmpeg -rtsp_flags listen` reader; its sending
process does what serving one reader does (packetize, write RTP over TCP) plus reading the
file. FFmpeg's RTSP muxer only pushes (ANNOUNCE/RECORD): it cannot serve readers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Gateway, count_bytes, cpu_percent, machine_note, make_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.net import free_port

CACHE = Path(__file__).resolve().parent / ".cache"
AUTH = "Basic " + base64.b64encode(b"admin:12345").decode()


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lines: list[str]) -> str:
    writer.write(("\r\n".join([*lines, f"Authorization: {AUTH}"]) + "\r\n\r\n").encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = re.search(r"Content-Length: (\d+)", head)
    body = (await reader.readexactly(int(length.group(1)))).decode() if length else ""
    if head.startswith("RTSP/1.0 503"):
        writer.close()
        raise Busy
    assert head.startswith("RTSP/1.0 200"), head
    return head + body


class Busy(Exception):
    """503: the gateway's password checks are all taken (Login's limit per address); try again."""


async def read_one(url: str, counter: list[int], i: int, playing: list[int]) -> None:
    while True:
        try:
            return await play(url, counter, i, playing)
        except Busy:
            await asyncio.sleep(0.2)


async def play(url: str, counter: list[int], i: int, playing: list[int]) -> None:
    host, port = re.match(r"rtsp://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    sdp = await request(reader, writer, [f"DESCRIBE {url} RTSP/1.0", "CSeq: 1", "Accept: application/sdp"])
    session = ""
    for n, track in enumerate(re.findall(r"a=control:(trackID=\d+)", sdp)):
        lines = [f"SETUP {url}/{track} RTSP/1.0", f"CSeq: {2 + n}",
                 f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * n}-{2 * n + 1}"]  # fmt: skip
        answer = await request(reader, writer, [*lines, *([f"Session: {session}"] if session else [])])
        session = re.search(r"Session: ([^;\r]+)", answer).group(1)  # type: ignore[union-attr]
    await request(reader, writer, [f"PLAY {url} RTSP/1.0", "CSeq: 9", f"Session: {session}"])
    playing[0] += 1
    while data := await reader.read(1 << 18):
        counter[i] += len(data)


async def readers(url: str, count: int, seconds: float) -> None:
    received, playing = [0] * count, [0]
    await count_bytes([read_one(url, received, i, playing) for i in range(count)], received, playing, seconds)


def reader_process(url: str, count: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--client", url, str(count), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def measure_gateway(clip: Path, counts: list[int], seconds: float) -> dict[int, float]:
    cpu: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        source = {"strName": "bench", "strToken": "bench", "nType": "H5_FILE", "strUrl": clip.name,
                  "nConnectType": "H5_ALWAYS"}  # fmt: skip
        gw = Gateway(Path(tmp), [source], system__strLogLevel="warning", rtsp__nRTSPPort=port)
        shutil.copy(clip, gw.root / "media" / clip.name)
        gw.start()
        try:
            pid = gw.proc.pid
            time.sleep(3)
            base = cpu_percent(pid, seconds)
            print(f"{'readers':>8} {'CPU %':>7} {'above 0':>8} {'MB/s out':>9} {'slowest MB/s':>13}")
            print(f"{0:>8} {base:>7.1f} {0:>8.1f} {0:>9.1f}")
            for count in counts:
                client = reader_process(f"rtsp://127.0.0.1:{port}/bench", count, seconds + 1)
                assert client.stdout is not None and client.stdout.readline().strip() == "playing"
                cpu[count] = cpu_percent(pid, seconds)
                out = json.loads(client.communicate(timeout=60)[0].strip().splitlines()[-1])
                rate, slowest = out["bytes"] / (seconds + 1) / 1e6, out["min_client_bytes"] / (seconds + 1) / 1e6
                print(f"{count:>8} {cpu[count]:>7.1f} {cpu[count] - base:>8.1f} {rate:>9.1f} {slowest:>13.2f}")
                time.sleep(2)
        finally:
            gw.stop()
    return cpu


def measure_ffmpeg(clip: Path, seconds: float) -> float:
    """CPU of ffmpeg's RTSP muxer sending the clip (-re, copy) over TCP to one reader."""
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/x"
    sink = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-rtsp_flags", "listen", "-i", url, "-c", "copy", "-f", "null", "-"],
        stdin=subprocess.DEVNULL,
    )
    time.sleep(1)
    muxer = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
         "-f", "rtsp", "-rtsp_transport", "tcp", url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)
        return cpu_percent(muxer.pid, seconds)
    finally:
        for proc in (muxer, sink):
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--counts", default="1,100")
    parser.add_argument("--client", nargs=3, metavar=("URL", "COUNT", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        url, count, seconds = args.client
        asyncio.run(readers(url, int(count), float(seconds)))
        return
    print(machine_note(), flush=True)
    CACHE.mkdir(exist_ok=True)
    clip = make_clip(CACHE / "clip-1080p-4M.mp4", 1920, 1080, 25, 20, 4_000_000)
    print(f"stream: H.264 + AAC 1920x1080 25 fps, {clip.stat().st_size * 8 / 20 / 1e6:.1f} Mbit/s (file, always on)")
    counts = [int(c) for c in args.counts.split(",")]
    cpu = measure_gateway(clip, counts, args.seconds)
    ffmpeg = measure_ffmpeg(clip, args.seconds)
    print(f"ffmpeg RTSP muxer, one reader: {ffmpeg:.1f} % of a core")
    if 1 in cpu and len(counts) > 1:
        top = max(counts)
        above = cpu[top] - cpu[1]
        print(f"gateway, {top} readers above one: {above:.1f} % of a core ({above / (top - 1):.3f} % per reader; "
              f"ffmpeg per reader {ffmpeg:.2f} %)")  # fmt: skip
        print(f"{'PASS' if above <= 5 else 'MISS'}: {top} readers above one {above:.1f} % (target <= 5 %)")


if __name__ == "__main__":
    main()
