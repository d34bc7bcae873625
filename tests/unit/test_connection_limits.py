"""Connection limits and timeouts of the gateway's listeners, on the real serve() in this
process (its timeouts shortened) and raw loopback sockets: idle and slow connections,
silent WebSockets and the connection cap. (Slow bodies and the cap under a real fd limit:
tests/test_limits.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway import app as gateway_app
from gateway.config.file import load_config
from gateway.web import front, websocket
from tests.conftest import FILE_SOURCE
from tests.fixtures.gateway import Gateway, md5
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() runs in run_async's thread (Playwright's sync API holds the main thread's
    loop in a full run), where signal handlers cannot be set."""
    real = web.AppRunner
    monkeypatch.setattr(web, "AppRunner", lambda app, **options: real(app, **{**options, "handle_signals": False}))


@contextlib.asynccontextmanager
async def serving(root: Path) -> AsyncIterator[tuple[int, web.AppRunner]]:
    conf = Gateway(root, [dict(FILE_SOURCE, strUrl="never-opened.mp4")])  # writes conf/h5ss.conf; no process
    config = load_config(conf.conf_path)
    gateway_app.prepare(config)
    runner = await gateway_app.serve(config)
    try:
        yield conf.port, runner
    finally:
        await runner.cleanup()


async def closed_after(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the server closed the connection (whatever it sent before)."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while await reader.read(65536):
            pass
    return time.monotonic() - start


async def dribble(writer: asyncio.StreamWriter, data: bytes | bytearray, interval: float) -> None:
    """Send `data` a byte at a time (a bytearray is left with what was not sent)."""
    for byte in bytes(data):
        writer.write(bytes([byte]))
        if isinstance(data, bytearray):
            del data[0]
        await asyncio.sleep(interval)


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    return int(head.split(b" ")[1]), await reader.readexactly(length)


def test_idle_and_slow_heads_are_closed_on_the_front_and_on_aiohttp(tmp_path, monkeypatch):
    """A head sent a byte at a time is closed after HEAD_TIMEOUT on the front; on a
    connection handed to aiohttp, after the keep-alive time set on the AppRunner (aiohttp's
    own is 3630 s), however many bytes keep coming."""
    monkeypatch.setattr(front, "SWEEP_INTERVAL", 0.1)
    monkeypatch.setattr(front, "HEAD_TIMEOUT", 0.5)
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 2.0)
    monkeypatch.setattr(gateway_app, "KEEPALIVE_TIMEOUT", 2.0)
    slow_head = b"GET /token1/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100

    async def main() -> None:
        async with serving(tmp_path) as (port, _):
            front_reader, front_writer = await asyncio.open_connection("127.0.0.1", port)
            handed_reader, handed_writer = await asyncio.open_connection("127.0.0.1", port)
            handed_writer.write(b"GET /api/v1/GetSrc HTTP/1.1\r\nHost: x\r\n\r\n")  # aiohttp's from here
            assert (await response(handed_reader))[0] == 401
            dribbling = [
                asyncio.create_task(dribble(front_writer, slow_head, 0.05)),
                asyncio.create_task(dribble(handed_writer, slow_head, 0.05)),
            ]
            on_front, on_aiohttp = await asyncio.gather(closed_after(front_reader, 5), closed_after(handed_reader, 5))
            for task in dribbling:
                task.cancel()
            assert on_front < 1.2, on_front
            assert 1.5 < on_aiohttp < 3.5, on_aiohttp

    run_async(main)


def test_the_connection_cap_closes_idle_connections_for_new_ones_or_refuses_at_once(tmp_path, monkeypatch):
    """At the cap a newcomer takes an idle connection's place; while none has been idle a
    second, it gets a 503 and a close straight away; the busy ones are left alone."""
    monkeypatch.setattr(front, "EVICTABLE_IDLE", 0.5)

    async def main() -> None:
        async with serving(tmp_path) as (port, runner):
            cap = next(iter(runner.sites)).cap  # type: ignore[attr-defined]
            cap.limit = 6
            busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap.limit - 1)]
            await asyncio.sleep(0.2)
            late_reader, _ = await asyncio.open_connection("127.0.0.1", port)
            status, answer = await asyncio.wait_for(response(late_reader), 2)
            assert status == 503 and json.loads(answer)["strCode"].startswith("too many connections")
            assert await closed_after(late_reader, 2) < 1
            await asyncio.sleep(0.5)
            busy_writer.write(b"GET /hls/v1/token1/seg0.ts HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await response(busy_reader))[0] == 401  # active: never the one closed
            new_reader, new_writer = await asyncio.open_connection("127.0.0.1", port)
            new_writer.write(b"GET /hls/v1/token1/seg0.ts HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(response(new_reader), 2))[0] == 401
            oldest_reader = idle[0][0]
            assert await closed_after(oldest_reader, 1) < 1  # the longest idle made room
            busy_writer.write(b"GET /hls/v1/token1/seg0.ts HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await response(busy_reader))[0] == 401
            for _, writer in [*idle, (busy_reader, busy_writer), (new_reader, new_writer)]:
                writer.close()

    run_async(main)


def test_silent_websockets_are_closed_live_ones_kept(tmp_path, monkeypatch):
    """A socket that sends nothing and answers no ping is closed after HEARTBEAT * 1.5; one
    that sends keepalives, or only answers pings (a browser's background tab), stays."""
    monkeypatch.setattr(websocket, "HEARTBEAT", 0.4)

    async def main() -> None:
        async with serving(tmp_path) as (port, _), aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/v1/Login?user=admin&password={md5('12345')}") as r:
                session = (await r.json())["strSession"]
            base = f"ws://127.0.0.1:{port}/api/v1/"
            query = f"?token=token1&session={session}"

            async def outcome(path: str, autoping: bool, keepalive: bool) -> str:
                async with http.ws_connect(base + path + query, autoping=autoping, heartbeat=None) as ws:
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline:
                        if keepalive:
                            await ws.send_str('{"type":"keepalive"}')
                        try:
                            msg = await ws.receive(timeout=0.1)
                        except TimeoutError:
                            continue
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            return "closed"
                    return "open"

            results = await asyncio.gather(
                outcome("h5swscmnapi", autoping=False, keepalive=False),
                outcome("h5srtcapi", autoping=False, keepalive=False),
                outcome("h5swscmnapi", autoping=False, keepalive=True),
                outcome("h5srtcapi", autoping=True, keepalive=False),
            )
            assert results == ["closed", "closed", "open", "open"]

    run_async(main)
