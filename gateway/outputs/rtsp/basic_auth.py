"""RTSP Basic authentication (RFC 7617) against the h5ss users: Viewer and up to read,
Operator and up to publish.

The gateway keeps only a salted hash of each password's MD5, so it can check a password
it is sent but never compute a Digest response: Basic it is, and RTSPS keeps the password
off the wire. The check is Login's (auth.Auth.verify): the same thread pool, the same
count of failures per user and address and the same lock, so a guesser is throttled. A
connection's credentials are checked once; later requests with the same header pass.
"""

from __future__ import annotations

import binascii
import hashlib
from base64 import b64decode

from gateway.auth import ROLE_RANK, Auth, AuthBusy, AuthError

REALM = "h5ss"
LEAST_ROLE = "Viewer"


class Refused(Exception):
    """The request is not let in: `status` is 401 (ask again) or 503 (too many checks at once)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None if it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


class BasicLogin:
    """One connection's login: None as `auth` when http.bAuth is off (everyone is let in)."""

    def __init__(self, auth: Auth | None, address: str, least_role: str = LEAST_ROLE):
        self.auth = auth
        self.address = address
        self.least_role = least_role
        self.passed: str | None = None  # the Authorization header that was checked and let in

    async def check(self, header: str) -> None:
        """Refused unless `header` holds the credentials of a user of the least role or higher."""
        if self.auth is None or (header and header == self.passed):
            return
        pair = credentials(header)
        if pair is None:
            raise Refused(401, "credentials required")
        user, password = pair
        try:
            role = await self.auth.verify(user, hashlib.md5(password.encode()).hexdigest(), self.address)
        except AuthBusy as e:
            raise Refused(503, str(e)) from None
        except AuthError as e:
            raise Refused(401, str(e)) from None
        if ROLE_RANK.get(role, -1) < ROLE_RANK[self.least_role]:
            raise Refused(401, f"{user} is a {role}: {self.least_role} or higher needed")
        self.passed = header

    @staticmethod
    def challenge() -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{REALM}"'}
