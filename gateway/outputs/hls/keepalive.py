"""/api/v1/h5swscmnapi: the h5s HLS player's companion socket (PROTOCOLS.md §2).

Its keepalives extend the player's session and keep the stream's segmenter running while
the player is open, between the playlist requests that would otherwise do so.
"""

from __future__ import annotations

import json

from aiohttp import WSMsgType, web

from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.web.request import gateway
from gateway.web.websocket import stream_socket


async def h5swscmnapi(request: web.Request) -> web.WebSocketResponse:
    gw = gateway(request)
    ws, stream, session = await stream_socket(request)
    if stream is None:
        return ws
    async for msg in ws:
        if msg.type == WSMsgType.TEXT and is_keepalive(msg.data):
            if session is not None:
                gw.auth.keepalive(session)
            seg = stream.existing(HlsSegmenter)
            if seg is not None and seg.active:
                seg.touch()
    return ws


def is_keepalive(text: str) -> bool:
    text = text.strip()
    if text == "keepalive":
        return True
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and (message.get("type") == "keepalive" or message.get("cmd") == "H5_KEEPALIVE")
