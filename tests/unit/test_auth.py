"""Auth (gateway/auth.py): sessions end what they opened, password checks off the event
loop and of equal cost for unknown users, lockouts per user and address, bounded records."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway import auth as auth_module
from gateway.auth import Auth, AuthBusy, AuthError, default_password_users, hash_md5
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_auth(clock: Clock | None = None, iterations: int = 1_000) -> Auth:
    users = [
        {
            "strUser": "admin",
            "strPasswd": hash_md5(md5("secret"), iterations=iterations),
            "strUserType": "Administrator",
        },
        {"strUser": "viewer", "strPasswd": hash_md5(md5("12345"), iterations=iterations), "strUserType": "Viewer"},
    ]
    return Auth(users, timeout=60, fail_limit=3, lock_seconds=30, clock=clock or Clock())


def run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return run_async(make)


def test_ending_a_session_runs_its_closers_once_with_the_reason():
    auth, reasons = make_auth(), []

    async def main() -> None:
        a = await auth.login("admin", md5("secret"), "10.0.0.1")
        b = await auth.login("admin", md5("secret"), "10.0.0.2")
        auth.on_end(a, lambda r: reasons.append(("a1", r)))
        unregister = auth.on_end(a, lambda r: reasons.append(("a2", r)))
        auth.on_end(b, lambda r: reasons.append(("b", r)))
        unregister()  # what closed by itself is not closed again
        auth.logout(a)
        auth.logout(a)
        assert reasons == [("a1", "logged out")]
        with pytest.raises(AuthError, match="session ended: logged out"):
            auth.check(a.id)
        auth.on_end(a, lambda r: reasons.append(("late", r)))  # opened as it ended: closed at once
        assert reasons[-1] == ("late", "session ended")
        auth.check(b.id)

    run(main)


def test_a_changed_password_ends_the_users_sessions():
    auth, reasons = make_auth(), []

    async def main() -> None:
        mine = await auth.login("admin", md5("secret"), "10.0.0.1")
        other = await auth.login("viewer", md5("12345"), "10.0.0.1")
        auth.on_end(mine, reasons.append)
        auth.on_end(other, lambda r: reasons.append("viewer: " + r))
        await auth.update_password("admin", md5("secret"), md5("new"), "10.0.0.1")
        assert reasons == ["password changed"]
        auth.check(other.id)

    run(main)


def test_expired_sessions_are_swept_and_their_closers_run():
    clock, reasons = Clock(), []
    auth = make_auth(clock)

    async def main() -> None:
        session = await auth.login("admin", md5("secret"), "10.0.0.1")
        auth.on_end(session, reasons.append)
        clock.now += 59
        auth.sweep()
        assert reasons == [] and session.id in auth.sessions
        auth.keepalive(session)
        clock.now += 61
        auth.sweep()  # nobody checked it: the sweep ends it
        assert reasons == ["session expired"] and auth.sessions == {}
        with pytest.raises(AuthError, match="session expired"):
            auth.check(session.id)  # told why, though swept

    run(main)


def test_unknown_users_cost_a_hash_as_known_ones_do(monkeypatch):
    auth, checked = make_auth(), []
    verify = auth_module.verify_md5

    def counting(md5_hex: str, stored: str) -> bool:
        checked.append(threading.current_thread().name)
        return verify(md5_hex, stored)

    monkeypatch.setattr(auth_module, "verify_md5", counting)

    async def main() -> None:
        for name in ("admin", "nobody"):
            with pytest.raises(AuthError) as e:
                await auth.login(name, md5("wrong"), "10.0.0.1")
            assert "wrong user or password" in str(e.value)

    run(main)
    # Both checked a PBKDF2 hash, and neither on the event loop's thread.
    assert len(checked) == 2 and all(name.startswith("pbkdf2") for name in checked)
    assert auth._dummy.split("$")[1] == str(auth_module.PBKDF2_ITERATIONS)


def test_login_timing_does_not_tell_known_users():
    auth = Auth([{"strUser": "admin", "strPasswd": hash_md5(md5("x")), "strUserType": "Administrator"}], 60, 1000, 1)

    async def median(name: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with pytest.raises(AuthError):
                await auth.login(name, md5("wrong"), "10.0.0.1")
            times.append(time.perf_counter() - start)
        return sorted(times)[2]

    async def main() -> tuple[float, float]:
        return await median("admin"), await median("nobody")

    known, unknown = run(main)
    assert unknown > known / 3, (known, unknown)  # before: 0.5 ms against 27 ms


def test_lockout_is_per_user_and_address():
    clock = Clock()
    auth = make_auth(clock)

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(AuthError):
                await auth.login("admin", md5("wrong"), "10.6.6.6")
        with pytest.raises(AuthError, match="locked"):
            await auth.login("admin", md5("secret"), "10.6.6.6")
        await auth.login("admin", md5("secret"), "10.0.0.1")  # the attacker did not lock the user out here
        clock.now += 31
        await auth.login("admin", md5("secret"), "10.6.6.6")

    run(main)


def test_a_wrong_old_password_counts_as_a_failed_login():
    auth = make_auth()

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(AuthError, match="wrong user or password"):
                await auth.update_password("admin", md5("wrong"), md5("new"), "10.6.6.6")
        with pytest.raises(AuthError, match="locked"):
            await auth.update_password("admin", md5("secret"), md5("new"), "10.6.6.6")
        with pytest.raises(AuthError, match="locked"):
            await auth.login("admin", md5("secret"), "10.6.6.6")

    run(main)


def test_failure_records_are_bounded_and_swept(monkeypatch):
    monkeypatch.setattr(auth_module, "MAX_FAILURE_RECORDS", 50)
    clock = Clock()
    auth = make_auth(clock)
    auth._dummy = hash_md5(md5("x"), iterations=1_000)  # as cheap as the users' hashes here

    async def main() -> None:
        for i in range(200):
            with pytest.raises(AuthError):
                await auth.login(f"name{i}", md5("wrong"), "10.6.6.6")
        assert len(auth.failures) == 50 and ("name199", "10.6.6.6") in auth.failures
        clock.now += 31
        auth.sweep()
        assert auth.failures == {}

    run(main)


def test_a_flood_of_password_checks_is_bounded(monkeypatch):
    monkeypatch.setattr(auth_module, "MAX_HASHING", 4)
    auth = make_auth(iterations=200_000)

    async def main() -> tuple[list[Any], list[Any]]:
        flood = [auth.login("admin", md5("wrong"), "10.6.6.6") for _ in range(10)]
        others = [auth.login("admin", md5("secret"), f"10.0.0.{i}") for i in range(4)]
        results = await asyncio.gather(*flood, *others, return_exceptions=True)
        return results[:10], results[10:]

    flood, others = run(main)
    # One address gets MAX_HASHING_PER_ADDRESS checks at once; the others share the rest.
    assert sum(isinstance(r, AuthBusy) for r in flood) == 10 - auth_module.MAX_HASHING_PER_ADDRESS
    assert sum(type(r) is AuthError for r in flood) == auth_module.MAX_HASHING_PER_ADDRESS
    assert sum(isinstance(r, AuthBusy) for r in others) == 2 and sum(hasattr(r, "id") for r in others) == 2
    assert auth._pool._max_workers == auth_module.HASH_THREADS and not auth._hashing


def test_default_password_users():
    assert default_password_users(make_auth().users) == ["viewer"]
