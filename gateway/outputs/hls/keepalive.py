"""/api/v1/h5swscmnapi: the h5s HLS player's companion socket (PROTOCOLS.md §2).

Its keepalives extend the player's session and keep the stream's segmenter running while
the player is open, between the playlist requests that would otherwise do so. While it is
open with a live session, its browser may fetch the token's HLS without a credential in
the URL, as the player does (grants.py): the handshake sets the cookie that names it.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.outputs.hls.grants import COOKIE, GRANTS_KEY
from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.web.request import auth_required, gateway, session_from
from gateway.web.websocket import CLOSE_POLICY, client_message, closing_with_session, refuse, stream_socket


async def h5swscmnapi(request: web.Request) -> web.WebSocketResponse:
    gw, grants = gateway(request), request.app[GRANTS_KEY]
    client = grant_client(request)
    set_cookie = None if client is None else grants.set_cookie(client, request.secure)
    ws, stream, session = await stream_socket(request, set_cookie=set_cookie)
    if stream is None:
        return ws
    if client is not None:
        grants.open(client, stream.token)
    with closing_with_session(request, ws, session) as ended:  # by Logout, a changed password, expiry: no grace then
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and is_keepalive(msg.data):
                    if session is not None:
                        try:
                            gw.auth.check(session.id)
                        except AuthError as e:
                            return await refuse(ws, CLOSE_POLICY, f"unauthorized: {e}")
                        gw.auth.keepalive(session)
                    seg = stream.existing(HlsSegmenter)
                    if seg is not None and seg.active:
                        seg.touch()
        finally:
            if client is not None:
                grants.close(client, stream.token, grace=not ended.done())
    return ws


def grant_client(request: web.Request) -> str | None:
    """The cookie value this socket grants HLS to; None with logins off (nothing to grant)
    or without a live session (the socket is refused, and sets no cookie)."""
    if not auth_required(gateway(request)):
        return None
    try:
        session = session_from(request)
    except AuthError:
        return None
    assert session is not None
    return request.app[GRANTS_KEY].client(request.cookies.get(COOKIE), session.id, request.remote or "")


def is_keepalive(text: str) -> bool:
    text = text.strip()
    if text == "keepalive":
        return True
    message = client_message(text)
    return message is not None and (message.get("type") == "keepalive" or message.get("cmd") == "H5_KEEPALIVE")
