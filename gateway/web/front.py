"""A lean HTTP/1.1 front on every listening port: the hot GETs answered here, the rest by aiohttp.

100 LL-HLS players make ~700 requests a second. aiohttp spends ~230 µs of Python on each
before a handler runs (bench/http_floor.py), alone twice the CPU budget of HLS. So each
connection starts with this protocol. It takes a request only when it understands all of
it: GET or HEAD, HTTP/1.0 or 1.1, no body, no upgrade, a head under MAX_HEAD, and a path
that a fast route claims. At the first request that is anything else, the connection and
the bytes read so far are handed to aiohttp, which keeps the connection from then on.
The hand-written parser therefore only accepts the narrow subset it fully checks;
everything unusual meets aiohttp's own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

from aiohttp import web

log = logging.getLogger(__name__)

MAX_HEAD = 8190  # as aiohttp's default line limit; a longer head goes to aiohttp
MAX_HEADERS = 128  # header lines, as aiohttp's limit: a head with more goes to aiohttp (400)
MAX_PIPELINED = 65536  # bytes read ahead while a request is answered; then reading pauses
# Seconds an idle connection is kept, here and (set on the AppRunner) by aiohttp, whose
# own default is 3630. aiohttp's timer also bounds the wait for a whole request head: it
# runs from the connection's start or its last answer, and a partial head does not reset it.
KEEPALIVE_TIMEOUT = 30.0
HEAD_TIMEOUT = 10.0  # seconds from a head's first bytes to its end here (a slowloris client)
EVICTABLE_IDLE = 1.0  # at the connection cap, a connection idle this long may be closed for a new one
SWEEP_INTERVAL = 5.0
# Connections taken from the kernel's queue per loop turn, and its length. Each is a file
# descriptor before the front can close it, so fd_limit.py keeps this many spare per port.
BACKLOG = 64
# A head the front takes: the request line, then lines of a token, a colon and printable
# ASCII (no tab, no folding), with one Host line, which HTTP/1.1 requires (aiohttp refuses
# a request without, or with two). One regular expression checks it all in C: parsing in
# Python was a third of an HLS request's cost.
_LINE = rb"\r\n(?![Hh][Oo][Ss][Tt]:)[-!#$%&'*+.^_`|~0-9A-Za-z]+:[ -~]*"
_HOST_LINE = rb"\r\n[Hh][Oo][Ss][Tt]:[ -~]*"
_HEAD = re.compile(
    rb"(GET|HEAD) (/[!-~]*) HTTP/1\.(?:(1)|0)"
    rb"((?:%s)*(?(3)%s(?:%s)*|(?:%s(?:%s)*)?))" % (_LINE, _HOST_LINE, _LINE, _HOST_LINE, _LINE)
)
# The fields that decide whether the front may answer, and how the connection goes on.
_SPECIAL_FIELDS = re.compile(
    rb"\r\n(content-length|transfer-encoding|upgrade|expect|connection):([ -~]*)", re.IGNORECASE
)


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class LeanRequest:
    method: str  # GET or HEAD
    path: str  # percent-decoded
    query: dict[str, str]  # the first value of each name, as aiohttp's request.query.get
    keep_alive: bool
    fields: bytes  # the header lines as received, each led by CRLF (searched only where needed: a cookie)


@dataclass(slots=True)
class LeanResponse:
    """An answer. Its head up to the Date line is made here, once: a response kept for
    many clients (an LL-HLS part) costs each of them only the join of its pieces."""

    status: int
    content_type: str
    body: bytes
    headers: bytes = b""  # extra header lines, each ending in CRLF (see header_lines)
    head: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.head = (
            f"HTTP/1.1 {self.status} {_PHRASES[self.status]}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
        ).encode("latin-1") + self.headers


def header_lines(headers: dict[str, str]) -> bytes:
    """Extra headers in a LeanResponse's form; made once, sent with every answer."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


class Later:
    """What a fast route returns when it will call its `reply` with the answer later."""


LATER = Later()
Reply = Callable[[LeanResponse], None]
# A fast route: None when the path is not its own, else the answer, or LATER and one call
# of reply(answer) to come (ignored if the client has gone by then).
FastRoute = Callable[[LeanRequest, Reply], "LeanResponse | Later | None"]
# Called on an exception a fast route let through: the 500 to answer with.
InternalError = Callable[[], LeanResponse]


