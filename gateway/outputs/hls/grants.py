"""HLS for the h5s HLS player, whose URLs carry no credential (PROTOCOLS.md §2).

`H5sPlayerHls` sets `video.src` to `hls/{v1|v2}/{token}/hls.m3u8` and, beside it, holds
`api/v1/h5swscmnapi?token&session` open. While such a socket with a live session is open
(and GRACE seconds after), the browser that opened it may fetch that token's HLS files.

The browser is named by a cookie the socket's handshake response sets, not by its address:
an address is shared by every client behind one NAT or reverse proxy (behind a proxy on the
gateway's host, by every client), so one viewer's socket would open the stream to all of
them. Chromium's own HLS player sends the page's cookies with its playlist and segment
requests (tests/test_hls.py checks it). The cookie is HttpOnly and SameSite=Strict: pages
of another site (or browsers that refuse the cookie) get no grant and need `session=` or
GetHlsUrl.

The cookie's value: the one the browser already sends, else one derived from the socket's
session and address, so that a page's sockets opened at once (a grid of players) set the
same value and none overwrites the others'.

The stock player opens its socket and sets `video.src` in the same breath, so the first
playlist request can be sent before the cookie is set: a playlist request without a grant
is held (HOLD) until a socket of its browser is granted that token, then answered. One
that came without the cookie cannot say whose it is: once a socket for the token has
opened (just before it came, or while it waits), it is redirected to itself (http.py),
SETTLE after the socket's handshake, by when the browser has stored the cookie it asks
again with. If that socket was another browser's, the request comes again without the
cookie and waits for the next socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

COOKIE = "h5ss_hls"
# After a browser's last socket for a token closes: its requests on their way, a page
# reload, the player's own restart (its watchdog closes the socket, opens another and
# reloads the video) go through; a closed player loses access about a playlist window later.
GRACE = 10.0
HOLD = 3.0  # how long a playlist request without a grant waits for its browser's socket
SETTLE = 0.25  # a redirect waits this long after the socket's handshake: the cookie is stored by then

_VALUE = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 bytes, base64url
# The cookie in a request's header lines (gateway/web/front.py LeanRequest.fields).
_IN_FIELDS = re.compile(rb"\r\n(?i:cookie):(?:[^\r]*?[; ])?" + COOKIE.encode() + rb"=([A-Za-z0-9_-]{22})(?=;|\r|$)")


def client_in(fields: bytes) -> str | None:
    """The browser's grant cookie in a request's header lines, or None."""
    m = _IN_FIELDS.search(fields)
    return None if m is None else m[1].decode()


@dataclass(slots=True)
class Grant:
    sockets: int = 0  # open h5swscmnapi sockets of this browser for this token
    until: float = math.inf  # with none open: when the grace ends


@dataclass(slots=True, eq=False)
class Waiter:
    """A held playlist request: its browser's cookie (None: it sent none) and what to call,
    True when the grant came, False when HOLD ran out."""

    client: str | None
    resume: Callable[[bool], None]
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class HlsGrants:
    """Which browser (cookie value) may fetch which token's HLS, by its open sockets."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.monotonic):
        self.key = key
        self.clock = clock
        self.grants: dict[tuple[str, str], Grant] = {}  # (client, token)
        self.waiting: dict[str, list[Waiter]] = {}  # by token
        self.opened: dict[str, float] = {}  # by token: when a socket was last granted it (for HOLD)

    # -- the socket's side -----------------------------------------------------------

    def client(self, cookie: str | None, session_id: str, address: str) -> str:
        """The cookie value a socket grants to: the browser's own, else one made from its
        session and address (only pages that hold the same session share it)."""
        if cookie is not None and _VALUE.fullmatch(cookie):
            return cookie
        digest = hmac.new(self.key, f"{session_id} {address}".encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def set_cookie(client: str, secure: bool) -> str:
        """The handshake response's Set-Cookie value (a session cookie, for every path)."""
        return f"{COOKIE}={client}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

    def open(self, client: str, token: str) -> None:
        """A socket of `client` for `token` is open and authenticated: grant, and answer its waiters."""
        self._prune()
        grant = self.grants.setdefault((client, token), Grant())
        grant.sockets += 1
        grant.until = math.inf
        self.opened[token] = self.clock()
        waiters = self.waiting.pop(token, [])
        kept = [w for w in waiters if w.client not in (None, client)]
        if kept:
            self.waiting[token] = kept
        for w in waiters:
            if w.client in (None, client):
                if w.timer is not None:
                    w.timer.cancel()
                if w.client is None:
                    asyncio.get_running_loop().call_later(SETTLE, w.resume, True)
                else:
                    w.resume(True)

    def close(self, client: str, token: str, grace: bool = True) -> None:
        """That socket is closed; its grant lasts GRACE more seconds (`grace`: it ended well,
        not by its session ending) once the browser's last such socket is gone."""
        grant = self.grants.get((client, token))
        if grant is None:
            return
        grant.sockets -= 1
        if grant.sockets == 0:
            if grace:
                grant.until = self.clock() + GRACE
            else:
                del self.grants[client, token]
        self._prune()

    def _prune(self) -> None:
        """Forget grants whose grace is over (at each socket's open and close: the sockets are few)."""
        now = self.clock()
        for key in [key for key, grant in self.grants.items() if grant.until <= now]:
            del self.grants[key]
        for token in [token for token, at in self.opened.items() if now - at >= HOLD]:
            del self.opened[token]

    # -- the request's side --------------------------------------------------------------

    def allows(self, client: str | None, token: str) -> bool:
        """Whether `client` (the request's cookie) may fetch `token` now: one dict lookup."""
        grant = self.grants.get((client, token)) if client is not None else None
        return grant is not None and (grant.sockets > 0 or self.clock() < grant.until)

    def wait(self, client: str | None, token: str, resume: Callable[[bool], None], recent: bool = True) -> None:
        """Call resume(True) when a socket of `client` is granted `token`, or resume(False)
        after HOLD seconds. For None (no cookie: any browser's socket), resume(True) SETTLE
        after a socket is granted `token`, or, when `recent`, was less than HOLD ago."""
        loop = asyncio.get_running_loop()
        if client is None and recent:
            since = self.clock() - self.opened.get(token, -math.inf)
            if since < HOLD:
                loop.call_later(max(0.0, SETTLE - since), resume, True)
                return
        waiter = Waiter(client, resume)
        waiter.timer = loop.call_later(HOLD, self._expire, token, waiter)
        self.waiting.setdefault(token, []).append(waiter)

    def _expire(self, token: str, waiter: Waiter) -> None:
        waiters = self.waiting.get(token, [])
        if waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self.waiting[token]
            waiter.resume(False)


GRANTS_KEY = web.AppKey("hls_grants", HlsGrants)
