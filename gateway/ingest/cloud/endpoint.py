"""The cloud's end of the cloud link: `/api/v1/h5scloudlink` on its ordinary HTTP(S) port.

An edge dials in and proves, by challenge-response (formats/cloud_link.py), that it holds
the MD5 of a cloud Administrator's password, without sending anything that would log in.
Wrong proofs count in the login lockout (per user and address) as Login's wrong passwords
do. A server token already online is refused. Then the link carries the edge's messages
to its Edge (edges.py) and the cloud's control messages back, until either side closes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.config.file import valid_server_token
from gateway.formats import cloud_link
from gateway.formats.cloud_link import LinkFormatError, field
from gateway.ingest.cloud.edges import Edge
from gateway.tasks import background
from gateway.web.request import gateway

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # seconds: a silent link is pinged, and dropped when no pong comes in HEARTBEAT/2
HANDSHAKE_TIMEOUT = 10.0  # seconds for each of the edge's hello and proof
MAX_FRAME = 16 << 20  # bytes: a media frame (a 4K keyframe fits) or a control message
MAX_FIELD = 128  # characters of a user or server name, a nonce
CLOSE_REFUSED = 4001
CLOSE_BAD_MESSAGE = 4000


class Refused(Exception):
    """The edge is not let in; the message is safe to tell it. `credentials`: its user or
    password is wrong (it then retries slowly)."""

    def __init__(self, reason: str, credentials: bool = False):
        super().__init__(reason)
        self.credentials = credentials


async def cloud_link_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME, compress=False)
    await ws.prepare(request)
    address = request.remote or ""
    outbox: asyncio.Queue[str] = asyncio.Queue()
    try:
        edge, name = await handshake(request, ws, address, outbox)
    except Refused as e:
        log.warning("cloud link from %s refused: %s", address, e)
        await ws.send_str(cloud_link.encode("refused", reason=str(e), credentials=e.credentials))
        await ws.close(code=CLOSE_REFUSED, message=str(e).encode()[:120])
        return ws
    except (LinkFormatError, TimeoutError, ConnectionError) as e:
        log.warning("cloud link from %s dropped during its handshake: %s", address, e or type(e).__name__)
        await ws.close(code=CLOSE_BAD_MESSAGE)
        return ws
    writer = background(write(ws, outbox))
    log.info("edge %s (%s) online from %s", edge.server_token, name, address)
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                edge.on_media(message.data)
            elif message.type == WSMsgType.TEXT:
                edge.on_control(cloud_link.decode(message.data))
    except LinkFormatError as e:
        log.warning("edge %s: closing its link: %s", edge.server_token, e)
        await ws.close(code=CLOSE_BAD_MESSAGE, message=str(e).encode()[:120])
    finally:
        writer.cancel()
        edge.detach()
        log.info("edge %s offline", edge.server_token)
    return ws


async def handshake(
    request: web.Request, ws: web.WebSocketResponse, address: str, outbox: asyncio.Queue[str]
) -> tuple[Edge, str]:
    """hello → challenge → proof → welcome; the edge (attached, its welcome first in
    `outbox`) and its server name, or Refused."""
    gw = gateway(request)
    hello = await receive(ws, "hello")
    user, token = short(hello, "user"), short(hello, "serverToken")
    name, edge_nonce = short(hello, "serverName"), short(hello, "nonce")
    if not valid_server_token(token):
        raise Refused(f"server token {token!r} must be 1-32 letters, digits or '-'")
    iterations, salt = gw.auth.link_challenge(user)
    cloud_nonce = secrets.token_hex(16)
    await ws.send_str(cloud_link.encode("challenge", salt=salt, iterations=iterations, nonce=cloud_nonce))
    proof = short(await receive(ws, "proof"), "hmac")

    def holds(key: bytes) -> bool:
        return hmac.compare_digest(cloud_link.proof(key, cloud_nonce, edge_nonce, token), proof)

    try:
        role = gw.auth.verify_link(user, address, holds)
    except AuthError as e:
        raise Refused(str(e), credentials=True) from None
    if role != "Administrator":
        raise Refused(f"user {user!r} is {role}; a cloud link needs an Administrator", credentials=True)
    known = gw.edges.get(token)
    if known is not None and known.online:
        raise Refused(f"server token {token!r} is already online (from {known.ip})")
    edge = gw.edges.edge(token)
    outbox.put_nowait(cloud_link.encode("welcome"))
    edge.attach(outbox.put_nowait, address, name)
    return edge, name


async def receive(ws: web.WebSocketResponse, kind: str) -> dict[str, Any]:
    message = await ws.receive(timeout=HANDSHAKE_TIMEOUT)
    if message.type != WSMsgType.TEXT:
        raise ConnectionError(f"the edge closed or sent no {kind}")
    control = cloud_link.decode(message.data)
    if control["type"] != kind:
        raise LinkFormatError(f"expected {kind}, got {control['type'][:32]!r}")
    return control


def short(message: dict[str, Any], name: str) -> str:
    value: str = field(message, name, str)
    if len(value) > MAX_FIELD:
        raise LinkFormatError(f"{message['type']}: {name!r} longer than {MAX_FIELD}")
    return value


async def write(ws: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
    """The cloud's control messages to the edge, in order."""
    try:
        while True:
            await ws.send_str(await outbox.get())
    except ConnectionError:
        pass
