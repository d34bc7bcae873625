"""Signed HLS URLs (outputs/hls/signer.py): bound to their stream and the session that
asked for them, a hard end past their expiry, and malformed tokens refused as such."""

from __future__ import annotations

import hashlib

import pytest

from gateway.auth import Auth, AuthError, hash_md5
from gateway.outputs.hls.signer import SIGNED_KEEP, SIGNED_OVERRUN, HlsSigner
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def signed(clock: Clock) -> tuple[Auth, HlsSigner, str]:
    md5 = hashlib.md5(b"x").hexdigest()
    auth = Auth([{"strUser": "u", "strPasswd": hash_md5(md5, iterations=1000), "strUserType": "Viewer"}], 600, 5, 30)
    auth.clock = clock
    session = run_async(lambda: auth.login("u", md5, "10.0.0.1"))
    signer = HlsSigner(b"k" * 32, auth, clock)
    return auth, signer, signer.sign("cam", 60, session)


def test_signed_tokens_are_bound_to_their_stream():
    _, signer, value = signed(Clock())
    signer.check(value, "cam")
    forged = value[:-1] + ("1" if value.endswith("0") else "0")
    for bad, token in ((value, "other"), (forged, "cam"), ("junk", "cam"), ("", "cam")):
        with pytest.raises(AuthError):
            signer.check(bad, token)


@pytest.mark.parametrize("value", ["\u00b2.0." + "0" * 32, "9" * 5000 + ".0." + "0" * 32, "1.x", "12.0.0." + "0" * 32])
def test_malformed_tokens_are_refused_not_raised(value):
    _, signer, _ = signed(Clock())
    with pytest.raises(AuthError, match="invalid hlstoken"):
        signer.check(value, "cam")


def test_a_token_ends_with_its_session():
    clock = Clock()
    auth, signer, value = signed(clock)
    auth.logout(next(iter(auth.sessions.values())))
    with pytest.raises(AuthError, match="session has ended"):
        signer.check(value, "cam")
    assert signer.sessions == {}


def test_an_expired_token_goes_on_while_polled_but_not_past_the_hard_end():
    clock = Clock()
    auth, signer, value = signed(clock)
    session = next(iter(auth.sessions.values()))
    start = clock.now
    signer.check(value, "cam")
    while clock.now + SIGNED_KEEP < start + 60 + SIGNED_OVERRUN:
        clock.now += SIGNED_KEEP - 1
        auth.keepalive(session)
        signer.check(value, "cam")  # expired, but its player polls: it goes on
    clock.now = start + 60 + SIGNED_OVERRUN + 1
    auth.keepalive(session)
    with pytest.raises(AuthError, match="expired"):
        signer.check(value, "cam")


def test_an_expired_token_never_used_is_refused():
    clock = Clock()
    _, signer, value = signed(clock)
    clock.now += 61
    with pytest.raises(AuthError, match="expired"):
        signer.check(value, "cam")
