"""Signed, short-lived HLS credentials for players that cannot log in (GetHlsUrl)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable

from gateway.auth import Auth, AuthError, Session

SIGNED_KEEP = 30.0  # an expired token keeps working while its player polls at least this often ...
SIGNED_OVERRUN = 3600.0  # ... but never longer than this after its expiry
_NO_SESSION = "0"  # the session tag of a token made with logins off
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{16}|0)\.([0-9a-f]{32})")


class HlsSigner:
    """`hlstoken` = "<expiry>.<session tag>.<HMAC-SHA256(key, token|expiry|tag), 32 hex>",
    for one stream, and only while the session that asked for it lives.

    It starts a playback until its expiry. A player that started in time keeps going: an
    expired token is still taken while it is used at least every SIGNED_KEEP seconds, up
    to SIGNED_OVERRUN after its expiry (a hard end: the page asks GetHlsUrl again). The
    key is made at start-up, so a restart ends all tokens (as it ends sessions).
    """

    def __init__(self, key: bytes, auth: Auth, clock: Callable[[], float] = time.time):
        self.key = key
        self.auth = auth
        self.clock = clock
        self.in_use: dict[str, float] = {}
        self.sessions: dict[str, Session] = {}  # by tag: the live sessions that have signed tokens
        self._pruned = clock()

    def _mac(self, token: str, expiry: int, tag: str) -> str:
        return hmac.new(self.key, f"{token}|{expiry}|{tag}".encode(), hashlib.sha256).hexdigest()[:32]

    def _tag(self, session: Session | None) -> str:
        """A name of the session for the URL (not its id: the URL is handed to players)."""
        if session is None:
            return _NO_SESSION
        tag = hmac.new(self.key, f"session|{session.id}".encode(), hashlib.sha256).hexdigest()[:16]
        if tag not in self.sessions:
            self.sessions[tag] = session
            self.auth.on_end(session, lambda _: self.sessions.pop(tag, None))
        return tag

    def sign(self, token: str, seconds: int, session: Session | None) -> str:
        expiry = int(self.clock()) + seconds
        tag = self._tag(session)
        return f"{expiry}.{tag}.{self._mac(token, expiry, tag)}"

    def check(self, value: str, token: str) -> None:
        """AuthError unless `value` is a live token for `token` (with logins on)."""
        m = _TOKEN.fullmatch(value)
        if m is None:
            raise AuthError("invalid hlstoken")
        expiry, tag, mac = int(m[1]), m[2], m[3]
        if not hmac.compare_digest(mac, self._mac(token, expiry, tag)):
            raise AuthError("invalid hlstoken")
        session = self.sessions.get(tag)
        if session is None:
            raise AuthError("hlstoken's session has ended")
        self.auth.check(session.id)  # expired since the last sweep
        now = self.clock()
        if now - self._pruned > SIGNED_KEEP:
            self.in_use = {k: t for k, t in self.in_use.items() if now - t < SIGNED_KEEP}
            self._pruned = now
        if expiry < now and (now - self.in_use.get(value, -math.inf) >= SIGNED_KEEP or now > expiry + SIGNED_OVERRUN):
            self.in_use.pop(value, None)
            raise AuthError("hlstoken expired")
        self.in_use[value] = now