def parse_head(head: bytes) -> LeanRequest | None:
    """The request in `head` (without its blank line), or None unless it is a plain GET/HEAD."""
    match = _HEAD.fullmatch(head)
    if match is None:
        return None  # anything unusual (a control character, a folded or malformed line): aiohttp decides
    method, target, minor, fields = match.groups()
    if len(fields) > 4 * MAX_HEADERS and fields.count(b"\r\n") > MAX_HEADERS:
        return None  # (a line takes 4 bytes at least: most heads need no count)
    keep_alive = minor is not None
    for name, value in _SPECIAL_FIELDS.findall(fields):
        name = name.lower()
        if name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"upgrade" in tokens:
                return None
            keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
        elif name != b"content-length" or value.strip() != b"0":
            return None  # a body, an upgrade or an expectation: aiohttp's
    path, _, query = target.decode("ascii").partition("?")
    if "%" in path:
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
    return LeanRequest(
        "GET" if method == b"GET" else "HEAD",
        path.partition("#")[0],
        parse_query(query.partition("#")[0]),
        keep_alive,
        fields,
    )


def parse_query(query: str) -> dict[str, str]:
    """name=value pairs, first value of a name kept; decoded only where they need it."""
    values: dict[str, str] = {}
    if not query:
        return values
    if "%" in query or "+" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            values.setdefault(name, value)
        return values
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            values.setdefault(name, value)
    return values


_date_cache = (0, b"")


