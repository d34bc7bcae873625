"""HLS over HTTP (PROTOCOLS.md §2 and §5), every answer taken from the stream's one segmenter.

  /hls/v1/{token}/hls.m3u8   h5s HLS v1: MPEG-TS segments     (segN.ts)
  /hls/v2/{token}/hls.m3u8   h5s HLS v2: fMP4 init + segments (initK.mp4, segN.m4s)
  /{token}/index.m3u8        MediaMTX-style LL-HLS: master -> stream.m3u8 (+ partN.I.m4s)
  /api/v1/h5swscmnapi        the h5s HLS player's keepalive socket
  /api/v1/GetHlsUrl          signed, short-lived URLs for players that cannot log in

The files are served on the lean HTTP front (gateway/http_front.py), not through aiohttp.
Every URL takes `session=` (as the REST API) or `hlstoken=` (from GetHlsUrl); the URIs in
a playlist carry the credential the playlist was asked with. Errors are the REST API's
JSON: 401 auth, 404 unknown token or file, 400 a blocking request too far ahead, 503 no
media in time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.core import Gateway
from gateway.hub.stream import READY_TIMEOUT
from gateway.outputs.hls.playlist import master_playlist, media_playlist
from gateway.outputs.hls.segmenter import HlsSegmenter, Segment
from gateway.outputs.hls.signer import HlsSigner
from gateway.web.errors import ApiError
from gateway.web.front import LATER, FastRoute, Later, LeanRequest, LeanResponse, header_lines
from gateway.web.request import GATEWAY_KEY, auth_required, gateway
from gateway.web.websocket import stream_socket

START_SEGMENTS = 3  # players start 3 target durations from the end: a first playlist has them
BLOCK_TIMEOUT = 3  # target durations a blocking request may wait before a 503
ADVANCE_SECONDS = 3.0  # how far ahead a blocking request may ask, in parts (LL-HLS §6.2.5.2)
PLAYLIST = "application/vnd.apple.mpegurl"
HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
HEADER_LINES = header_lines(HEADERS)
log = logging.getLogger(__name__)
SIGNER_KEY = web.AppKey("hls_signer", "HlsSigner")

_SEGMENT = re.compile(r"seg(\d{1,12})\.(ts|m4s)")
_PART = re.compile(r"part(\d{1,12})\.(\d{1,4})\.m4s")
_INIT = re.compile(r"init(\d{1,12})\.mp4")


def add_routes(app: web.Application) -> None:
    """Register the aiohttp side; before /api/v1/{command} and the static files."""
    app[SIGNER_KEY] = HlsSigner(secrets.token_bytes(32))
    app.router.add_get("/api/v1/h5swscmnapi", h5swscmnapi)
    app.router.add_get("/hls/{variant:v1|v2}/{token}/{name}", aiohttp_route)
    app.router.add_get(
        r"/{token}/{name:(?:index\.m3u8|stream\.m3u8|init\d+\.mp4|seg\d+\.m4s|part\d+\.\d+\.m4s)}", aiohttp_route
    )


async def aiohttp_route(request: web.Request) -> web.Response:
    """The same answers on a connection the front has handed to aiohttp (one that also
    asked for something else, such as a page's own keep-alive connection)."""
    info = request.match_info
    later: asyncio.Future[LeanResponse] = asyncio.get_running_loop().create_future()

    def reply(response: LeanResponse) -> None:
        if not later.done():
            later.set_result(response)

    ask = Ask(
        gateway(request),
        request.app[SIGNER_KEY],
        info.get("variant", "ll"),
        info["token"],
        info["name"],
        request.query,
        reply,
    )
    answered = json_errors(answer, ask)
    response = await later if answered is LATER else answered
    return web.Response(
        status=response.status, body=response.body, headers={**HEADERS, "Content-Type": response.content_type}
    )


_H5S_PATH = re.compile(r"/hls/(v1|v2)/([^/]+)/([^/]+)")
_LL_PATH = re.compile(r"/([^/]+)/(index\.m3u8|stream\.m3u8|init\d+\.mp4|seg\d+\.m4s|part\d+\.\d+\.m4s)")
Answer = LeanResponse | Later  # now, or LATER: ask.reply will be called with it


@dataclass(slots=True)
class Ask:
    """One HLS request: which stream, which file, and its query."""

    gw: Gateway
    signer: HlsSigner
    variant: str  # v1, v2 or ll
    token: str
    name: str
    query: Mapping[str, str]
    reply: Callable[[LeanResponse], None]  # for an answer given LATER


def fast_route(app: web.Application) -> FastRoute:
    """The HLS paths, answered on the lean front (gateway/http_front.py) without aiohttp:
    the HLS players' hundreds of requests a second are most of a gateway's HTTP traffic."""
    gw, signer = app[GATEWAY_KEY], app[SIGNER_KEY]

    def route(request: LeanRequest, reply: Callable[[LeanResponse], None]) -> Answer | None:
        if m := _H5S_PATH.fullmatch(request.path):
            variant, token, name = m.groups()
        elif m := _LL_PATH.fullmatch(request.path):
            variant, (token, name) = "ll", m.groups()
        else:
            return None
        return json_errors(answer, Ask(gw, signer, variant, token, name, request.query, reply))

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


def error_response(e: AuthError | ApiError) -> LeanResponse:
    status, reason = (401, str(e)) if isinstance(e, AuthError) else (e.status, e.reason)
    body = json.dumps({"bStatus": False, "strCode": reason}).encode()
    return LeanResponse(status, "application/json; charset=utf-8", body, HEADER_LINES)


def internal_error() -> LeanResponse:
    return error_response(ApiError(500, "internal error (see the gateway log)"))


def check_credential(ask: Ask) -> None:
    """The request's session or hlstoken must be valid (when the gateway asks for logins)."""
    if not auth_required(ask.gw):
        return
    signed = ask.query.get("hlstoken")
    if signed is not None:
        ask.signer.check(signed, ask.token)
    else:
        ask.gw.auth.check(ask.query.get("session"))


def uri_query(ask: Ask) -> bytes:
    """The query a playlist's URIs carry: the credential the playlist was asked with."""
    if not auth_required(ask.gw):
        return b""
    signed = ask.query.get("hlstoken")
    if signed is not None:
        return b"?hlstoken=" + url_value(signed).encode()
    return b"?session=" + url_value(ask.query.get("session") or "").encode()


_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def url_value(value: str) -> str:
    """`value` percent-encoded for a query (as is when it needs nothing: session ids do not)."""
    return value if _URL_SAFE.fullmatch(value) else quote(value, safe="")


def segmenter(ask: Ask) -> HlsSegmenter:
    """The stream's segmenter, started or kept running, once the credential is checked."""
    check_credential(ask)
    gw, token = ask.gw, ask.token
    if token not in gw.config.sources:  # its tokens are valid ones
        raise ApiError(404, f"unknown token {token[:64]!r}")
    stream = gw.streams.get(token)
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    seg = stream.output(HlsSegmenter)
    seg.touch()
    return seg


def after(
    ask: Ask,
    seg: HlsSegmenter,
    ready: Callable[[], bool],
    timeout: float,
    answer: Callable[[], LeanResponse],
    late: Callable[[], ApiError] | None = None,
) -> Answer:
    """`answer()` once `ready()` holds: at once when it already does (most requests), else
    LATER, when the segmenter makes it so; on timeout the error `late()`, or without one answer() anyway."""
    if seg.active and ready():
        return answer()

    def resolve(ok: bool) -> None:
        if not ok and late is not None:
            error = late()
            deliver(ask, lambda: error_response(error))
        else:
            deliver(ask, answer)

    seg.when(ready, timeout, resolve)
    return LATER


def first_segments(ask: Ask, seg: HlsSegmenter, answer: Callable[[], LeanResponse]) -> Answer:
    """Answer once the segments a player starts from exist (a shorter live playlist makes
    Chromium's own HLS fail to start), so no client gets an empty or too short playlist."""
    count = min(START_SEGMENTS, seg.segment_count)
    return after(
        ask,
        seg,
        lambda: seg.has_segments(count),
        READY_TIMEOUT + (count + 1) * seg.target,
        answer,
        lambda: not_ready(seg),
    )


def not_ready(seg: HlsSegmenter) -> ApiError:
    if not seg.active:
        return ApiError(404, f"source {seg.stream.token} was removed")
    reason = seg.stream.last_error or "no video from the source yet"
    return ApiError(503, f"stream {seg.stream.token} not ready: {reason}")


def int_param(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ApiError(400, f"parameter '{name}' must be a whole number >= 0")
    return int(value)


def blocking_reload(ask: Ask, seg: HlsSegmenter, answer: Callable[[], LeanResponse]) -> Answer:
    """_HLS_msn / _HLS_part: answer only once that segment (or part) exists."""
    msn, part = int_param(ask.query, "_HLS_msn"), int_param(ask.query, "_HLS_part")
    if msn is None:
        if part is not None:
            raise ApiError(400, "_HLS_part needs _HLS_msn")
        return first_segments(ask, seg, answer)
    advance = math.ceil(ADVANCE_SECONDS / seg.part_target)
    open_seg = seg.open_segment
    parts_now = len(open_seg.parts) if open_seg is not None and open_seg.msn == msn else 0
    if msn > seg.next_msn or (part is not None and part >= parts_now + advance):
        raise ApiError(
            400, f"_HLS_msn={msn} _HLS_part={part} is too far ahead of the live edge (next segment {seg.next_msn})"
        )
    if part is None:

        def ready() -> bool:
            s = seg.segment(msn)
            return seg.has_segments() and (s.complete if s is not None else msn < seg.segments[0].msn)
    else:

        def ready() -> bool:
            return seg.has_segments() and seg.has_part(msn, part)

    def late() -> ApiError:
        if seg.active and seg.has_segments():
            return ApiError(503, f"segment {msn} part {part} did not come in time")
        return not_ready(seg)

    return after(
        ask, seg, ready, BLOCK_TIMEOUT * seg.target + (0 if seg.has_segments() else READY_TIMEOUT), answer, late
    )


def playlist(body: bytes) -> LeanResponse:
    return LeanResponse(200, PLAYLIST, body, HEADER_LINES)


def media(data: bytes, content_type: str = "video/mp4") -> LeanResponse:
    return LeanResponse(200, content_type, data, HEADER_LINES)


def answer(ask: Ask) -> Answer:
    seg = segmenter(ask)
    name = ask.name
    if name == "index.m3u8" and ask.variant == "ll":
        return first_segments(ask, seg, lambda: playlist(master_playlist(seg, uri_query(ask))))
    if name == ("stream.m3u8" if ask.variant == "ll" else "hls.m3u8"):
        return blocking_reload(ask, seg, lambda: playlist(media_playlist(seg, ask.variant, uri_query(ask))))
    return media_file(ask, seg)


def media_file(ask: Ask, seg: HlsSegmenter) -> Answer:
    """An init segment, a segment (TS or fMP4) or a part; the next part is waited for."""
    name = ask.name
    if m := _PART.fullmatch(name):
        return part_file(ask, seg, int(m[1]), int(m[2]))
    if m := _INIT.fullmatch(name):
        data = seg.inits.get(int(m[1]))
        if data is None:
            raise ApiError(404, f"{name} is not available")
        return media(data)
    if m := _SEGMENT.fullmatch(name):
        s = seg.segment(int(m[1]))
        if s is None or not s.complete or (m[2] == "ts" and ask.variant != "v1"):
            raise ApiError(404, f"{name} is not available{window(seg)}")
        if m[2] == "ts":
            return media(s.ts, "video/mp2t") if s.ts is not None else ts_segment(ask, seg, s)
        return media(s.data)
    raise ApiError(404, f"no such HLS file {name[:64]!r}")


def part_file(ask: Ask, seg: HlsSegmenter, msn: int, index: int) -> Answer:
    """An LL-HLS part; the next part (a preload hint) is waited for."""
    response = part_response(seg, msn, index)
    if response is not None:
        return response

    def found() -> LeanResponse:
        response = part_response(seg, msn, index)
        if response is None:
            raise ApiError(404, f"{ask.name} is not available{window(seg)}")
        return response

    if (msn, index) in upcoming_parts(seg):
        return after(
            ask,
            seg,
            lambda: part_response(seg, msn, index) is not None or seg.part_gone(msn, index),
            BLOCK_TIMEOUT * seg.target,
            found,
        )
    return found()


def part_response(seg: HlsSegmenter, msn: int, index: int) -> LeanResponse | None:
    """The answer for an existing part, made once for all its clients."""
    s = seg.segment(msn)
    if s is None or index >= len(s.parts):
        return None
    part = s.parts[index]
    if part.response is None:
        part.response = media(part.data)
    return part.response  # type: ignore[return-value]


def ts_segment(ask: Ask, seg: HlsSegmenter, s: Segment) -> Answer:
    """A TS segment not made yet: made in a thread (seg.ts), answered LATER."""
    made = asyncio.ensure_future(seg.ts(s))
    made.add_done_callback(lambda done: deliver(ask, lambda: media(done.result(), "video/mp2t")))
    return LATER


def upcoming_parts(seg: HlsSegmenter) -> list[tuple[int, int]]:
    """The part the open segment makes next, and the first part of the segment after it."""
    open_seg = seg.open_segment
    return [(seg.next_msn, 0)] + ([(open_seg.msn, len(open_seg.parts))] if open_seg is not None else [])


def window(seg: HlsSegmenter) -> str:
    if not seg.segments:
        return ""
    return f" (segments {seg.segments[0].msn}-{seg.segments[-1].msn} are)"


async def h5swscmnapi(request: web.Request) -> web.WebSocketResponse:
    """The h5s HLS player's companion socket: keepalives extend the session and keep the
    stream's segmenter running while the player is open."""
    gw = gateway(request)
    ws, stream, session = await stream_socket(request)
    if stream is None:
        return ws
    async for msg in ws:
        if msg.type == WSMsgType.TEXT and is_keepalive(msg.data):
            if session is not None:
                gw.auth.keepalive(session)
            seg = stream.existing(HlsSegmenter)
            if seg is not None and seg.active:
                seg.touch()
    return ws


def is_keepalive(text: str) -> bool:
    text = text.strip()
    if text == "keepalive":
        return True
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and (message.get("type") == "keepalive" or message.get("cmd") == "H5_KEEPALIVE")
