"""The h5s HLS player's grants (outputs/hls/grants.py) and the HTTP side's use of them
(http.check_credential / await_grant): which browser may fetch which token without a
credential in the URL, for how long, and what a playlist request waits for."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest

from gateway.auth import AuthError, Session
from gateway.outputs.hls import grants as grants_module
from gateway.outputs.hls.grants import GRACE, HOLD, SETTLE, HlsGrants, client_in
from gateway.outputs.hls.http import Ask, answer, json_errors
from gateway.outputs.hls.signer import HlsSigner
from gateway.web.front import LATER, LeanResponse, parse_head
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit

A = "AAAAAAAAAAAAAAAAAAAAAA"  # two browsers' cookie values
B = "BBBBBBBBBBBBBBBBBBBBBB"
C = "CCCCCCCCCCCCCCCCCCCCCC"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def grants(clock: Clock) -> HlsGrants:
    return HlsGrants(b"k" * 32, clock)


# -- naming the browser ------------------------------------------------------------------


def test_a_socket_grants_to_the_browsers_cookie_or_one_made_from_its_session_and_address(grants):
    assert grants.client(A, "session-1", "10.0.0.1") == A
    made = grants.client(None, "session-1", "10.0.0.1")
    assert len(made) == 22 and made != A
    # A page's sockets opened at once (no cookie yet) agree; another session or address differs.
    assert grants.client(None, "session-1", "10.0.0.1") == made and grants.client("short", "session-1", "10.0.0.1") == made
    assert grants.client(None, "session-2", "10.0.0.1") != made and grants.client(None, "session-1", "10.0.0.2") != made
    assert HlsGrants(b"other key" * 4).client(None, "session-1", "10.0.0.1") != made  # not guessable


def test_the_cookie_is_httponly_same_site_for_every_path(grants):
    assert grants.set_cookie(A, False) == f"h5ss_hls={A}; Path=/; HttpOnly; SameSite=Strict"
    assert grants.set_cookie(A, True).endswith("; SameSite=Strict; Secure")


@pytest.mark.parametrize("cookie,found", [
    (f"h5ss_hls={A}", A),
    (f"a=1; h5ss_hls={A}; b=2", A),
    (f"a=1;h5ss_hls={A}", A),
    (f"xh5ss_hls={A}", None),  # another cookie's name
    (f"h5ss_hls={A}x", None),  # not one of ours
    ("h5ss_hls=short", None),
    ("a=1", None),
])
def test_the_cookie_is_found_in_the_fronts_header_lines(cookie, found):
    request = parse_head(f"GET /hls/v1/cam/hls.m3u8 HTTP/1.1\r\nHost: h\r\ncookie: {cookie}\r\nAccept: */*".encode())
    assert request is not None and client_in(request.fields) == found
    assert client_in(b"\r\nHost: h") is None and client_in(f"\r\nX-Cookie: h5ss_hls={A}".encode()) is None


# -- how long a grant lasts ----------------------------------------------------------------


def test_an_open_socket_grants_its_token_to_its_browser_only(grants):
    assert not grants.allows(A, "t")
    grants.open(A, "t")
    assert grants.allows(A, "t")
    assert not grants.allows(A, "u")  # another token
    assert not grants.allows(B, "t")  # another browser
    assert not grants.allows(None, "t")  # no cookie


def test_a_closed_socket_grants_for_the_grace_then_nothing(grants, clock):
    grants.open(A, "t")
    clock.now += 3600  # open sockets do not run out
    assert grants.allows(A, "t")
    grants.close(A, "t")
    clock.now += GRACE - 0.1
    assert grants.allows(A, "t")
    clock.now += 0.2
    assert not grants.allows(A, "t")
    grants.open(B, "u")  # a socket event forgets the grants whose grace is over
    assert set(grants.grants) == {(B, "u")}


def test_the_grant_lasts_while_any_socket_of_the_browser_is_open(grants, clock):
    grants.open(A, "t")
    grants.open(A, "t")
    grants.close(A, "t")
    clock.now += GRACE + 1
    assert grants.allows(A, "t")
    grants.close(A, "t")
    grants.open(A, "t")  # reopened within the grace: open again, no grace running
    clock.now += GRACE + 1
    assert grants.allows(A, "t")


def test_a_socket_whose_session_ended_grants_nothing_at_once(grants):
    grants.open(A, "t")
    grants.close(A, "t", grace=False)
    assert not grants.allows(A, "t") and not grants.grants


# -- holding a playlist request ------------------------------------------------------------


def in_loop(test):
    return run_async(test, 10)


def test_a_held_request_resumes_when_its_browser_is_granted(grants):
    async def run() -> None:
        resumed: list[tuple[str, bool]] = []
        grants.wait(A, "t", lambda ok: resumed.append(("A t", ok)))
        grants.wait(B, "t", lambda ok: resumed.append(("B t", ok)))
        grants.wait(None, "t", lambda ok: resumed.append(("none t", ok)))
        grants.wait(A, "u", lambda ok: resumed.append(("A u", ok)))
        grants.open(A, "t")
        assert resumed == [("A t", True)]
        grants.open(B, "t")
        assert resumed == [("A t", True), ("B t", True)]
        assert [w.client for w in grants.waiting["u"]] == [A] and "t" not in grants.waiting
        # The cookie-less one: told to ask again once the browser has had time to store the cookie.
        await asyncio.sleep(SETTLE + 0.05)
        assert resumed[2:] == [("none t", True)]

    in_loop(run)


def test_a_cookie_less_request_just_after_a_socket_opened_is_told_to_ask_again(grants, clock):
    async def run() -> None:
        resumed: list[str] = []
        grants.open(A, "t")
        clock.now += 1  # sent before the cookie was stored, it came after the grant
        grants.wait(None, "t", lambda ok: resumed.append(f"soon {ok}"))
        clock.now += HOLD  # no socket opened for a while: it waits for the next
        grants.wait(None, "t", lambda ok: resumed.append(f"next {ok}"))
        await asyncio.sleep(0.05)
        assert resumed == ["soon True"] and [w.client for w in grants.waiting["t"]] == [None]
        grants.open(B, "t")
        await asyncio.sleep(SETTLE + 0.05)
        assert resumed == ["soon True", "next True"]

    in_loop(run)


def test_a_held_request_is_refused_after_hold(grants, monkeypatch):
    monkeypatch.setattr(grants_module, "HOLD", 0.05)

    async def run() -> None:
        resumed: list[bool] = []
        grants.wait(A, "t", resumed.append)
        grants.open(B, "t")
        await asyncio.sleep(0.1)
        assert resumed == [False] and not grants.waiting

    in_loop(run)


# -- the HTTP side: check_credential and await_grant ---------------------------------------


class Gateway:
    """What http.py reads of a Gateway, logins on: one session, token "t" known but no stream."""

    def __init__(self, auth: bool = True):
        self.session = Session("s1", "admin", "Viewer", time.monotonic() + 600)

        def check(session_id: str | None) -> Session:
            if session_id != "s1":
                raise AuthError("invalid session")
            return self.session

        self.auth = SimpleNamespace(check=check)
        self.config = SimpleNamespace(sources={"t": object()})
        self.streams = SimpleNamespace(get=lambda token, profile: None)  # no stream: an answered request says 503
        self.settings = SimpleNamespace(http=SimpleNamespace(auth=auth))


def ask(gw: Gateway, grants: HlsGrants, name: str, cookie: str | None = None, **query: str):
    replies: list[LeanResponse] = []
    fields = b"\r\nHost: h" + (b"" if cookie is None else f"\r\nCookie: h5ss_hls={cookie}".encode())
    request = Ask(gw, HlsSigner(b"k" * 32, gw.auth), grants, "v1", "t", name, query, fields, replies.append)
    return json_errors(answer, request), replies


def status(response: LeanResponse) -> tuple[int, str]:
    return response.status, json.loads(response.body)["strCode"] if response.body else ""


def test_without_a_credential_segments_are_refused_and_granted_ones_served(grants):
    gw = Gateway()
    answered, _ = ask(gw, grants, "seg1.ts", A)
    assert status(answered)[0] == 401 and "missing session" in status(answered)[1]
    grants.open(A, "t")
    assert status(ask(gw, grants, "seg1.ts", A)[0]) == (503, "source is disabled (see GetSrc strLastError)")
    assert status(ask(gw, grants, "seg1.ts", B)[0])[0] == 401
    # Sessions and signed URLs are checked as before, the grant aside.
    assert status(ask(gw, grants, "seg1.ts", A, session="forged")[0]) == (401, "invalid session")
    assert status(ask(gw, grants, "seg1.ts", A, hlstoken="1.x")[0]) == (401, "invalid hlstoken")
    # Not ASCII digits, or too many: refused as such, not a server error.
    for bad in ("\u00b2.0." + "0" * 32, "9" * 5000 + ".0." + "0" * 32, "1.0.x"):
        assert status(ask(gw, grants, "seg1.ts", A, hlstoken=bad)[0]) == (401, "invalid hlstoken")


def test_with_logins_off_nothing_is_asked(grants):
    answered, _ = ask(Gateway(auth=False), grants, "hls.m3u8")
    assert status(answered)[0] == 503


def test_a_playlist_is_held_until_the_grant_then_answered_or_redirected(grants, monkeypatch):
    monkeypatch.setattr(grants_module, "HOLD", 0.6)

    async def run() -> None:
        gw = Gateway()
        with_cookie, answers = ask(gw, grants, "hls.m3u8", A)
        without, redirects = ask(gw, grants, "hls.m3u8", None, _HLS_msn="5")
        other, refusals = ask(gw, grants, "hls.m3u8", B)
        assert with_cookie is LATER and without is LATER and other is LATER and not answers + redirects
        grants.open(A, "t")
        assert [status(r) for r in answers] == [(503, "source is disabled (see GetSrc strLastError)")]
        assert not redirects and not refusals
        await asyncio.sleep(SETTLE + 0.05)
        [again] = redirects
        assert again.status == 307 and b"\r\nLocation: hls.m3u8?_HLS_msn=5&h5ss_again=1\r\n" in again.head
        # Asked again still without the cookie (that socket was another browser's): the
        # sockets before are tried, it waits for the next.
        marked, redirected_again = ask(gw, grants, "hls.m3u8", None, _HLS_msn="5", h5ss_again="1")
        await asyncio.sleep(SETTLE + 0.05)
        assert marked is LATER and not redirected_again
        grants.open(C, "t")
        await asyncio.sleep(SETTLE + 0.05)
        assert [r.status for r in redirected_again] == [307]
        await asyncio.sleep(0.3)
        assert [status(r)[0] for r in refusals] == [401]  # B's socket never came

    in_loop(run)
