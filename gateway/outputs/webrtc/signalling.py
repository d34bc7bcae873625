"""WebRTC signalling fronts over the same RtcPeer: h5s server-offer WebSocket and WHEP.

- `/api/v1/h5srtcapi` (and `h5srtcapi2`): open → iceserver → offer → answer → remoteice,
  keepalives, as the h5s player speaks it (PROTOCOLS.md §2).
- WHEP (RFC 9725): `POST /{token}/whep` with an SDP offer → 201 + Location + answer;
  `DELETE` on the Location ends it. A WHEP client authenticates with
  `Authorization: Bearer <session>` (the session from Login) or `?session=`.
- `GET /{token}/`: the MediaMTX-style page that plays the stream over WHEP.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.config.file import valid_token
from gateway.core import Gateway
from gateway.hub.stream import Stream, StreamNotReady
from gateway.tasks import background
from gateway.web.errors import fail
from gateway.web.request import gateway, session_of
from gateway.web.websocket import CLOSE_NOT_READY, CLOSE_POLICY, refuse, stream_socket

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import RtcPeer

log = logging.getLogger(__name__)

DISABLED = "WebRTC is turned off (webrtc.bWebRTCSink)"
WHEP_PAGE = Path(__file__).resolve().parents[3] / "www" / "whep.html"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link",
}


async def new_peer(gw: Gateway, stream: Stream, audio: bool = True) -> RtcPeer:
    """A set-up peer for a ready stream (`audio`: the client takes audio too);
    StreamNotReady if the source gives no video."""
    # aiortc is imported on the first WebRTC viewer: ~20 MB a gateway without one never needs.
    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.peer import RtcPeer, ice_host_addresses

    install(ice_host_addresses(gw.settings.webrtc.bind))
    stream.acquire()  # hold the stream while waiting, so an on-demand source starts
    try:
        params = await stream.wait_ready()
    finally:
        stream.release()
    peer = RtcPeer(uuid.uuid4().hex, stream, gw.settings.webrtc.ice_servers, stream.conf.enable_audio and audio)
    await peer.setup(params)
    gw.rtc_peers[peer.id] = peer
    background(_forget_when_closed(gw, peer))
    return peer


async def _forget_when_closed(gw: Gateway, peer: RtcPeer) -> None:
    await peer.closed.wait()
    gw.rtc_peers.pop(peer.id, None)


# -- h5s signalling over WebSocket ------------------------------------------------------


async def h5srtcapi(request: web.Request) -> web.WebSocketResponse:
    gw = gateway(request)
    ws, stream, _ = await stream_socket(request, max_msg_size=256 * 1024)
    if stream is None:
        return ws
    if not gw.settings.webrtc.enabled:
        return await refuse(ws, CLOSE_POLICY, DISABLED)
    peer: RtcPeer | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                message = json.loads(msg.data)
            except ValueError:
                continue
            kind = message.get("type") if isinstance(message, dict) else None
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
                    peer = await new_peer(gw, stream)
                except StreamNotReady as e:
                    return await refuse(ws, CLOSE_NOT_READY, str(e))
                await ws.send_str(json.dumps({"type": "offer", "sdp": await peer.offer()}))
                background(_close_ws_with_peer(ws, peer))
            elif kind == "answer" and peer is not None:
                await peer.accept_answer(str(message.get("sdp", "")))
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


async def _close_ws_with_peer(ws: web.WebSocketResponse, peer: RtcPeer) -> None:
    await peer.closed.wait()
    if not ws.closed:
        await ws.close(code=1000, message=b"webrtc connection ended")


# -- WHEP -------------------------------------------------------------------------------


def _whep_session(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("session")


Answer = TypeVar("Answer", bound=web.StreamResponse)


def _with_cors(response: Answer) -> Answer:
    response.headers.update(CORS)
    return response


async def whep_options(request: web.Request) -> web.Response:
    return _with_cors(web.Response(status=204, headers={"Accept-Post": "application/sdp"}))


async def whep_post(request: web.Request) -> web.StreamResponse:
    gw = gateway(request)
    try:
        session_of(gw, _whep_session(request))
    except AuthError as e:
        return _with_cors(fail(401, f"unauthorized: {e}"))
    if not gw.settings.webrtc.enabled:
        return _with_cors(fail(403, DISABLED))
    token = request.match_info["token"]
    stream = gw.stream(token) if valid_token(token) else None
    if stream is None:
        return _with_cors(fail(404, f"unknown token {token[:64]!r}"))
    if request.content_type != "application/sdp":
        return _with_cors(fail(415, "Content-Type must be application/sdp"))
    offer = await request.text()
    if not offer.startswith("v=0") or "m=video" not in offer:
        return _with_cors(fail(400, "body is not an SDP offer with a video section"))
    try:
        # An offer without audio (some WHEP clients) gets a video-only peer: aiortc
        # cannot answer an offer that lacks a section for one of its senders.
        peer = await new_peer(gw, stream, audio="m=audio" in offer)
    except StreamNotReady as e:
        return _with_cors(fail(503, str(e)))
    try:
        answer = await peer.answer(offer)
    except (ValueError, KeyError, AttributeError) as e:
        await peer.close()
        return _with_cors(fail(400, f"cannot answer this offer: {e or 'malformed SDP'}"))
    if "H264" not in answer:
        await peer.close()
        return _with_cors(fail(400, "the offer has no H.264 (packetization-mode 1) to receive"))
    location = f"/{token}/whep/{peer.id}"
    links = [
        f'<{s.urls if isinstance(s.urls, str) else s.urls[0]}>; rel="ice-server"'
        for s in gw.settings.webrtc.ice_servers
    ]
    response = web.Response(status=201, text=answer, content_type="application/sdp", headers={"Location": location})
    if links:
        response.headers["Link"] = ", ".join(links)
    return _with_cors(response)


async def whep_delete(request: web.Request) -> web.StreamResponse:
    gw = gateway(request)
    peer = gw.rtc_peers.get(request.match_info["peer"])
    if peer is None or peer.stream.token != request.match_info["token"]:
        return _with_cors(fail(404, "no such WHEP session"))
    await peer.close()
    return _with_cors(web.Response(status=200))


async def whep_patch(request: web.Request) -> web.Response:
    # Our answer carries all our candidates and aiortc learns the client's from its
    # checks, so trickle ICE is not needed (RFC 9725 lets a server refuse it this way).
    return _with_cors(web.Response(status=405, headers={"Allow": "OPTIONS, POST, DELETE"}))


async def viewer_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WHEP_PAGE)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/h5srtcapi", h5srtcapi)
    app.router.add_get("/api/v1/h5srtcapi2", h5srtcapi)
    app.router.add_route("OPTIONS", "/{token}/whep", whep_options)
    app.router.add_post("/{token}/whep", whep_post)
    app.router.add_route("OPTIONS", "/{token}/whep/{peer}", whep_options)
    app.router.add_delete("/{token}/whep/{peer}", whep_delete)
    app.router.add_route("PATCH", "/{token}/whep/{peer}", whep_patch)
    app.router.add_get("/{token}/", viewer_page)
