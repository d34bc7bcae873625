"""WHEP (RFC 9725) over the same RtcPeer, and the MediaMTX-style page that uses it.

`POST /{token}/whep` with an SDP offer -> 201 + Location + answer; `DELETE` on the
Location, with the credential of the session that made it (or an Administrator's), ends
it; so does that session's end (Logout, ...). A WHEP client authenticates with
`Authorization: Bearer <session>` (the session from Login) or `?session=`; `?profile=sub`
plays the source's sub stream (its main one when it has none). `GET /{token}/` is the
page that plays the stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from aiohttp import web

from gateway.auth import AuthError, allowed
from gateway.config.file import valid_token
from gateway.hub.profile import profile_of
from gateway.hub.rendition import NoRendition
from gateway.hub.stream import StreamNotReady
from gateway.outputs.webrtc.peers import DISABLED, new_peer
from gateway.web.body import body_text
from gateway.web.errors import ApiError, fail
from gateway.web.request import gateway, session_of

WHEP_PAGE = Path(__file__).resolve().parents[3] / "www" / "whep.html"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link",
}


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
        session = session_of(gw, _whep_session(request))
    except AuthError as e:
        return _with_cors(fail(401, f"unauthorized: {e}"))
    if not gw.settings.webrtc.enabled:
        return _with_cors(fail(403, DISABLED))
    try:
        profile = profile_of(request.query.get("profile"))
    except ValueError as e:
        return _with_cors(fail(400, str(e)))
    token = request.match_info["token"]
    stream = gw.stream(token, profile) if valid_token(token) else None
    if stream is None:
        return _with_cors(fail(404, f"unknown token {token[:64]!r}"))
    if request.content_type != "application/sdp":
        return _with_cors(fail(415, "Content-Type must be application/sdp"))
    try:
        offer = await body_text(request)
    except ApiError as e:
        return _with_cors(fail(e.status, e.reason))
    if not offer.startswith("v=0") or "m=video" not in offer:
        return _with_cors(fail(400, "body is not an SDP offer with a video section"))
    try:
        # An offer without audio (some WHEP clients) gets a video-only peer: aiortc
        # cannot answer an offer that lacks a section for one of its senders.
        peer = await new_peer(gw, stream, session, audio="m=audio" in offer, offer=offer)
    except StreamNotReady as e:
        return _with_cors(fail(503, str(e)))
    except NoRendition as e:  # an H.265 stream, an offer without H265, no H.264 rendition
        return _with_cors(fail(406, str(e)))
    try:
        answer = await peer.answer(offer)
    except (ValueError, KeyError, AttributeError) as e:
        await peer.close()
        return _with_cors(fail(400, f"cannot answer this offer: {e or 'malformed SDP'}"))
    if peer.video_codec() is None:
        await peer.close()
        return _with_cors(fail(400, "the offer has no H.264 (packetization-mode 1) or H265 to receive"))
    location = f"/{token}/whep/{peer.id}"
    links = [f'<{s.first_url}>; rel="ice-server"' for s in gw.settings.webrtc.ice_servers]
    response = web.Response(status=201, text=answer, content_type="application/sdp", headers={"Location": location})
    if links:
        response.headers["Link"] = ", ".join(links)
    return _with_cors(response)


async def whep_delete(request: web.Request) -> web.StreamResponse:
    """Ends a peer: for the session that made it, or an Administrator (anyone with logins off)."""
    gw = gateway(request)
    try:
        session = session_of(gw, _whep_session(request))
    except AuthError as e:
        return _with_cors(fail(401, f"unauthorized: {e}"))
    peer = gw.rtc_peers.get(request.match_info["peer"])
    if peer is None or peer.stream.token != request.match_info["token"]:
        return _with_cors(fail(404, "no such WHEP session"))
    if session is not None and session.id != peer.owner and not allowed(session, "Administrator"):
        return _with_cors(fail(403, "only the session that made this WHEP session, or an Administrator, may end it"))
    await peer.close()
    return _with_cors(web.Response(status=200))


async def whep_patch(request: web.Request) -> web.Response:
    # Our answer carries all our candidates and aiortc learns the client's from its
    # checks, so trickle ICE is not needed (RFC 9725 lets a server refuse it this way).
    return _with_cors(web.Response(status=405, headers={"Allow": "OPTIONS, POST, DELETE"}))


async def viewer_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WHEP_PAGE)


def add_routes(app: web.Application) -> None:
    app.router.add_route("OPTIONS", "/{token}/whep", whep_options)
    app.router.add_post("/{token}/whep", whep_post)
    app.router.add_route("OPTIONS", "/{token}/whep/{peer}", whep_options)
    app.router.add_delete("/{token}/whep/{peer}", whep_delete)
    app.router.add_route("PATCH", "/{token}/whep/{peer}", whep_patch)
    app.router.add_get("/{token}/", viewer_page)
