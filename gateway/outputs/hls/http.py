"""HLS over HTTP (PROTOCOLS.md §2 and §5): the routes, the credential, and which answer a
request gets, every one from the stream's one segmenter.

  /hls/v1/{token}/hls.m3u8   h5s HLS v1: MPEG-TS segments     (segN.ts)
  /hls/v2/{token}/hls.m3u8   h5s HLS v2: fMP4 init + segments (initK.mp4, segN.m4s)
  /{token}/index.m3u8        MediaMTX-style LL-HLS: master -> stream.m3u8 (+ partN.I.m4s)
  /{token}/h264/...          the same files of the stream's H.264 rendition (an H.265
                             stream's master lists it), made while a player asks
  /api/v1/h5swscmnapi        the h5s HLS player's keepalive socket (keepalive.py)

The files are served on the lean HTTP front (gateway/web/front.py), not through aiohttp.
Every URL takes `session=` (as the REST API) or `hlstoken=` (from GetHlsUrl, signer.py);
the URIs in a playlist carry the credential the playlist was asked with. A URL with
neither is the h5s HLS player's: its browser's h5swscmnapi socket grants it (grants.py).
Errors are the REST API's JSON: 401 auth, 404 unknown token or file, 400 a blocking
request too far ahead, 503 no media in time. What a request waits for is rules.py's; the
answers made once for all clients are responses.py's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.auth import AuthError
from gateway.config.file import whole_number
from gateway.core import Gateway
from gateway.hub.profile import SUB, profile_of
from gateway.outputs.hls.grants import GRANTS_KEY, HlsGrants, client_in
from gateway.outputs.hls.keepalive import h5swscmnapi
from gateway.outputs.hls.playlist import RENDITION_DIR
from gateway.outputs.hls.responses import (
    HEADER_LINES,
    HlsAnswers,
    error_response,
    internal_error,
    media,
    playlist,
)
from gateway.outputs.hls.rules import FirstSegment, Wait, part_wait, playlist_wait, window
from gateway.outputs.hls.segmenter import HlsSegmenter, Segment
from gateway.outputs.hls.signer import HlsSigner
from gateway.tasks import background
from gateway.web.errors import ApiError
from gateway.web.front import LATER, FastRoute, Later, LeanRequest, LeanResponse, header_lines
from gateway.web.request import GATEWAY_KEY, auth_required, gateway, session_of

log = logging.getLogger(__name__)
SIGNER_KEY = web.AppKey("hls_signer", HlsSigner)

_SEGMENT = re.compile(r"seg([0-9]{1,12})\.(ts|m4s)")
_PART = re.compile(r"part([0-9]{1,12})\.([0-9]{1,4})\.m4s")
_INIT = re.compile(r"init([0-9]{1,12})\.mp4")


def add_routes(app: web.Application) -> None:
    """Register the aiohttp side; before /api/v1/{command} and the static files."""
    app[SIGNER_KEY] = HlsSigner(secrets.token_bytes(32), app[GATEWAY_KEY].auth)
    app[GRANTS_KEY] = HlsGrants(secrets.token_bytes(32))
    app.router.add_get("/api/v1/h5swscmnapi", h5swscmnapi)
    app.router.add_get("/hls/{variant:v1|v2}/{token}/{name}", aiohttp_route)
    ll_names = r"{name:(?:index\.m3u8|stream\.m3u8|init[0-9]+\.mp4|seg[0-9]+\.m4s|part[0-9]+\.[0-9]+\.m4s)}"
    app.router.add_get(r"/{token}/" + ll_names, aiohttp_route)
    app.router.add_get(r"/{token}/{rendition:" + RENDITION_DIR + "}/" + ll_names, aiohttp_route)


async def aiohttp_route(request: web.Request) -> web.Response:
    """The same answers on a connection the front has handed to aiohttp (one that also
    asked for something else, such as a page's own keep-alive connection)."""
    info = request.match_info
    later: asyncio.Future[LeanResponse] = asyncio.get_running_loop().create_future()

    def reply(response: LeanResponse) -> None:
        if not later.done():
            later.set_result(response)

    cookies = request.headers.get("Cookie")
    ask = Ask(
        gateway(request),
        request.app[SIGNER_KEY],
        request.app[GRANTS_KEY],
        info.get("variant", "ll"),
        info["token"],
        info["name"],
        request.query,
        b"" if cookies is None else f"\r\nCookie: {cookies}".encode("utf-8", "surrogateescape"),
        reply,
        "rendition" in info,
    )
    answered = json_errors(answer, ask)
    response = await later if isinstance(answered, Later) else answered
    headers = dict(line.split(": ", 1) for line in response.headers.decode("latin-1").split("\r\n") if line)
    return web.Response(
        status=response.status, body=response.body, headers={**headers, "Content-Type": response.content_type}
    )


_H5S_PATH = re.compile(r"/hls/(v1|v2)/([^/]+)/([^/]+)")
_LL_NAMES = r"(index\.m3u8|stream\.m3u8|init[0-9]+\.mp4|seg[0-9]+\.m4s|part[0-9]+\.[0-9]+\.m4s)"
_LL_PATH = re.compile(r"/([^/]+)/(" + RENDITION_DIR + r"/)?" + _LL_NAMES)
Answer = LeanResponse | Later  # now, or LATER: ask.reply will be called with it


@dataclass(slots=True)
class Ask:
    """One HLS request: which stream, which file, and its query."""

    gw: Gateway
    signer: HlsSigner
    grants: HlsGrants
    variant: str  # v1, v2 or ll
    token: str
    name: str
    query: Mapping[str, str]
    fields: bytes  # its header lines (LeanRequest.fields), read only without session= or hlstoken=
    reply: Callable[[LeanResponse], None]  # for an answer given LATER
    rendition: bool = False  # the stream's H.264 rendition (/{token}/h264/...)


def fast_route(app: web.Application) -> FastRoute:
    """The HLS paths, answered on the lean front (gateway/web/front.py) without aiohttp:
    the HLS players' hundreds of requests a second are most of a gateway's HTTP traffic."""
    gw, signer, grants = app[GATEWAY_KEY], app[SIGNER_KEY], app[GRANTS_KEY]

    def route(request: LeanRequest, reply: Callable[[LeanResponse], None]) -> Answer | None:
        rendition = None
        if m := _H5S_PATH.fullmatch(request.path):
            variant, token, name = m.groups()
        elif m := _LL_PATH.fullmatch(request.path):
            variant, (token, rendition, name) = "ll", m.groups()
        else:
            return None
        ask = Ask(gw, signer, grants, variant, token, name, request.query, request.fields, reply, rendition is not None)
        return json_errors(answer, ask)

    return route


def json_errors(handler: Callable[[Ask], Answer], ask: Ask) -> Answer:
    """The handler's answer, with AuthError/ApiError as the REST API's JSON errors."""
    try:
        return handler(ask)
    except (AuthError, ApiError) as e:
        return error_response(e)


def deliver(ask: Ask, make: Callable[[], LeanResponse]) -> None:
    """Give a LATER answer: `make()`, or the JSON error it raises."""
    try:
        response = make()
    except (AuthError, ApiError) as e:
        response = error_response(e)
    except Exception:
        log.exception("unhandled error on HLS %s/%s", ask.token, ask.name)
        response = internal_error()
    ask.reply(response)


_NO_CREDENTIAL = "missing session (nor hlstoken, nor an open h5swscmnapi socket for this token)"
_PLAYLISTS = ("hls.m3u8", "index.m3u8", "stream.m3u8")
_AGAIN = "h5ss_again"  # marks a playlist request redirected to itself (again): the sockets before are tried


def check_credential(ask: Ask) -> bool:
    """Whether the request may go on: its hlstoken or session is valid (when the gateway
    asks for logins), or, with neither, its browser's socket grants its token. False: a
    playlist to hold for that grant (await_grant); AuthError otherwise."""
    signed = ask.query.get("hlstoken")
    if signed is None:
        session = ask.query.get("session")
        if session is None and auth_required(ask.gw):
            if ask.grants.allows(client_in(ask.fields), ask.token):
                return True
            if ask.name in _PLAYLISTS:
                return False
            raise AuthError(_NO_CREDENTIAL)
        session_of(ask.gw, session)
    elif auth_required(ask.gw):
        ask.signer.check(signed, ask.token)
    return True


def await_grant(ask: Ask) -> Later:
    """Hold a playlist request until its browser's h5swscmnapi socket is granted the token
    (grants.HOLD at most): the stock player opens the socket as it sets `video.src`, so the
    playlist can come first. Sent without the cookie, the request is redirected to itself
    once a socket for the token is open: the browser asks again with the cookie the socket
    set. Asked again still without it (that socket was another browser's), it waits for
    the next socket."""
    client = client_in(ask.fields)

    def resume(granted: bool) -> None:
        if not granted:
            sent = "without" if client is None else "with"
            log.debug("HLS %s/%s %s the cookie: no h5swscmnapi socket of its browser", ask.token, ask.name, sent)
            ask.reply(error_response(AuthError(_NO_CREDENTIAL)))
        elif client is None:
            log.debug("HLS %s/%s: a socket for it opened; asked again, with the cookie", ask.token, ask.name)
            ask.reply(again(ask))
        else:
            try:
                answered = json_errors(answer, ask)
            except Exception:
                log.exception("unhandled error on HLS %s/%s", ask.token, ask.name)
                answered = internal_error()
            if not isinstance(answered, Later):
                ask.reply(answered)

    ask.grants.wait(client, ask.token, resume, recent=_AGAIN not in ask.query)
    return LATER


def again(ask: Ask) -> LeanResponse:
    """307 to the same playlist (a relative Location: its name, its query and the mark)."""
    location = f"{ask.name}?{urlencode({**ask.query, _AGAIN: '1'})}"
    return LeanResponse(307, "text/plain", b"", HEADER_LINES + header_lines({"Location": location}))


def uri_query(ask: Ask) -> bytes:
    """The query a playlist's URIs carry: the credential the playlist was asked with, and
    its profile when that is sub (main is the default)."""
    sub = ask.query.get("profile") == SUB
    if not auth_required(ask.gw):
        return b"?profile=sub" if sub else b""
    signed = ask.query.get("hlstoken")
    if signed is not None:
        query = b"?hlstoken=" + url_value(signed).encode()
    else:
        session = ask.query.get("session")
        if session is None:  # the cookie goes with them
            return b"?profile=sub" if sub else b""
        query = b"?session=" + url_value(session).encode()
    return query + b"&profile=sub" if sub else query


_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def url_value(value: str) -> str:
    """`value` percent-encoded for a query (as is when it needs nothing: session ids do not)."""
    return value if _URL_SAFE.fullmatch(value) else quote(value, safe="")


def int_param(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    number = whole_number(value)
    if number is None:
        raise ApiError(400, f"parameter '{name}' must be a whole number >= 0")
    return number


def stream_answers(ask: Ask) -> HlsAnswers:
    """The stream's answers, its segmenter started or kept running (the credential checked)."""
    gw, token = ask.gw, ask.token
    try:
        profile = profile_of(ask.query.get("profile"))
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    if token not in gw.config.sources and gw.edges.source(token) is None:  # its tokens are valid ones
        raise ApiError(404, f"unknown token {token[:64]!r}")
    stream = gw.streams.get(token, profile)
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    if ask.rendition:
        if stream.rendition is None:
            raise ApiError(404, f"source {token} has no H.264 rendition (strH264Rendition is off)")
        stream = stream.rendition
    answers = stream.output(HlsAnswers)
    answers.seg.touch()
    return answers


def after(ask: Ask, wait: Wait, answer: Callable[[], LeanResponse]) -> Answer:
    """`answer()` once the wait is over: at once when it already is (most requests), else
    LATER, when the segmenter makes it so; if it runs out, the wait's error, or without
    one answer() anyway."""
    seg = wait.seg
    if seg.active and wait.ready():
        return answer()

    def resolve(ok: bool) -> None:
        error = None if ok else wait.late()
        if error is None:
            deliver(ask, answer)
        else:
            ask.reply(error_response(error))

    seg.when(wait.ready, wait.timeout, resolve)
    return LATER


def answer(ask: Ask) -> Answer:
    """A playlist, or a media file (media_file); counted in the stream's HlsAnswers."""
    if not check_credential(ask):
        return await_grant(ask)
    answers = stream_answers(ask)
    answers.requests += 1
    seg, name = answers.seg, ask.name
    answered: Answer
    if name == "index.m3u8" and ask.variant == "ll":
        answered = after(ask, FirstSegment(seg), lambda: playlist(answers.master_playlist(uri_query(ask))))
    elif name == ("stream.m3u8" if ask.variant == "ll" else "hls.m3u8"):
        msn, part = int_param(ask.query, "_HLS_msn"), int_param(ask.query, "_HLS_part")
        wait = playlist_wait(seg, msn, part, ask.variant == "ll")
        answered = after(ask, wait, lambda: playlist(answers.media_playlist(ask.variant, uri_query(ask))))
    else:
        answered = media_file(ask, answers)
    if isinstance(answered, LeanResponse):
        answers.bytes_out += len(answered.body)
        return answered
    answers.held += 1
    reply = ask.reply
    ask.reply = lambda response: reply(answers.sent(response))
    return answered


def media_file(ask: Ask, answers: HlsAnswers) -> Answer:
    """An init segment, a segment (TS or fMP4) or a part; the next part is waited for."""
    seg, name = answers.seg, ask.name
    if m := _PART.fullmatch(name):
        return part_file(ask, answers, int(m[1]), int(m[2]))
    if m := _INIT.fullmatch(name):
        data = seg.inits.get(int(m[1]))
        if data is None:
            raise ApiError(404, f"{name} is not available")
        return media(data)
    if m := _SEGMENT.fullmatch(name):
        s = seg.segment(int(m[1]))
        if s is None or s.data is None or (m[2] == "ts" and ask.variant != "v1"):
            raise ApiError(404, f"{name} is not available{window(seg)}")
        if m[2] == "ts":
            return media(s.ts, "video/mp2t") if s.ts is not None else ts_segment(ask, seg, s)
        return media(s.data)
    raise ApiError(404, f"no such HLS file {name[:64]!r}")


def part_file(ask: Ask, answers: HlsAnswers, msn: int, index: int) -> Answer:
    """An LL-HLS part; the next part (a preload hint) is waited for."""
    response = answers.part(msn, index)
    if response is not None:
        return response

    def found() -> LeanResponse:
        response = answers.part(msn, index)
        if response is None:
            raise ApiError(404, f"{ask.name} is not available{window(answers.seg)}")
        return response

    wait = part_wait(answers.seg, msn, index)
    return found() if wait is None else after(ask, wait, found)


def ts_segment(ask: Ask, seg: HlsSegmenter, s: Segment) -> Answer:
    """A TS segment not made yet: made in a thread (seg.ts), answered LATER."""
    made = background(seg.ts(s))
    made.add_done_callback(lambda done: deliver(ask, lambda: media(done.result(), "video/mp2t")))
    return LATER
