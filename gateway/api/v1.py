"""h5stream's REST API: GET /api/v1/<Command>?..., JSON answers with bStatus/strCode.

Errors are JSON with a readable strCode and a 4xx status (401 session, 403 role,
404 unknown token/command, 400 bad input); nothing is changed when a call fails.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.auth import AuthError, Session, allowed
from gateway.config.file import CONNECT_TYPES, RTSP_TYPES, ConfigError, SourceConf, valid_token
from gateway.core import Gateway
from gateway.hub.stream import StreamNotReady
from gateway.ingest import SourceError
from gateway.ingest.stream import redact
from gateway.outputs.snapshot.snapshotter import Snapshotter

log = logging.getLogger(__name__)

GATEWAY_KEY = web.AppKey("gateway", Gateway)
SNAPSHOT_TIMEOUT = 10.0

LOADING_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 640 360">'
    '<rect width="640" height="360" fill="#1d2129"/>'
    '<text x="320" y="190" fill="#8a94a6" font-family="sans-serif" font-size="28" text-anchor="middle">'
    "Loading…</text></svg>"
)


class ApiError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def ok(code: str = "ok", **fields: Any) -> web.Response:
    return web.json_response({"bStatus": True, "strCode": code, **fields})


def fail(status: int, reason: str) -> web.Response:
    return web.json_response({"bStatus": False, "strCode": reason}, status=status)


Handler = Callable[[web.Request, Session | None], Awaitable[web.StreamResponse]]
COMMANDS: dict[str, tuple[Handler, str | None]] = {}


def command(name: str, role: str | None = "Viewer"):
    """Register an API command; role None means no session needed (Login)."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name.lower()] = (handler, role)
        return handler

    return register


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]


def param(request: web.Request, name: str, default: str | None = None, *, max_len: int = 1024) -> str:
    value = request.query.get(name, default)
    if value is None:
        raise ApiError(400, f"missing parameter '{name}'")
    if len(value) > max_len:
        raise ApiError(400, f"parameter '{name}' is too long")
    return value


def bool_param(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, f"parameter '{name}' must be true or false")


def enum_param(request: web.Request, name: str, allowed_values: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, default)
    if value not in allowed_values:
        raise ApiError(400, f"parameter '{name}' must be one of {', '.join(allowed_values)}")
    return value


def token_param(request: web.Request, *, existing: bool = True) -> str:
    token = param(request, "token", max_len=64)
    if not valid_token(token):
        raise ApiError(400, "token must be 1-64 letters, digits, '-', '_' or '.'")
    if existing and token not in gateway(request).config.sources:
        raise ApiError(404, f"unknown token {token!r}")
    return token


def session_from(request: web.Request) -> Session | None:
    """The request's session, or None when auth is off; AuthError otherwise."""
    gw = gateway(request)
    if not gw.config.get("http", "bAuth"):
        return None
    return gw.auth.check(request.query.get("session"))


async def handle(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, request.match_info["command"])


async def dispatch(request: web.Request, name: str) -> web.StreamResponse:
    """Run command `name` for the request: session, role, then the handler."""
    entry = COMMANDS.get(name.lower())
    if entry is None:
        return fail(404, f"unknown command {name!r}")
    handler, role = entry
    try:
        session = None
        if role is not None:
            try:
                session = session_from(request)
            except AuthError as e:
                return fail(401, str(e))
            if session is not None and not allowed(session, role):
                return fail(403, f"{name} needs the {role} role; you are {session.role}")
        return await handler(request, session)
    except ApiError as e:
        return fail(e.status, e.reason)
    except (ConfigError, SourceError, ValueError) as e:
        return fail(400, str(e))


# -- sessions and users -------------------------------------------------------------


