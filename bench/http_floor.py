"""What a plain HTTP request costs a Python server here: the floor under hls_cpu.py's LL row.

Usage: python3 bench/http_floor.py [--clients 100] [--interval 0.1] [--seconds 10] [--size 25000]

100 LL-HLS clients make about 1000 requests/s (a blocking playlist reload and one 200 ms
part each, per part). This serves the same request rate with bodies of a part's size from
servers that do nothing else, each in its own process, clients in 4 other processes
(aiohttp, keep-alive), and prints each server's CPU (% of one core, /proc):

  aiohttp app        web.Application with one route, no middleware (the gateway's stack, minus our code)
  aiohttp low-level  aiohttp.web.Server: request parsing and response writing only
  asyncio protocol   a bare asyncio.Protocol answering every request with fixed bytes: the
                     event loop and the kernel's TCP work, no HTTP library at all

Then the LL-HLS pattern itself: a bare asyncio.Protocol that imitates an LL-HLS origin
(a new part every 200 ms; blocking playlist requests held and all answered when it
comes; parts of --size bytes; canned bytes, no parsing beyond the request line) against
hls_cpu.py's own LL players. Its requests come in bursts, so the loop serves several per
wake-up and the floor is lower than for evenly spread requests: this is the floor under
hls_cpu.py's LL row, the rest of that row is the camera and the gateway's own work.

Last, the same imitation served from inside a gateway process (gateway.app.serve, in the
same event loop) that pulls hls_cpu.py's camera (640x360 x264, G.711 -> AAC, H5_ALWAYS):
what hls_cpu.py's LL row would cost "in all" if the gateway's own HLS code took no time.
The camera alone is measured first in that process, before the players come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Gateway, RtspCamera, cpu_percent, machine_note
from tests.fixtures.net import free_port, wait_port

SERVERS = ("aiohttp app", "aiohttp low-level", "asyncio protocol")
LL = "asyncio LL imitation"
LL_CAMERA = "imitation + camera"
PART_SECONDS = 0.2
PARTS_PER_SEGMENT = 10


async def serve(kind: str, port: int, size: int, conf: str = "") -> None:
    from aiohttp import web

    body = b"x" * size

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(body=body, content_type="video/mp4", headers={"Cache-Control": "no-cache"})

    loop = asyncio.get_running_loop()
    if kind == LL:
        await serve_ll(port, size)
    elif kind == LL_CAMERA:
        await serve_ll_in_gateway(port, size, conf)
    elif kind == "aiohttp app":
        app = web.Application()
        app.router.add_get("/{token}/{name}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    elif kind == "aiohttp low-level":
        await loop.create_server(web.Server(handler, access_log=None), "127.0.0.1", port)
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n" % size

        class Answer(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport, self.buffer = transport, b""

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                while b"\r\n\r\n" in self.buffer:
                    _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
                    self.transport.writelines((head, body))  # type: ignore[attr-defined]

        await loop.create_server(Answer, "127.0.0.1", port)
    await asyncio.Event().wait()


async def clients(port: int, count: int, interval: float, seconds: float) -> None:
    import aiohttp

    done = 0

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        nonlocal done
        await asyncio.sleep(i * interval / count)
        while True:
            async with http.get(f"http://127.0.0.1:{port}/cam/part1.0.m4s?session=x") as r:
                await r.read()
            done += 1
            await asyncio.sleep(interval)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(count)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
    print(done, flush=True)


async def serve_ll(port: int, size: int) -> None:
    """The LL-HLS imitation: parts on a timer, held playlist requests answered at each."""
    part = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    edge = [100, 0]  # the part to come: msn, index
    held: list[asyncio.Transport] = []

    def playlist() -> bytes:
        msn, index = edge
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{msn - 3}"]
        for back in range(3 * PARTS_PER_SEGMENT, 0, -1):  # the parts of the last 6 s
            m, i = divmod(msn * PARTS_PER_SEGMENT + index - back, PARTS_PER_SEGMENT)
            lines.append(f'#EXT-X-PART:DURATION=0.200,URI="part{m}.{i}.m4s?session=x"')
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{msn}.{index}.m4s?session=x"')
        body = ("\n".join(lines) + "\n").encode()
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: %d\r\n\r\n" % len(
            body) + body

    class Origin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.buffer = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0]
                if b".m3u8" not in line:
                    self.transport.write(part)  # type: ignore[attr-defined]
                elif b"_HLS_msn" in line:
                    held.append(self.transport)  # type: ignore[arg-type]
                else:
                    self.transport.write(playlist())  # type: ignore[attr-defined]

    def new_part() -> None:
        msn, index = divmod(edge[0] * PARTS_PER_SEGMENT + edge[1] + 1, PARTS_PER_SEGMENT)
        edge[:] = [msn, index]
        answer = playlist()
        for transport in held:
            transport.write(answer)
        held.clear()
        loop.call_later(PART_SECONDS, new_part)

    loop = asyncio.get_running_loop()
    await loop.create_server(Origin, "127.0.0.1", port)
    loop.call_later(PART_SECONDS, new_part)
    await asyncio.Event().wait()


async def serve_ll_in_gateway(port: int, size: int, conf: str) -> None:
    """The gateway of `conf` (its sources pulled, its HTTP port open) and the imitation, one loop."""
    from gateway.app import prepare
    from gateway.app import serve as serve_gateway
    from gateway.config.file import load_config

    config = load_config(conf)
    prepare(config)
    await serve_gateway(config)
    await serve_ll(port, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between one client's requests")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", type=int, default=25000, help="body bytes (a 200 ms part at 1 Mbit/s)")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve[0], int(args.serve[1]), int(args.serve[2]), *args.serve[3:]))
        return
    if args.client:
        port, count, interval, seconds = args.client
        asyncio.run(clients(int(port), int(count), float(interval), float(seconds)))
        return

    print(machine_note())
    print(f"{args.clients} clients; evenly spread: one {args.size} B request each every {args.interval * 1000:.0f} ms; "
          f"LL: hls_cpu.py's LL players ({args.size} B parts every {PART_SECONDS * 1000:.0f} ms)")
    print(f"{'server':>20} {'req/s':>6} {'CPU %':>6} {'us/request':>10}")
    settle, procs = 3.0, 4
    sizes = [args.clients // procs + (i < args.clients % procs) for i in range(procs)]
    camera = RtspCamera(width=640, height=360, fps=25, gop=25, bitrate=1000, audio="pcma")  # hls_cpu.py's
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = {"strName": "cpu", "strToken": "cpu", "strUrl": camera.url, "nConnectType": "H5_ALWAYS"}
            conf = Gateway(Path(tmp), sources=[source], system__strLogLevel="warning").conf_path
            for kind in SERVERS + (LL, LL_CAMERA):
                measure(kind, args, sizes, settle, [str(conf)] if kind == LL_CAMERA else [])
    finally:
        camera.stop()


def measure(kind: str, args: argparse.Namespace, sizes: list[int], settle: float, extra: list[str]) -> None:
    """Start one server, load it, print its row."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port), str(args.size), *extra])
    try:
        wait_port(port, 30)
        if kind == LL_CAMERA:
            time.sleep(settle)  # the camera connects
            print(f"{'camera alone':>20} {'':>6} {cpu_percent(server.pid, args.seconds):>6.1f}")
        total = settle + args.seconds + 1
        if kind in (LL, LL_CAMERA):  # {"requests": ...} from each
            command = [sys.executable, str(Path(__file__).with_name("hls_cpu.py")), "--client",
                       f"http://127.0.0.1:{port}", "x", "ll"]
            loaders = [subprocess.Popen(command + [str(n), str(total)], stdout=subprocess.PIPE, text=True)
                       for n in sizes if n]
        else:  # a request count from each
            loaders = [subprocess.Popen([sys.executable, __file__, "--client", str(port), str(n), str(args.interval),
                                         str(total)], stdout=subprocess.PIPE, text=True) for n in sizes if n]
        time.sleep(settle)
        cpu = cpu_percent(server.pid, args.seconds)
        outputs = [p.communicate(timeout=60)[0].strip().splitlines()[-1] for p in loaders]
        done = sum(json.loads(o)["requests"] if kind in (LL, LL_CAMERA) else int(o) for o in outputs)
        rate = done / total
        print(f"{kind:>20} {rate:>6.0f} {cpu:>6.1f} {cpu * 1e4 / max(rate, 1):>10.0f}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
