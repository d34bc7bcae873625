"""HLS over HTTP (PROTOCOLS.md §2 and §5), every answer taken from the stream's one segmenter.

  /hls/v1/{token}/hls.m3u8   h5s HLS v1: MPEG-TS segments     (segN.ts)
  /hls/v2/{token}/hls.m3u8   h5s HLS v2: fMP4 init + segments (initK.mp4, segN.m4s)
  /{token}/index.m3u8        MediaMTX-style LL-HLS: master -> stream.m3u8 (+ partN.I.m4s)
  /api/v1/h5swscmnapi        the h5s HLS player's keepalive socket
  /api/v1/GetHlsUrl          signed, short-lived URLs for players that cannot log in

Every URL takes `session=` (as the REST API) or `hlstoken=` (from GetHlsUrl); the URIs in
a playlist carry the credential the playlist was asked with. Errors are the REST API's
JSON: 401 auth, 404 unknown token or file, 400 a blocking request too far ahead, 503 no
media in time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from typing import Awaitable, Callable
from urllib.parse import quote

from aiohttp import WSMsgType, web

from ..auth import AuthError, Session
from ..config import valid_token
from ..media.hls import HlsSegmenter, Segment
from ..media.hls_playlist import QUERY, master_playlist, media_playlist
from .v1 import ApiError, command, fail, gateway, ok, session_from, token_param
from .ws import stream_socket

READY_TIMEOUT = 15.0  # a cold stream's connect and first keyframe
START_SEGMENTS = 3  # players start 3 target durations from the end: a first playlist has them
BLOCK_TIMEOUT = 3  # target durations a blocking request may wait before a 503
ADVANCE_SECONDS = 3.0  # how far ahead a blocking request may ask, in parts (LL-HLS §6.2.5.2)
PLAYLIST = "application/vnd.apple.mpegurl"
HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
SIGNED_EXPIRE = (60, 10, 86400)  # default, min, max seconds of a GetHlsUrl token
SIGNED_KEEP = 30.0  # an expired token keeps working while its player polls at least this often
SIGNER_KEY = web.AppKey("hls_signer", "HlsSigner")

_SEGMENT = re.compile(r"seg(\d{1,12})\.(ts|m4s)")
_PART = re.compile(r"part(\d{1,12})\.(\d{1,4})\.m4s")
_INIT = re.compile(r"init(\d{1,12})\.mp4")


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


def add_routes(app: web.Application) -> None:
    """Register the HLS routes; before /api/v1/{command} and the static files."""
    app[SIGNER_KEY] = HlsSigner(secrets.token_bytes(32))
    app.router.add_get("/api/v1/h5swscmnapi", h5swscmnapi)
    app.router.add_get("/hls/{variant:v1|v2}/{token}/hls.m3u8", h5s_playlist)
    app.router.add_get("/hls/{variant:v1|v2}/{token}/{name}", media_file)
    app.router.add_get("/{token}/index.m3u8", ll_master)
    app.router.add_get("/{token}/stream.m3u8", ll_playlist)
    app.router.add_get(r"/{token}/{name:(?:init\d+\.mp4|seg\d+\.m4s|part\d+\.\d+\.m4s)}", media_file)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as e:
            return fail(401, str(e))
        except ApiError as e:
            return fail(e.status, e.reason)

    return wrapped


def credential(request: web.Request, token: str) -> str:
    """Check the request's session or hlstoken; the query its playlist's URIs should carry."""
    if not gateway(request).config.get("http", "bAuth"):
        return ""
    signed = request.query.get("hlstoken")
    if signed is not None:
        request.app[SIGNER_KEY].check(signed, token)
        return "?hlstoken=" + quote(signed, safe="")
    session_from(request)
    return "?session=" + quote(request.query["session"], safe="")


def segmenter(request: web.Request) -> tuple[HlsSegmenter, str]:
    """The stream's segmenter (started, or kept running) and the credential query."""
    gw = gateway(request)
    token = request.match_info["token"]
    query = credential(request, token)
    if not valid_token(token) or token not in gw.config.sources:
        raise ApiError(404, f"unknown token {token[:64]!r}")
    stream = gw.stream(token)
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    hls = gw.config.raw["hls"]
    seg = HlsSegmenter.of(stream, hls["nHLSSegmentNum"], hls["nHLSDuration"])
    seg.touch()
    return seg, query


async def first_segments(seg: HlsSegmenter) -> None:
    """Wait for the segments a player starts from (a shorter live playlist makes Chromium's
    own HLS fail to start), so no client ever gets an empty or too short playlist."""
    count = min(START_SEGMENTS, seg.segment_count)
    if not await seg.wait_for(lambda: seg.has_segments(count), READY_TIMEOUT + (count + 1) * seg.target):
        raise not_ready(seg)


def not_ready(seg: HlsSegmenter) -> ApiError:
    if not seg.active:
        return ApiError(404, f"source {seg.stream.token} was removed")
    reason = seg.stream.last_error or "no video from the source yet"
    return ApiError(503, f"stream {seg.stream.token} not ready: {reason}")


def int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ApiError(400, f"parameter '{name}' must be a whole number >= 0")
    return int(value)


