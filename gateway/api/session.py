"""Sessions and users: Login, Logout, Keepalive, UpdateUser."""

from __future__ import annotations

from aiohttp import web

from gateway.api.commands import command, param
from gateway.api.schema import BOOL, INT, TEXT, obj, text
from gateway.auth import DEFAULT_PASSWORD_MD5, AuthBusy, AuthError, Session, allowed
from gateway.web.errors import ApiError, fail, ok
from gateway.web.request import gateway


@command(
    "Login",
    role=None,
    params=(text("user", 128, required=True), text("password", 128, required=True, about="MD5 hex of the password")),
    answer=obj(strSession=TEXT, nTimeout=INT, strUserType=TEXT, bDefaultPassword=BOOL),
    errors=(401, 503),
)
async def login(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    password = param(request, "password", max_len=128)
    try:
        session = await gw.auth.login(param(request, "user", max_len=128), password, client_address(request))
    except AuthBusy as e:
        return fail(503, str(e))
    except AuthError as e:
        return fail(401, str(e))
    return web.json_response(
        {
            "bStatus": True,
            "strCode": "ok",
            "strSession": session.id,
            "nTimeout": gw.auth.timeout,
            "strUserType": session.role,
            # ours: the page asks for a new password while it is h5stream's default
            "bDefaultPassword": password.lower() == DEFAULT_PASSWORD_MD5,
        }
    )


def client_address(request: web.Request) -> str:
    """Failed logins are counted per user and this address: the peer's own. Behind a
    reverse proxy that is the proxy's (X-Forwarded-For is not trusted: a client sets it)."""
    return request.remote or ""


@command("Logout")
async def logout(request: web.Request, session: Session | None) -> web.Response:
    if session is not None:
        gateway(request).auth.logout(session)
    return ok()


@command("Keepalive")
async def keepalive(request: web.Request, session: Session | None) -> web.Response:
    if session is not None:
        gateway(request).auth.keepalive(session)
    return ok()


@command(
    "UpdateUser",
    params=(
        text("user", 128, required=True),
        text("oldpassword", required=True, about="MD5 hex"),
        text("newpassword", required=True, about="MD5 hex"),
    ),
    errors=(503,),
)
async def update_user(request: web.Request, session: Session | None) -> web.Response:
    gw = gateway(request)
    user = param(request, "user", max_len=128)
    if session is not None and user != session.user and not allowed(session, "Administrator"):
        raise ApiError(403, "only an Administrator can change another user's password")
    old, new = param(request, "oldpassword", max_len=128), param(request, "newpassword", max_len=128)
    try:
        await gw.auth.update_password(user, old, new, client_address(request))
    except AuthBusy as e:
        raise ApiError(503, str(e)) from None
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    gw.config.save()
    return ok()
