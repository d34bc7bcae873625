"""The h5s player's WebRTC signalling over WebSocket: `/api/v1/h5srtcapi` (and `h5srtcapi2`).

open -> iceserver -> offer (the server offers) -> answer -> remoteice, keepalives, as the
h5s player speaks it (PROTOCOLS.md §2). An H.265 stream is offered as H265 and, when it
has an H.264 rendition, as H.264 too: the codec of the answer picks the stream sent.
WHEP, the other front over the same peers, is whep.py.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from gateway.auth import Session
from gateway.core import Gateway
from gateway.hub.rendition import NoRendition
from gateway.hub.stream import Stream, StreamNotReady
from gateway.outputs.webrtc.peers import DISABLED, new_peer
from gateway.tasks import background
from gateway.web.request import gateway
from gateway.web.websocket import (
    CLOSE_NOT_READY,
    CLOSE_POLICY,
    client_message,
    closing_with_session,
    refuse,
    stream_socket,
)

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import RtcPeer

log = logging.getLogger(__name__)


async def h5srtcapi(request: web.Request) -> web.WebSocketResponse:
    gw = gateway(request)
    ws, stream, session = await stream_socket(request, max_msg_size=256 * 1024)
    if stream is None:
        return ws
    if not gw.settings.webrtc.enabled:
        return await refuse(ws, CLOSE_POLICY, DISABLED)
    with closing_with_session(request, ws, session):  # its peer closes with it (and with the session: peers.py)
        return await _signal(request, ws, stream, session)


async def _signal(
    request: web.Request, ws: web.WebSocketResponse, stream: Stream, session: Session | None
) -> web.WebSocketResponse:
    gw = gateway(request)
    peer: RtcPeer | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = client_message(msg.data)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "open" and peer is None:
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "iceserver",
                            "iceServers": [s.as_json() for s in gw.settings.webrtc.ice_servers],
                            "iceTransportPolicy": "all",
                        }
                    )
                )
                try:
                    peer = await new_peer(gw, stream, session)
                except StreamNotReady as e:
                    return await refuse(ws, CLOSE_NOT_READY, str(e))
                await ws.send_str(json.dumps({"type": "offer", "sdp": await peer.offer()}))
                background(_close_ws_with_peer(ws, peer, gw, session))
            elif kind == "answer" and peer is not None:
                try:
                    await peer.accept_answer(str(message.get("sdp", "")))
                except NoRendition as e:  # an H.265 stream, a browser without H.265, no rendition
                    return await refuse(ws, CLOSE_POLICY, str(e))
            elif kind == "remoteice" and peer is not None:
                try:
                    await peer.add_candidate(
                        str(message.get("candidate", "")), message.get("sdpMid"), message.get("sdpMLineIndex")
                    )
                except ValueError:
                    log.debug("ignoring unparsable candidate %.80r", message.get("candidate"))
    except ValueError as e:  # e.g. an answer SDP aiortc cannot use
        await refuse(ws, CLOSE_POLICY, f"bad signalling message: {e}")
    finally:
        if peer is not None:
            await peer.close()
        if not ws.closed:
            await ws.close()
    return ws


async def _close_ws_with_peer(ws: web.WebSocketResponse, peer: RtcPeer, gw: Gateway, session: Session | None) -> None:
    await peer.closed.wait()
    if session is not None and session.id not in gw.auth.sessions:
        return  # the peer closed as its session ended: the socket closes with that reason (closing_with_session)
    if not ws.closed:
        await ws.close(code=1000, message=b"webrtc connection ended")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/h5srtcapi", h5srtcapi)
    app.router.add_get("/api/v1/h5srtcapi2", h5srtcapi)
