"""What a handler takes from a request: the gateway, and the caller's session.

`session_of` is the one place that knows `http.bAuth`: with it off, every caller is let
in as an Administrator (None stands for that session).
"""

from __future__ import annotations

from aiohttp import web

from gateway.auth import Session
from gateway.core import Gateway

GATEWAY_KEY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]


def auth_required(gw: Gateway) -> bool:
    return gw.settings.http.auth


def session_of(gw: Gateway, session_id: str | None) -> Session | None:
    """The live session `session_id` names, or None when logins are off; AuthError otherwise."""
    if not auth_required(gw):
        return None
    return gw.auth.check(session_id)


def session_from(request: web.Request) -> Session | None:
    """The request's `session=` as session_of takes it."""
    return session_of(gateway(request), request.query.get("session"))
