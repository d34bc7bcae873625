"""Users, sessions and roles.

h5stream clients send the MD5 hex of the password. We never keep that MD5 as it is:
the config stores a salted PBKDF2 of it ("pbkdf2_sha256$iterations$salt$hash"), and a
bare MD5 from an old h5ss.conf is upgraded on the first start.

Roles: Viewer < Operator < Administrator (see ROLE_RANK and README's matrix).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

ROLE_RANK = {"Viewer": 0, "Operator": 1, "Administrator": 2}
PBKDF2_ITERATIONS = 120_000
_MD5_RE = re.compile(r"[0-9a-f]{32}")


def hash_md5(md5_hex: str, salt: str | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", md5_hex.lower().encode(), bytes.fromhex(salt), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${digest.hex()}"


def verify_md5(md5_hex: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, _ = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    return hmac.compare_digest(hash_md5(md5_hex, salt, int(iterations)), stored)


def is_md5(value: str) -> bool:
    return bool(_MD5_RE.fullmatch(value.lower()))


def upgrade_users(users: list[dict[str, Any]]) -> bool:
    """Replace bare MD5 passwords by PBKDF2 ones; True if anything changed."""
    changed = False
    for user in users:
        if is_md5(user["strPasswd"]):
            user["strPasswd"] = hash_md5(user["strPasswd"])
            user.pop("strPasswdComment", None)
            changed = True
    return changed


@dataclass
class Session:
    id: str
    user: str
    role: str
    expires: float


class AuthError(Exception):
    """Login or session refused; the message is safe to show."""


class Auth:
    def __init__(self, users: list[dict[str, Any]], timeout: int, fail_limit: int, lock_seconds: int):
        self.users = users  # the config's own list: changes are saved with the config
        self.timeout = timeout
        self.fail_limit = fail_limit
        self.lock_seconds = lock_seconds
        self.sessions: dict[str, Session] = {}
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def _user(self, name: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["strUser"] == name), None)

    def login(self, name: str, md5_hex: str) -> Session:
        now = time.monotonic()
        locked = self._locked_until.get(name, 0) - now
        if locked > 0:
            raise AuthError(f"user locked after {self.fail_limit} failed logins; try again in {int(locked) + 1} s")
        user = self._user(name)
        if user is None or not is_md5(md5_hex) or not verify_md5(md5_hex, user["strPasswd"]):
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
            if failures >= self.fail_limit:
                self._failures[name] = 0
                self._locked_until[name] = now + self.lock_seconds
                raise AuthError(
                    f"wrong user or password; user locked for {self.lock_seconds} s after {failures} failed logins"
                )
            raise AuthError(f"wrong user or password ({self.fail_limit - failures} tries left before lock)")
        self._failures.pop(name, None)
        session = Session(str(uuid.uuid4()), name, user["strUserType"], now + self.timeout)
        self.sessions[session.id] = session
        return session

    def check(self, session_id: str | None) -> Session:
        """The live session, extended no further; AuthError if missing/expired/forged."""
        if not session_id:
            raise AuthError("missing session")
        session = self.sessions.get(session_id)
        if session is None:
            raise AuthError("invalid session")
        if session.expires < time.monotonic():
            del self.sessions[session_id]
            raise AuthError("session expired")
        return session

    def keepalive(self, session: Session) -> None:
        session.expires = time.monotonic() + self.timeout

    def logout(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    def update_password(self, name: str, old_md5: str, new_md5: str) -> None:
        user = self._user(name)
        if user is None or not verify_md5(old_md5, user["strPasswd"]):
            raise AuthError("old password is wrong")
        if not is_md5(new_md5):
            raise AuthError("new password must be the MD5 hex of the password")
        user["strPasswd"] = hash_md5(new_md5)
        # Other sessions of this user end: a changed password should lock out old logins.
        for sid in [s.id for s in self.sessions.values() if s.user == name]:
            del self.sessions[sid]


def allowed(session: Session, role: str) -> bool:
    return ROLE_RANK.get(session.role, -1) >= ROLE_RANK[role]
