"""The h5s WebSockets' common ground: upgrade, check the caller and the token, refuse clearly.

A browser cannot read the body of a refused upgrade, so problems are told after it: a
text event `{"type": "H5_ERROR", "strCode": reason}`, then a close with an application
code (PROTOCOLS.md §2) and the reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from gateway.auth import AuthError, Session
from gateway.config.file import valid_token
from gateway.hub.profile import profile_of
from gateway.hub.stream import Stream
from gateway.tasks import background
from gateway.web.request import gateway, session_from

CLOSE_BAD_REQUEST = 4000
CLOSE_POLICY = 4001  # no session (or it ended: Logout, ...), or a feature turned off
CLOSE_NOT_FOUND = 4004
CLOSE_NOT_READY = 4008  # no media in time, or a recording that cannot be read
# The h5s players send a keepalive each second. A socket silent for HEARTBEAT seconds is
# pinged (aiohttp's heartbeat) and closed when no pong comes in HEARTBEAT/2 more: a dead or
# stalled client holds a stream and a connection 30 s at most. A browser answers pings
# itself, so a background tab whose timers are throttled stays connected.
HEARTBEAT = 20.0


def h5s_socket(max_msg_size: int = 64 * 1024) -> web.WebSocketResponse:
    return web.WebSocketResponse(max_msg_size=max_msg_size, compress=False, heartbeat=HEARTBEAT)


def client_message(text: str) -> dict[str, Any] | None:
    """A client's text message as a JSON object; None for anything else ("keepalive", not
    JSON, too deep for the parser (50,000 `[` raise RecursionError), numbers past int()'s
    digit limit, not an object). The size is capped by the socket's max_msg_size."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


async def error_event(ws: web.WebSocketResponse, reason: str) -> None:
    await ws.send_str(json.dumps({"type": "H5_ERROR", "strCode": reason}))


async def refuse(ws: web.WebSocketResponse, code: int, reason: str) -> web.WebSocketResponse:
    await error_event(ws, reason)
    await ws.close(code=code, message=reason.encode()[:120])
    return ws


@contextmanager
def ended_session(request: web.Request, session: Session | None) -> Iterator[asyncio.Future[str]]:
    """A future given the reason when `session` ends (Logout, a changed password, expiry),
    for a socket's handler to close it then (`close_ended`). Never done with logins off."""
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def closer(reason: str) -> None:
        if not ended.done():
            ended.set_result(reason)

    unregister = gateway(request).auth.on_end(session, closer)
    try:
        yield ended
    finally:
        unregister()
        ended.cancel()


@contextmanager
def closing_with_session(
    request: web.Request, ws: web.WebSocketResponse, session: Session | None
) -> Iterator[asyncio.Future[str]]:
    """Close `ws` when `session` ends, for a handler whose only writer to it is itself;
    yields ended_session's future (done once it has ended)."""
    with ended_session(request, session) as ended:
        ended.add_done_callback(lambda f: None if f.cancelled() else background(close_ended(ws, f.result())))
        yield ended


async def close_ended(ws: web.WebSocketResponse, reason: str) -> None:
    """Tell the client its session ended, and close (CLOSE_POLICY)."""
    if ws.closed:
        return
    try:
        await refuse(ws, CLOSE_POLICY, f"unauthorized: {reason}")
    except ConnectionError:  # the client left meanwhile
        pass


async def stream_socket(
    request: web.Request, max_msg_size: int = 64 * 1024, set_cookie: str | None = None
) -> tuple[web.WebSocketResponse, Stream | None, Session | None]:
    """Upgrade (its response setting `set_cookie`, a Set-Cookie value), then check the
    session, the token and `profile=` (main, the default, or sub: the source's sub stream,
    its main one when it has none). On a problem the socket is already closed with a
    readable reason and the stream is None."""
    ws = h5s_socket(max_msg_size)
    if set_cookie is not None:
        ws.headers["Set-Cookie"] = set_cookie
    await ws.prepare(request)
    try:
        session = session_from(request)
    except AuthError as e:
        await refuse(ws, CLOSE_POLICY, f"unauthorized: {e}")
        return ws, None, None
    try:
        profile = profile_of(request.query.get("profile"))
    except ValueError as e:
        await refuse(ws, CLOSE_BAD_REQUEST, str(e))
        return ws, None, session
    token = request.query.get("token", "")
    stream = gateway(request).stream(token, profile) if valid_token(token) else None
    if stream is None:
        await refuse(ws, CLOSE_NOT_FOUND, f"unknown token {token[:64]!r}")
    return ws, stream, session
