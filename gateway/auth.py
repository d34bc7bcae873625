"""Users, sessions and roles.

h5stream clients send the MD5 hex of the password. We never keep that MD5 as it is:
the config stores a salted PBKDF2 of it ("pbkdf2_sha256$iterations$salt$hash"), and a
bare MD5 from an old h5ss.conf is upgraded on the first start.

Roles: Viewer < Operator < Administrator (see ROLE_RANK and README's matrix).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

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


DEFAULT_PASSWORD_MD5 = hashlib.md5(b"12345").hexdigest()  # h5stream's admin/12345


def is_md5(value: str) -> bool:
    return _MD5_RE.fullmatch(value.lower()) is not None


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


class AuthBusy(AuthError):
    """Too many password checks waiting: the caller should try again (503)."""


Closer = Callable[[str], object]  # told the reason a session ended; must not block


@dataclass(slots=True)
class Failures:
    """Wrong passwords for one user name from one client address."""

    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


HASH_THREADS = 2  # PBKDF2 runs here, off the event loop (it releases the GIL)
MAX_HASHING = 32  # checks running or queued; beyond, a login is refused with AuthBusy ...
MAX_HASHING_PER_ADDRESS = HASH_THREADS  # ... or this many from one address: one client cannot queue them all
MAX_FAILURE_RECORDS = 10_000  # (user, address) records kept; the oldest go first
MAX_ENDED = 1_000  # ended sessions whose reason check() still tells
_DUMMY_MD5 = "0" * 32


class Auth:
    """Sessions, and the password checks that make them.

    Ending a session (Logout, a changed password, expiry) runs the closers registered for
    it (`on_end`) by what it opened: its WebSockets, WebRTC peers, HLS grants and signed
    URLs. Wrong passwords are counted per user name and client address, so that an
    attacker cannot lock a user out for everyone; the records are bounded and swept.
    """

    def __init__(
        self,
        users: list[dict[str, Any]],
        timeout: int,
        fail_limit: int,
        lock_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.users = users  # the config's own list: changes are saved with the config
        self.timeout = timeout
        self.fail_limit = fail_limit
        self.lock_seconds = lock_seconds
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.failures: dict[tuple[str, str], Failures] = {}  # oldest failure first
        self._closers: dict[str, dict[Closer, None]] = {}  # by session id, in the order registered
        self._ended: dict[str, str] = {}  # recently ended session ids: why (oldest first)
        self._pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="pbkdf2")
        self._hashing: Counter[str] = Counter()  # checks running or queued, by client address
        # An unknown user's password is checked against this, so that it takes as long as a known one's.
        self._dummy = hash_md5(_DUMMY_MD5)
        self._fake_salt_key = secrets.token_bytes(32)  # link_challenge's salts of unknown users

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _user(self, name: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["strUser"] == name), None)

    async def _in_pool(self, work: Callable[[], Any], address: str) -> Any:
        if self._hashing[address] >= MAX_HASHING_PER_ADDRESS or self._hashing.total() >= MAX_HASHING:
            raise AuthBusy("too many password checks at once; try again")
        self._hashing[address] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            self._hashing[address] -= 1
            if not self._hashing[address]:
                del self._hashing[address]

    def _check_lock(self, key: tuple[str, str]) -> None:
        now = self.clock()
        record = self.failures.get(key)
        if record is not None and record.locked_until > now:
            wait = int(record.locked_until - now) + 1
            raise AuthError(f"user locked after {self.fail_limit} failed logins; try again in {wait} s")

    async def _verify(self, name: str, md5_hex: str, address: str) -> dict[str, Any]:
        """The user whose password `md5_hex` is; AuthError (a failure counted) otherwise."""
        key = (name, address)
        self._check_lock(key)
        user = self._user(name)
        stored = self._dummy if user is None else user["strPasswd"]
        right = is_md5(md5_hex) and await self._in_pool(partial(verify_md5, md5_hex, stored), address)
        if user is None or not right:
            raise self._failed(key)
        self.failures.pop(key, None)
        return user

    def _failed(self, key: tuple[str, str]) -> AuthError:
        now = self.clock()
        record = self.failures.pop(key, None) or Failures()
        self.failures[key] = record  # last in the order: the oldest failure stays first
        record.count += 1
        record.last = now
        while len(self.failures) > MAX_FAILURE_RECORDS:
            del self.failures[next(iter(self.failures))]
        if record.count >= self.fail_limit:
            count, record.count = record.count, 0
            record.locked_until = now + self.lock_seconds
            return AuthError(
                f"wrong user or password; user locked for {self.lock_seconds} s after {count} failed logins"
            )
        return AuthError(f"wrong user or password ({self.fail_limit - record.count} tries left before lock)")

    def link_challenge(self, name: str) -> tuple[int, str]:
        """(iterations, salt) of `name`'s stored hash, for a cloud link's challenge. An
        unknown user gets a salt derived from the name (the same each time), so the answer
        does not tell whether the user exists."""
        user = self._user(name)
        parts = user["strPasswd"].split("$") if user is not None else []
        if len(parts) == 4 and parts[0] == "pbkdf2_sha256":
            return int(parts[1]), parts[2]
        fake = hmac.new(self._fake_salt_key, name.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return PBKDF2_ITERATIONS, fake.hexdigest()[:32]

    def verify_link(self, name: str, address: str, proof_holds: Callable[[bytes], bool]) -> str:
        """The role of `name` when `proof_holds(K)` accepts K, the PBKDF2 digest stored for
        it (a cloud link's challenge-response: formats/cloud_link.py); refused, counted and
        locked out as Login is."""
        key = (name, address)
        self._check_lock(key)
        user = self._user(name)
        parts = user["strPasswd"].split("$") if user is not None else []
        digest = bytes.fromhex(parts[3]) if len(parts) == 4 and parts[0] == "pbkdf2_sha256" else b""
        if user is None or not digest or not proof_holds(digest):
            raise self._failed(key)
        self.failures.pop(key, None)
        return str(user["strUserType"])

    async def verify(self, name: str, md5_hex: str, address: str) -> str:
        """The role of the user whose password `md5_hex` is, without a session (RTSP Basic
        sends the password on each request); refused, counted and locked out as Login is."""
        user = await self._verify(name, md5_hex, address)
        return str(user["strUserType"])

    async def login(self, name: str, md5_hex: str, address: str) -> Session:
        """A new session; AuthError if refused (AuthBusy: too many checks at once)."""
        user = await self._verify(name, md5_hex, address)
        session = Session(str(uuid.uuid4()), name, user["strUserType"], self.clock() + self.timeout)
        self.sessions[session.id] = session
        return session

    def grant(self, user: str, role: str) -> Session:
        """A session made without a password, for the gateway's own calls (a command its
        cloud forwards, api/forward.py); the caller ends it when done."""
        session = Session(str(uuid.uuid4()), user, role, self.clock() + self.timeout)
        self.sessions[session.id] = session
        return session

    def check(self, session_id: str | None) -> Session:
        """The live session, extended no further; AuthError if missing/expired/forged."""
        if not session_id:
            raise AuthError("missing session")
        session = self.sessions.get(session_id)
        if session is None:
            raise AuthError(self._ended.get(session_id, "invalid session"))
        if session.expires < self.clock():
            self.end(session, "session expired")
            raise AuthError("session expired")
        return session

    def keepalive(self, session: Session) -> None:
        session.expires = self.clock() + self.timeout

    def logout(self, session: Session) -> None:
        self.end(session, "logged out")

    def on_end(self, session: Session | None, closer: Closer) -> Callable[[], None]:
        """Call `closer(reason)` when `session` ends (now, if it has); returns what
        unregisters it. With logins off (None) there is nothing to end."""
        if session is None:
            return lambda: None
        if session.id not in self.sessions:
            closer("session ended")
            return lambda: None
        closers = self._closers.setdefault(session.id, {})
        closers[closer] = None
        return lambda: closers.pop(closer, None)

    def end(self, session: Session, reason: str) -> None:
        """Forget `session` and close what it opened."""
        self.sessions.pop(session.id, None)
        self._ended[session.id] = reason if reason == "session expired" else f"session ended: {reason}"
        while len(self._ended) > MAX_ENDED:
            del self._ended[next(iter(self._ended))]
        for closer in self._closers.pop(session.id, {}):
            try:
                closer(reason)
            except Exception:
                log.exception("closing what session of %s opened", session.user)

    def sweep(self) -> None:
        """End expired sessions; forget failures older than a lock (a streak ends then)."""
        now = self.clock()
        for session in [s for s in self.sessions.values() if s.expires < now]:
            self.end(session, "session expired")
        stale = now - self.lock_seconds
        for key in [k for k, r in self.failures.items() if r.last < stale and r.locked_until < now]:
            del self.failures[key]

    async def update_password(self, name: str, old_md5: str, new_md5: str, address: str) -> None:
        """A wrong old password counts as a failed login (and is locked out the same way)."""
        if not is_md5(new_md5):
            raise AuthError("new password must be the MD5 hex of the password")
        user = await self._verify(name, old_md5, address)
        user["strPasswd"] = await self._in_pool(partial(hash_md5, new_md5), address)
        # The user's sessions end: a changed password should lock out old logins.
        for session in [s for s in self.sessions.values() if s.user == name]:
            self.end(session, "password changed")


def default_password_users(users: list[dict[str, Any]]) -> list[str]:
    """The users whose password is still h5stream's default (12345)."""
    return [u["strUser"] for u in users if verify_md5(DEFAULT_PASSWORD_MD5, u["strPasswd"])]


def allowed(session: Session, role: str) -> bool:
    return ROLE_RANK.get(session.role, -1) >= ROLE_RANK[role]
