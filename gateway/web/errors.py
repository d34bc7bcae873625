"""The REST API's answers: `{"bStatus": true, "strCode": …}`, or an error with a readable
reason and its HTTP status. Every HTTP and WebSocket front answers problems this way."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """A request that cannot be served: `status` (400 bad input, 401 session, 403 role,
    404 unknown, 503 no media yet, ...) and a reason safe to show the client."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def ok(code: str = "ok", **fields: Any) -> web.Response:
    return web.json_response({"bStatus": True, "strCode": code, **fields})


def fail(status: int, reason: str) -> web.Response:
    return web.json_response(error_body(reason), status=status)


def error_body(reason: str) -> dict[str, Any]:
    return {"bStatus": False, "strCode": reason}


def error_json(reason: str) -> bytes:
    return json.dumps(error_body(reason)).encode()