async def blocking_reload(request: web.Request, seg: HlsSegmenter) -> None:
    """_HLS_msn / _HLS_part: answer only once that segment (or part) exists."""
    msn, part = int_param(request, "_HLS_msn"), int_param(request, "_HLS_part")
    if msn is None:
        if part is not None:
            raise ApiError(400, "_HLS_part needs _HLS_msn")
        await first_segments(seg)
        return
    advance = math.ceil(ADVANCE_SECONDS / seg.part_target)
    open_seg = seg.open_segment
    parts_now = len(open_seg.parts) if open_seg is not None and open_seg.msn == msn else 0
    if msn > seg.next_msn or part is not None and part >= parts_now + advance:
        raise ApiError(400, f"_HLS_msn={msn} _HLS_part={part} is too far ahead of the live edge "
                            f"(next segment {seg.next_msn})")
    if part is None:
        def ready() -> bool:
            s = seg.segment(msn)
            return seg.has_segments() and (s.complete if s is not None else msn < seg.segments[0].msn)
    else:
        def ready() -> bool:
            return seg.has_segments() and seg.has_part(msn, part)
    if not await seg.wait_for(ready, BLOCK_TIMEOUT * seg.target + (0 if seg.has_segments() else READY_TIMEOUT)):
        if seg.active and seg.has_segments():
            raise ApiError(503, f"segment {msn} part {part} did not come in time")
        raise not_ready(seg)


def playlist(text: str, query: str) -> web.Response:
    return web.Response(text=text.replace(QUERY, query), content_type=PLAYLIST, headers=HEADERS)


@json_errors
async def h5s_playlist(request: web.Request) -> web.Response:
    seg, query = segmenter(request)
    await blocking_reload(request, seg)
    return playlist(media_playlist(seg, request.match_info["variant"]), query)


@json_errors
async def ll_master(request: web.Request) -> web.Response:
    seg, query = segmenter(request)
    await first_segments(seg)
    return playlist(master_playlist(seg), query)


@json_errors
async def ll_playlist(request: web.Request) -> web.Response:
    seg, query = segmenter(request)
    await blocking_reload(request, seg)
    return playlist(media_playlist(seg, "ll"), query)


@json_errors
async def media_file(request: web.Request) -> web.Response:
    """An init segment, a segment (TS or fMP4) or a part; the next part is waited for."""
    seg, _ = segmenter(request)
    name = request.match_info["name"]
    if m := _INIT.fullmatch(name):
        data = seg.inits.get(int(m[1]))
        if data is None:
            raise ApiError(404, f"{name} is not available")
        return web.Response(body=data, content_type="video/mp4", headers=HEADERS)
    if m := _SEGMENT.fullmatch(name):
        s = seg.segment(int(m[1]))
        if s is None or not s.complete or m[2] == "ts" and request.match_info.get("variant") != "v1":
            raise ApiError(404, f"{name} is not available{window(seg)}")
        if m[2] == "ts":
            return web.Response(body=await seg.ts(s), content_type="video/mp2t", headers=HEADERS)
        return web.Response(body=s.data, content_type="video/mp4", headers=HEADERS)
    if m := _PART.fullmatch(name):
        msn, index = int(m[1]), int(m[2])
        if (msn, index) in upcoming_parts(seg):  # a preload hint: answer when the part is there
            await seg.wait_for(lambda: part_of(seg.segment(msn), index) is not None or seg.part_gone(msn, index),
                               BLOCK_TIMEOUT * seg.target)
        found = part_of(seg.segment(msn), index)
        if found is None:
            raise ApiError(404, f"{name} is not available{window(seg)}")
        return web.Response(body=found, content_type="video/mp4", headers=HEADERS)
    raise ApiError(404, f"no such HLS file {name[:64]!r}")


def upcoming_parts(seg: HlsSegmenter) -> list[tuple[int, int]]:
    """The part the open segment makes next, and the first part of the segment after it."""
    open_seg = seg.open_segment
    return [(seg.next_msn, 0)] + ([(open_seg.msn, len(open_seg.parts))] if open_seg is not None else [])


def part_of(s: Segment | None, index: int) -> bytes | None:
    return s.parts[index].data if s is not None and index < len(s.parts) else None


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
            seg = stream.output_registry.get("hls")
            if isinstance(seg, HlsSegmenter) and seg.active:
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


@command("GetHlsUrl")
async def get_hls_url(request: web.Request, _: Session | None) -> web.Response:
    """Signed HLS URLs (relative to the gateway root) for one stream."""
    token = token_param(request)
    default, low, high = SIGNED_EXPIRE
    seconds = int_param(request, "expire")
    seconds = default if seconds is None else seconds
    if not low <= seconds <= high:
        raise ApiError(400, f"parameter 'expire' must be {low}-{high} seconds")
    query = "?hlstoken=" + request.app[SIGNER_KEY].sign(token, seconds)
    return ok(
        strUrl=f"{token}/index.m3u8{query}",
        strV1Url=f"hls/v1/{token}/hls.m3u8{query}",
        strV2Url=f"hls/v2/{token}/hls.m3u8{query}",
        nExpire=seconds,
    )
