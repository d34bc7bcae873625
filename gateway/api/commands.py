"""h5stream's REST API, /api/v1/<Command>?...: the command table and how a call is run.

Each api/ module registers its commands here with the role they need (`@command`).
Answers are JSON with bStatus/strCode (web/errors.py); errors have a readable strCode and
a 4xx status (401 session, 403 role, 404 unknown token/command, 400 bad input), and
nothing is changed when a call fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.api.forward import forward
from gateway.api.schema import Param, Schema
from gateway.auth import AuthError, Session, allowed
from gateway.config.file import ConfigError, valid_token
from gateway.ingest import SourceError
from gateway.web.errors import ApiError, fail
from gateway.web.request import gateway, session_from

Handler = Callable[[web.Request, Session | None], Awaitable[web.StreamResponse]]
COMMANDS: dict[str, tuple[Handler, str | None]] = {}


@dataclass(frozen=True)
class Described:
    """What /api/v1/openapi.json says of a command (api/openapi.py): its query
    parameters, the fields of its success answer (or its media type when not JSON), and
    the errors it answers besides 400, 404 and a session's 401/403: 401 Login's wrong
    password, 429 too many at once for one user, 502 a camera or platform refused or
    cannot be reached, 503 a source has no media (yet) or too many at once."""

    name: str
    role: str | None
    params: tuple[Param, ...]
    answer: Schema
    media_type: str
    errors: tuple[int, ...]
    about: str


DESCRIBED: dict[str, Described] = {}


def command(
    name: str,
    role: str | None = "Viewer",
    *,
    params: tuple[Param, ...] = (),
    answer: Schema | None = None,
    media_type: str = "application/json",
    errors: tuple[int, ...] = (),
) -> Callable[[Handler], Handler]:
    """Register an API command; role None means no session needed (Login). `params`
    and `answer` describe it where it is written (api/schema.py has the pieces)."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name.lower()] = (handler, role)
        about = (handler.__doc__ or "").strip()
        DESCRIBED[name.lower()] = Described(name, role, params, answer or {}, media_type, errors, about)
        return handler

    return register


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


def token_param(request: web.Request, *, existing: bool = True, remote: bool = False) -> str:
    """`token=`, a source's (with `existing`); `remote`: an edge's source on this cloud
    (`{serverToken}_{token}`, ingest/cloud/) counts, for commands that only need its stream."""
    token = param(request, "token", max_len=64)
    if not valid_token(token):
        raise ApiError(400, "token must be 1-64 letters, digits, '-', '_' or '.'")
    gw = gateway(request)
    if existing and token not in gw.config.sources and not (remote and gw.edges.source(token) is not None):
        raise ApiError(404, f"unknown token {token!r}")
    return token


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
        if request.query.get("servertoken"):  # h5stream's cloud: the command is for that edge
            return await forward(gateway(request), request, name)
        return await handler(request, session)
    except ApiError as e:
        return fail(e.status, e.reason)
    except (ConfigError, SourceError, ValueError) as e:
        return fail(400, str(e))
