"""The h5s player's live-video WebSocket: /api/v1/h5swsapi (PROTOCOLS.md §2).

With `playback=true` the same path plays recordings instead (playback/socket.py).

First binary frame: the MIME string for addSourceBuffer; then the init segment; then
one moof+mdat per frame from the stream's shared fMP4 feed. Problems are reported by
closing with a readable reason (and a text event just before), since a browser cannot
read the body of a refused upgrade.

A client that does not take H.265 (`hevc=false`, the default) of an H.265 stream gets the
stream's H.264 rendition (hub/rendition.py), or is refused when the source has it off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway.hub.rendition import NoRendition, for_client
from gateway.hub.stream import Stream, StreamNotReady
from gateway.outputs.ws_fmp4.feed import Fmp4Feed
from gateway.outputs.ws_fmp4.viewer import TransportViewer
from gateway.playback.socket import playback_socket
from gateway.web.websocket import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_READY,
    CLOSE_POLICY,
    client_message,
    close_ended,
    ended_session,
    refuse,
    stream_socket,
)

log = logging.getLogger(__name__)

KNOWN_COMMANDS = ("H5_KEEPALIVE", "H5_START", "H5_PAUSE", "H5_RESUME", "H5_SEEK", "H5_SPEED")


async def h5swsapi(request: web.Request) -> web.WebSocketResponse:
    if request.query.get("playback") == "true":
        return await playback_socket(request)
    ws, stream, session = await stream_socket(request)
    transport = request.transport
    if stream is None or transport is None:  # refused, or the client left during the upgrade
        return ws

    hevc = request.query.get("hevc", "false")
    if hevc not in ("true", "false"):
        return await refuse(ws, CLOSE_BAD_REQUEST, f"hevc must be true or false, not {hevc[:16]!r}")
    with ended_session(request, session) as session_ended:
        await _play(ws, stream, transport, hevc == "true", request.query.get("audio") == "false", session_ended)
    return ws


async def _play(
    ws: web.WebSocketResponse,
    stream: Stream,
    transport: asyncio.Transport,
    hevc: bool,
    video_only: bool,
    session_ended: asyncio.Future[str],
) -> None:
    """Send the stream until the client leaves, the source is deleted or the session ends.
    `video_only` (`audio=false`, ours): a muted player gets video only, and with it no wait
    for the browser's audio buffer (~200 ms lower latency), and the tiles of a grid decode less."""
    stream.acquire()
    reader = asyncio.create_task(read_commands(ws))
    viewer = TransportViewer(transport, video_only=video_only)
    feed: Fmp4Feed | None = None
    try:
        try:
            params = await stream.wait_ready()
            watched = for_client(stream, params, hevc)
            if watched is not stream:
                watched.acquire()
                stream.release()
                stream = watched
                params = await stream.wait_ready()
        except StreamNotReady as e:
            await refuse(ws, CLOSE_NOT_READY, str(e))
            return
        except NoRendition as e:
            await refuse(ws, CLOSE_POLICY, str(e))
            return
        feed = stream.output(Fmp4Feed)
        await ws.send_bytes((params.without_audio() if video_only else params).mime.encode("ascii"))
        # From here the feed writes fragments straight into this socket.
        feed.subscribe(viewer)
        ended = asyncio.create_task(viewer.ended.wait())
        waiting: list[asyncio.Future[Any]] = [reader, ended, session_ended]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        feed.unsubscribe(viewer)  # before a close frame: nothing may follow it
        if viewer.ended.is_set():
            await refuse(ws, CLOSE_NOT_FOUND, f"source {stream.token} was deleted")
        elif session_ended.done():
            await close_ended(ws, session_ended.result())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        if feed is not None:
            feed.unsubscribe(viewer)
        stream.release()
        reader.cancel()
        if not ws.closed:
            await ws.close()


async def read_commands(ws: web.WebSocketResponse) -> None:
    """Accept keepalives and H5_* commands until the socket closes."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        text = msg.data.strip()
        if text == "keepalive":
            continue
        message = client_message(text)
        cmd = message.get("cmd") if message is not None else None
        if cmd not in KNOWN_COMMANDS:
            log.debug("ignoring unknown ws command %.80r", text)
