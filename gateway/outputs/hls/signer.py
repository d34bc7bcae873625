"""Signed, short-lived HLS credentials for players that cannot log in (GetHlsUrl)."""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from gateway.auth import AuthError

SIGNED_KEEP = 30.0  # an expired token keeps working while its player polls at least this often


class HlsSigner:
    """`hlstoken` = "<expiry>.<HMAC-SHA256(key, token|expiry), 32 hex>", for one stream.

    It starts a playback until its expiry. A player that started in time keeps going: an
    expired token is still taken while it is used at least every SIGNED_KEEP seconds. The
    key is made at start-up, so a restart ends all tokens (as it ends sessions).
    """

    def __init__(self, key: bytes):
        self.key = key
        self.in_use: dict[str, float] = {}
        self._pruned = time.monotonic()

    def _mac(self, token: str, expiry: int) -> str:
        return hmac.new(self.key, f"{token}|{expiry}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, token: str, seconds: int) -> str:
        expiry = int(time.time()) + seconds
        return f"{expiry}.{self._mac(token, expiry)}"

    def check(self, value: str, token: str) -> None:
        expiry_text, _, mac = value.partition(".")
        if not expiry_text.isdigit() or not hmac.compare_digest(mac, self._mac(token, int(expiry_text))):
            raise AuthError("invalid hlstoken")
        now = time.monotonic()
        if now - self._pruned > SIGNED_KEEP:
            self.in_use = {k: t for k, t in self.in_use.items() if now - t < SIGNED_KEEP}
            self._pruned = now
        if int(expiry_text) < time.time() and now - self.in_use.get(value, -math.inf) >= SIGNED_KEEP:
            raise AuthError("hlstoken expired")
        self.in_use[value] = now
