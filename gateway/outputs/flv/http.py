"""HTTP-FLV and WS-FLV: `GET /{token}.flv`, what flv.js/mpegts.js, ffmpeg and VLC play.

The same URL answers a plain GET with a chunked `video/x-flv` body, and a WebSocket upgrade
with binary frames of the same byte stream. It is served on the gateway's HTTP port(s) and
on `flv.nFLVPort`. The caller shows its session with `session=` (as the REST API); with
`http.bAuth` off it is open. `profile=sub` reads the source's sub stream (its main one when
it has none). Every check comes before the upgrade, so a WS-FLV client that is refused gets
the same HTTP status as an HTTP-FLV one: 401, 400, 404, 503 (no media in time), or 415
(an H.265 stream whose H.264 rendition is off: FLV players take H.264 only).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.config.file import valid_token
from gateway.hub.profile import profile_of
from gateway.hub.rendition import NoRendition, for_client
from gateway.hub.stream import Stream, StreamNotReady
from gateway.outputs.flv.client import FlvClient
from gateway.outputs.flv.feed import FlvFeed
from gateway.web.errors import fail
from gateway.web.request import gateway, session_from
from gateway.web.websocket import ended_session, h5s_socket

log = logging.getLogger(__name__)

PATH = "/{token}.flv"
CLOSED_POLL_SECONDS = 0.5
CORS = {"Access-Control-Allow-Origin": "*"}


def add_routes(app: web.Application) -> None:
    """Before the static files, which would take any other path."""
    app.router.add_get(PATH, flv_stream)


async def flv_stream(request: web.Request) -> web.StreamResponse:
    try:
        session = session_from(request)
    except AuthError as e:
        return _cors(fail(401, f"unauthorized: {e}"))
    try:
        profile = profile_of(request.query.get("profile"))
    except ValueError as e:
        return _cors(fail(400, str(e)))
    token = request.match_info["token"]
    stream = gateway(request).stream(token, profile) if valid_token(token) else None
    if stream is None:
        return _cors(fail(404, f"unknown token {token[:64]!r}"))
    stream.acquire()
    try:
        try:
            params = await stream.wait_ready()
            watched = for_client(stream, params, takes_hevc=False)
            if watched is not stream:
                watched.acquire()
                stream.release()
                stream = watched
                await stream.wait_ready()
        except StreamNotReady as e:
            return _cors(fail(503, str(e)))
        except NoRendition as e:
            return _cors(fail(415, f"{e}; FLV carries H.264 only"))
        with ended_session(request, session) as session_ended:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await _websocket(request, stream, session_ended)
            return await _http(request, stream, session_ended)
    finally:
        stream.release()


async def _http(request: web.Request, stream: Stream, session_ended: asyncio.Future[str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "video/x-flv", "Cache-Control": "no-cache", **CORS})
    response.enable_chunked_encoding()
    await response.prepare(request)
    request.writer.send_headers()  # the client writes its chunks straight into the transport
    transport = request.transport
    if transport is None:
        return response
    client = FlvClient(transport, "http")
    gone = asyncio.create_task(_closed(transport))
    try:
        await _follow(stream, client, [gone, session_ended])
    finally:
        gone.cancel()
    if not transport.is_closing():
        await response.write_eof()
    return response


async def _websocket(request: web.Request, stream: Stream, session_ended: asyncio.Future[str]) -> web.WebSocketResponse:
    ws = h5s_socket()
    ws.headers.update(CORS)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    client = FlvClient(transport, "ws")
    reader = asyncio.create_task(_drain(ws))
    try:
        await _follow(stream, client, [reader, session_ended])
    finally:
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _follow(stream: Stream, client: FlvClient, until: list[asyncio.Future[Any]]) -> None:
    """Feed `client` from the stream's FLV feed until one of `until` is done or the source goes."""
    feed = stream.output(FlvFeed)
    feed.subscribe(client)
    ended = asyncio.ensure_future(client.ended.wait())
    try:
        await asyncio.wait([ended, *until], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        feed.unsubscribe(client)


async def _closed(transport: asyncio.Transport) -> None:
    """Returns once the client has gone: aiohttp does not cancel a handler when it does."""
    while not transport.is_closing():  # noqa: ASYNC110 (no event or callback tells it)
        await asyncio.sleep(CLOSED_POLL_SECONDS)


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends until it closes."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break


def _cors(response: web.Response) -> web.Response:
    response.headers.update(CORS)
    return response