@command("Login", role=None)
async def login(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    try:
        session = gw.auth.login(param(request, "user", max_len=128), param(request, "password", max_len=128))
    except AuthError as e:
        return fail(401, str(e))
    return web.json_response(
        {
            "bStatus": True,
            "strCode": "ok",
            "strSession": session.id,
            "nTimeout": gw.auth.timeout,
            "strUserType": session.role,
        }
    )


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


@command("UpdateUser")
async def update_user(request: web.Request, session: Session | None) -> web.Response:
    gw = gateway(request)
    user = param(request, "user", max_len=128)
    if session is not None and user != session.user and not allowed(session, "Administrator"):
        raise ApiError(403, "only an Administrator can change another user's password")
    try:
        gw.auth.update_password(user, param(request, "oldpassword"), param(request, "newpassword"))
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    gw.config.save()
    return ok()


# -- system ---------------------------------------------------------------------------


def host_id() -> str:
    try:
        seed = Path("/etc/machine-id").read_text().strip()
    except OSError:
        seed = socket.gethostname()
    return hashlib.sha256(seed.encode()).hexdigest()[:16].upper()


@command("GetSystemInfo")
async def get_system_info(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    return web.json_response(
        {
            "bStatus": True,
            "strCode": "ok",
            "strVersion": __version__,
            "strHostId": host_id(),
            "strHostName": socket.gethostname(),
            "strOS": f"{platform.system()} {platform.release()}",
            "strPython": platform.python_version(),
            "nSourceCount": len(gw.config.sources),
        }
    )


@command("GetRunInfo")
async def get_run_info(request: web.Request, _: Session | None) -> web.Response:
    return web.json_response({"bStatus": True, "strCode": "ok", **gateway(request).runinfo.snapshot()})


# -- sources --------------------------------------------------------------------------

SRC_FIELDS = (
    "nType",
    "strName",
    "strToken",
    "strUrl",
    "strUser",
    "bPasswdEncrypt",
    "bEnableAudio",
    "nConnectType",
    "nRTSPType",
    "strSrcIpAddress",
    "strSrcPort",
    "nChannelNumber",
    "bOnvifProfileAuto",
    "strOnvifAddr",
    "strOnvifProfileMain",
    "strOnvifProfileSub",
    "bRec",
)


def describe_source(gw: Gateway, token: str) -> dict[str, Any]:
    conf = gw.config.sources[token]
    info = {key: conf[key] for key in SRC_FIELDS}
    info.update({key: conf[key] for key in SourceConf.TYPE_FIELDS.get(conf.type, {})})
    info["strUrl"] = redact(conf["strUrl"])
    info["strPasswd"] = "*****" if conf["strPasswd"] else ""
    stream = gw.stream(token)
    info["bOnline"] = bool(stream and stream.online)
    info["strState"] = stream.state if stream else "disabled"
    info["strLastError"] = (stream.last_error if stream else "source could not be created") or ""
    info["nViewers"] = stream.viewers if stream else 0
    info["nRtcPeers"] = sum(1 for peer in gw.rtc_peers.values() if peer.stream is stream)
    info["strSnapshotUrl"] = f"api/v1/GetImage?token={token}"
    hls = stream.output_registry.get("hls") if stream else None
    info["nHlsSegments"] = len(getattr(hls, "segments", ()))  # in memory only while HLS clients poll
    # Source types may add what they learnt while connecting (ONVIF: the profile in use).
    if stream and hasattr(stream.source, "describe"):
        info.update(stream.source.describe())
    if stream and stream.params and stream.params.video:
        info["nWidth"], info["nHeight"] = stream.params.video.width, stream.params.video.height
        info["strCodec"] = stream.params.mime
    return info


@command("GetSrc")
async def get_src(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    if "token" in request.query:
        tokens = [token_param(request)]
    else:
        tokens = list(gw.config.sources)
    return web.json_response({"bStatus": True, "strCode": "ok", "src": [describe_source(gw, t) for t in tokens]})


def _common_source_fields(request: web.Request) -> dict[str, Any]:
    name = param(request, "name", max_len=128).strip()
    if not name:
        raise ApiError(400, "name must not be empty")
    return {
        "strName": name,
        "strToken": token_param(request, existing=False),
        "bEnableAudio": bool_param(request, "audio", True),
        "nConnectType": enum_param(request, "connecttype", CONNECT_TYPES, "H5_ONDEMAND"),
        "bRec": bool_param(request, "rec", False),
    }


@command("AddSrcFile", role="Administrator")
async def add_src_file(request: web.Request, _: Session | None) -> web.Response:
    fields = _common_source_fields(request) | {"nType": "H5_FILE", "strUrl": param(request, "url")}
    conf = gateway(request).add_source(fields)
    return ok(f"source {conf.token} added")


@command("AddSrcRTSP", role="Administrator")
async def add_src_rtsp(request: web.Request, _: Session | None) -> web.Response:
    fields = _common_source_fields(request) | {
        "nType": "H5_STREAM",
        "strUrl": param(request, "url"),
        "strUser": param(request, "user", "", max_len=128),
        "strPasswd": param(request, "password", "", max_len=128),
        "nRTSPType": enum_param(request, "rtsptype", RTSP_TYPES, "H5_RTSP_TCP"),
    }
    conf = gateway(request).add_source(fields)
    return ok(f"source {conf.token} added")


@command("DelSrc", role="Administrator")
async def del_src(request: web.Request, _: Session | None) -> web.Response:
    token = token_param(request)
    gateway(request).delete_source(token)
    return ok(f"source {token} deleted")


# -- images ---------------------------------------------------------------------------


@command("GetImage")
async def get_image(request: web.Request, _: Session | None) -> web.StreamResponse:
    stream = gateway(request).stream(token_param(request))
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    try:
        jpeg = await Snapshotter.of(stream).jpeg(SNAPSHOT_TIMEOUT)
    except StreamNotReady as e:
        raise ApiError(503, str(e)) from None
    except ValueError as e:
        raise ApiError(503, f"snapshot failed: {e}") from None
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


@command("GetLoadingImage", role=None)
async def get_loading_image(request: web.Request, _: Session | None) -> web.Response:
    return web.Response(text=LOADING_SVG, content_type="image/svg+xml")