def date_line() -> bytes:
    """The Date header line, made once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode("latin-1"))
    return _date_cache[1]


_KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"
_TOO_MANY = b'{"bStatus":false,"strCode":"too many connections, try again later"}'
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY)
)
_CLOSE = b"Connection: close\r\n\r\n"
_received = memoryview(bytearray(65536))  # every connection reads into it and copies out at once


class HttpFront(asyncio.BufferedProtocol):
    """One connection: answers fast-route requests one at a time, in order, until a request
    is not one; then hands the connection to aiohttp. (Buffered: a plain Protocol's
    transport allocates a 256 kB bytes object per read, for requests of 200 bytes.)"""

    def __init__(self, site: FrontSite):
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answering: LeanRequest | None = None  # a request being answered LATER
        self.write_paused = False
        self.read_paused = False
        self.last_active = 0.0  # connected, or last answered
        self.head_since = 0.0  # when the first bytes of a head still incomplete came (0: none is)

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.last_active = now = time.monotonic()
        if not self.site.cap.admit(now):
            transport.write(_REFUSED)
            transport.close()
            return
        self.transport = transport
        self.site.lean[self] = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return _received

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer += _received[:nbytes]
        if self.answering is None and not self.write_paused:
            self._next()
        elif len(self.buffer) > MAX_PIPELINED and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.site.lean.pop(self, None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.answering is None:
            self._next()

    # -- requests ------------------------------------------------------------------

    def _next(self) -> None:
        """Answer the complete requests in the buffer while they can be answered at once."""
        while self.transport is not None and self.answering is None and not self.write_paused:
            end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._hand_off()
                    return
                if self.buffer and not self.head_since:
                    self.head_since = time.monotonic()
                if self.read_paused:
                    self.read_paused = False
                    self.transport.resume_reading()
                return
            self.head_since = 0.0
            request = parse_head(bytes(self.buffer[:end]))
            answer = None
            if request is not None:
                try:
                    answer = self.site.route(request, self._reply)
                except Exception:
                    log.exception("unhandled error on %s", request.path)
                    answer = self.site.internal_error()
            if answer is None:
                self._hand_off()
                return
            del self.buffer[: end + 4]
            assert request is not None
            if isinstance(answer, Later):
                self.answering = request
            else:
                self._write(request, answer)

    def _reply(self, response: LeanResponse) -> None:
        """A LATER answer."""
        request = self.answering
        if request is None or self.transport is None:
            return  # the connection is gone (or was handed on)
        self.answering = None
        self._write(request, response)
        self._next()

    def _write(self, request: LeanRequest, response: LeanResponse) -> None:
        transport = self.transport
        assert transport is not None
        end = _KEEP_ALIVE if request.keep_alive else _CLOSE
        if request.method == "GET":
            transport.write(b"".join((response.head, date_line(), end, response.body)))
        else:
            transport.write(response.head + date_line() + end)
        self.last_active = time.monotonic()
        if not request.keep_alive:
            transport.close()
            self.transport = None

    def _hand_off(self) -> None:
        """aiohttp takes the connection over, with what has been read of it."""
        transport = self.transport
        assert transport is not None
        self.site.lean.pop(self, None)
        self.site.cap.handed_off += 1
        self.transport = None
        if self.read_paused:
            transport.resume_reading()
        handler = self.site.aiohttp_protocol()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.buffer:
            handler.data_received(bytes(self.buffer))
        self.buffer.clear()

    def idle(self, now: float, for_seconds: float) -> bool:
        """No request answered for `for_seconds`, none in progress (but perhaps a head coming)."""
        return self.transport is not None and self.answering is None and now - self.last_active > for_seconds

    def close_if_idle(self, now: float) -> None:
        """After the keep-alive time without a request, or HEAD_TIMEOUT on one head."""
        if self.transport is None:
            return  # closed (by a `Connection: close` answer), its connection_lost to come
        if self.idle(now, KEEPALIVE_TIMEOUT) or (self.head_since and now - self.head_since > HEAD_TIMEOUT):
            self.transport.close()


class ConnectionCap:
    """At most `limit` connections over all listeners (gateway/web/fd_limit.py sets it below
    the process's file descriptor limit). A new connection at the limit takes the place of
    the longest-connected one that is idle (no answer for EVICTABLE_IDLE seconds, none in
    progress): its client, an abandoned or hostile one or a keep-alive client between
    requests, at worst reconnects. Connections that are busy (a request being answered, a
    WebSocket, a download) are never closed for a newcomer; when all are, the newcomer gets a
    503 and a close right away, so it neither hangs nor costs the others anything."""

    RECOUNT_INTERVAL = 0.1

    def __init__(self, limit: int, runner: web.BaseRunner):
        self.limit = limit
        self.runner = runner
        self.sites: list[FrontSite] = []
        # Connections handed to aiohttp, counted up here and recounted from aiohttp's own
        # list near the limit (they close without telling the front): never less than true.
        self.handed_off = 0
        self._recounted = 0.0

    def lean(self) -> int:
        return sum(len(site.lean) for site in self.sites)

    def admit(self, now: float) -> bool:
        """Whether a new connection may stay (perhaps having closed an idle one for it)."""
        if self.lean() + self.handed_off < self.limit:
            return True
        server = self.runner.server
        if server is not None and now - self._recounted > self.RECOUNT_INTERVAL:
            self._recounted = now
            self.handed_off = len(server.connections)
            if self.lean() + self.handed_off < self.limit:
                return True
        for site in self.sites:
            for connection in site.lean:
                if connection.idle(now, EVICTABLE_IDLE):
                    assert connection.transport is not None
                    connection.transport.close()
                    site.lean.pop(connection)
                    return True
        log.warning("connection limit (%d) reached, none idle: a new connection refused", self.limit)
        return False


class FrontSite(web.TCPSite):
    """A TCPSite whose connections start with HttpFront instead of aiohttp's protocol."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        route: FastRoute,
        internal_error: InternalError,
        cap: ConnectionCap,
        ssl_context: ssl.SSLContext | None = None,
    ):
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=BACKLOG)
        self.route = route
        self.internal_error = internal_error
        self.cap = cap
        self.lean: dict[HttpFront, None] = {}  # the front's own connections, oldest first
        self._sweeper: asyncio.TimerHandle | None = None

    def aiohttp_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return server()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers with the runner, as TCPSite.start does
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpFront(self),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=HEAD_TIMEOUT if self._ssl_context is not None else None,
        )
        self.cap.sites.append(self)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.lean):
            connection.close_if_idle(now)
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self in self.cap.sites:
            self.cap.sites.remove(self)
        for connection in list(self.lean):
            if connection.transport is not None:
                connection.transport.close()
        await super().stop()
