"""The edge's cloud link (h5stream's cloud push mode): one WebSocket out to the cloud, kept up.

It dials `ws(s)://{strCloudIp}:{strCloudPort}/api/v1/h5scloudlink`, proves it holds the
cloud user's password MD5 by challenge-response (formats/cloud_link.py: only an HMAC
crosses), and then serves the cloud (session.py) until the link drops; then it dials
again with capped backoff (0.5, 1, 2 s; 30 s at most after a refusal of its credentials,
so a wrong password does not lock the user out faster than it must). aiohttp's heartbeat
on both ends notices a dead link in HEARTBEAT * 1.5 s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.config.settings import CloudSettings
from gateway.formats import cloud_link
from gateway.formats.cloud_link import ITERATIONS_RANGE, LinkFormatError, field
from gateway.outputs.cloud.session import LinkSession, RunRequest
from gateway.tasks import background

if TYPE_CHECKING:
    from gateway.core import Gateway

log = logging.getLogger(__name__)

HEARTBEAT = 5.0
CONNECT_TIMEOUT = 10.0  # seconds to connect, and for each of the cloud's handshake answers
MAX_FRAME = 16 << 20
FIRST_DELAY = 0.5
MAX_DELAY = 2.0
MAX_DELAY_REFUSED = 30.0


class LinkRefused(Exception):
    """The cloud said no; `credentials`: to this edge's user or password."""

    def __init__(self, reason: str, credentials: bool):
        super().__init__(reason)
        self.credentials = credentials


class CloudLink:
    """`gateway.cloud_link` on an edge: its state for GetCloudClientInfo and /metrics."""

    def __init__(self, gw: Gateway, settings: CloudSettings, run_request: RunRequest):
        self.gw = gw
        self.settings = settings
        self.run_request = run_request
        self.session: LinkSession | None = None  # while the link is up
        self.last_error = ""
        self.links = 0  # times the cloud welcomed this edge
        self._task: asyncio.Task[None] | None = None
        self._failure = ""  # the kind of the last failure, logged once
        self._done_frames = self._done_bytes = self._done_skips = 0  # of links gone

    @property
    def online(self) -> bool:
        return self.session is not None

    def counts(self) -> dict[str, int]:
        """Channels open now; media frames and bytes sent, and keyframe skips, since start."""
        s = self.session
        return {
            "channels": len(s.channels) if s else 0,
            "frames": self._done_frames + (s.sent_frames if s else 0),
            "bytes": self._done_bytes + (s.sent_bytes if s else 0),
            "skips": self._done_skips + (s.skips if s else 0),
        }

    def start(self) -> None:
        self._task = background(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                cap = MAX_DELAY
                try:
                    welcomed = await self._connect(http)
                    if welcomed:
                        failures = 0
                except LinkRefused as e:
                    self._failed("refused", f"refused: {e}")
                    if e.credentials:
                        cap = MAX_DELAY_REFUSED
                except (aiohttp.ClientError, OSError, TimeoutError, LinkFormatError, ValueError) as e:
                    self._failed(type(e).__name__, f"failed: {e or type(e).__name__}")
                await asyncio.sleep(min(cap, FIRST_DELAY * 2**failures))
                failures = min(failures + 1, 10)

    def _failed(self, kind: str, error: str) -> None:
        """Log a failure once: the same kind again (a refusal, a connection refused) only at debug level."""
        if kind != self._failure:
            log.warning("cloud link to %s %s", self.settings.address, error)
        else:
            log.debug("cloud link to %s %s", self.settings.address, error)
        self._failure = kind
        self.last_error = error

    async def _connect(self, http: aiohttp.ClientSession) -> bool:
        """One link: handshake, then serve it until it closes. True if the cloud welcomed us."""
        settings = self.settings
        ssl: Any = None if not settings.ssl else (None if settings.ssl_verify else False)
        async with http.ws_connect(
            settings.url, heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME, compress=0, ssl=ssl, autoping=True
        ) as ws:
            await self._handshake(ws)
            log.info("cloud link to %s up: serving as %s", settings.address, settings.server_token)
            self.last_error = self._failure = ""
            self.links += 1
            self.session = session = LinkSession(self.gw, ws, self.run_request)
            try:
                await session.run()
            finally:
                self.session = None
                self._done_frames += session.sent_frames
                self._done_bytes += session.sent_bytes
                self._done_skips += session.skips
            log.warning("cloud link to %s down (%s)", settings.address, ws.close_code)
            self.last_error = "link down"
        return True

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        settings = self.settings
        nonce = secrets.token_hex(16)
        hello = cloud_link.encode(
            "hello", user=settings.user, serverToken=settings.server_token, serverName=settings.server_name, nonce=nonce
        )
        await ws.send_str(hello)
        challenge = await receive(ws, "challenge")
        salt, iterations = field(challenge, "salt", str), field(challenge, "iterations", int)
        low, high = ITERATIONS_RANGE
        if not low <= iterations <= high:
            raise LinkFormatError(f"challenge: {iterations} iterations is out of range")
        key = await asyncio.get_running_loop().run_in_executor(
            None, cloud_link.link_key, settings.password_md5, salt, iterations
        )
        proof = cloud_link.proof(key, field(challenge, "nonce", str), nonce, settings.server_token)
        await ws.send_str(cloud_link.encode("proof", hmac=proof))
        await receive(ws, "welcome")


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The cloud's next handshake message, of `kind`; LinkRefused if it refuses."""
    message = await ws.receive(timeout=CONNECT_TIMEOUT)
    if message.type != aiohttp.WSMsgType.TEXT:
        raise ConnectionError(f"the cloud closed the link before its {kind}")
    control = cloud_link.decode(message.data)
    if control["type"] == "refused":
        raise LinkRefused(str(control.get("reason", ""))[:200], control.get("credentials") is True)
    if control["type"] != kind:
        raise LinkFormatError(f"expected {kind}, got {control['type'][:32]!r}")
    return control
