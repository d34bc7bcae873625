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

If the bare protocol alone costs about as much as the target, no HTTP server in this
process can meet it at this request rate.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from common import cpu_percent, machine_note
from tests.fixtures.net import free_port, wait_port

SERVERS = ("aiohttp app", "aiohttp low-level", "asyncio protocol")


async def serve(kind: str, port: int, size: int) -> None:
    from aiohttp import web

    body = b"x" * size

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(body=body, content_type="video/mp4", headers={"Cache-Control": "no-cache"})

    loop = asyncio.get_running_loop()
    if kind == "aiohttp app":
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between one client's requests")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", type=int, default=25000, help="body bytes (a 200 ms part at 1 Mbit/s)")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve[0], int(args.serve[1]), int(args.serve[2])))
        return
    if args.client:
        port, count, interval, seconds = args.client
        asyncio.run(clients(int(port), int(count), float(interval), float(seconds)))
        return

    print(machine_note())
    print(f"{args.clients} clients, one {args.size} B request each every {args.interval * 1000:.0f} ms")
    print(f"{'server':>18} {'req/s':>6} {'CPU %':>6} {'us/request':>10}")
    settle, procs = 3.0, 4
    for kind in SERVERS:
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port), str(args.size)])
        try:
            wait_port(port, 10)
            total = settle + args.seconds + 1
            sizes = [args.clients // procs + (i < args.clients % procs) for i in range(procs)]
            loaders = [subprocess.Popen([sys.executable, __file__, "--client", str(port), str(n), str(args.interval),
                                         str(total)], stdout=subprocess.PIPE, text=True) for n in sizes if n]
            time.sleep(settle)
            cpu = cpu_percent(server.pid, args.seconds)
            rate = sum(int(p.communicate(timeout=60)[0].split()[-1]) for p in loaders) / total
            print(f"{kind:>18} {rate:>6.0f} {cpu:>6.1f} {cpu * 1e4 / max(rate, 1):>10.0f}")
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
