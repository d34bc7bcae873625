"""Request bodies read against a deadline: a client that sends its body slowly, or never,
gets a 408 and holds a handler no longer (then aiohttp reads and drops the rest of the
body for at most its lingering time, 10 s, and closes the connection)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.web.errors import ApiError

BODY_TIMEOUT = 10.0  # seconds for a whole body (aiohttp caps its size: client_max_size, 1 MiB)


async def body_text(request: web.Request) -> str:
    """The body as text; ApiError(408) when it has not all come within BODY_TIMEOUT seconds."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await request.text()
    except TimeoutError:
        raise ApiError(408, f"request body not received within {BODY_TIMEOUT:g} s") from None
