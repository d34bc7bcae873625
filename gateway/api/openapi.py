"""GET /api/v1/openapi.json: the OpenAPI 3.1 description of the REST API, built from the
command table (each `@command` says its parameters and answer where it is written), so
the document names exactly the commands the gateway answers."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.api.commands import DESCRIBED, Described
from gateway.api.forward import FORWARDED
from gateway.api.schema import Param

PATH = "/api/v1/openapi.json"
STATUS_TEXT = {
    400: "bad input (nothing changed)",
    401: "no, unknown or expired session (Login: wrong user or password)",
    403: "the session's role may not do this",
    404: "unknown token, command or file",
    429: "too many at once for this user",
    500: "the gateway failed (see its log)",
    502: "the camera or platform refused or cannot be reached (servertoken: or the edge could not run it)",
    503: "the source has no media (yet), or is disabled (servertoken: or the edge is offline)",
    504: "servertoken: the edge did not answer in time",
}
ERROR = {"$ref": "#/components/schemas/Error"}


def _parameter(param: Param) -> dict[str, Any]:
    described: dict[str, Any] = {"name": param.name, "in": "query", "required": param.required, "schema": param.schema}
    if param.about:
        described["description"] = param.about
    return described


def _error(status: int) -> dict[str, Any]:
    return {"description": STATUS_TEXT[status], "content": {"application/json": {"schema": ERROR}}}


# h5stream's cloud push mode: on a cloud, run the command on that edge (api/forward.py).
SERVER_TOKEN = {
    "name": "servertoken",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "on a cloud: run the command on the edge with this server token and answer with its answer",
}


def _operation(entry: Described) -> dict[str, Any]:
    if entry.media_type == "application/json":
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Answer"}
        if entry.answer:
            schema = {"allOf": [schema, entry.answer]}
        content: dict[str, Any] = {"application/json": {"schema": schema}}
    else:
        content = {entry.media_type: {}}
    statuses = {400, 404, *entry.errors}
    if entry.role is not None:
        statuses |= {401, 403}
    parameters = [_parameter(p) for p in entry.params]
    if entry.name.lower() in FORWARDED:
        parameters.append(SERVER_TOKEN)
        statuses |= {503, 504}
    role = f"Role: {entry.role}." if entry.role else "No session needed."
    operation: dict[str, Any] = {
        "operationId": entry.name,
        "summary": entry.about.splitlines()[0] if entry.about else entry.name,
        "description": role,
        "parameters": parameters,
        "responses": {
            "200": {"description": "done", "content": content},
            **{str(status): _error(status) for status in sorted(statuses)},
        },
    }
    if entry.role is None:
        operation["security"] = []
    return operation


@cache
def document() -> dict[str, Any]:
    """The description of every registered command (the api modules are imported by then)."""
    entries = sorted(DESCRIBED.values(), key=lambda e: e.name)
    paths: dict[str, Any] = {f"/api/v1/{entry.name}": {"get": _operation(entry)} for entry in entries}
    paths[PATH] = {
        "get": {
            "operationId": "OpenApi",
            "summary": "this document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "h5ss /api/v1",
            "version": __version__,
            "description": "h5stream's REST API: every call is a GET with query parameters; answers are JSON "
            "{bStatus, strCode, ...}, errors {bStatus: false, strCode: reason} with a 4xx status. With "
            "http.bAuth=false no session is needed.",
        },
        "paths": paths,
        "security": [{"session": []}],
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "query", "name": "session", "description": "strSession of Login"}
            },
            "schemas": {
                "Answer": {
                    "type": "object",
                    "required": ["bStatus", "strCode"],
                    "properties": {"bStatus": {"const": True}, "strCode": {"type": "string"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["bStatus", "strCode"],
                    "properties": {"bStatus": {"const": False}, "strCode": {"type": "string"}},
                },
            },
        },
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(document())
