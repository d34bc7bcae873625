"""GetHlsUrl: signed HLS URLs for players that cannot log in (outputs/hls/signer.py)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.commands import command, token_param
from gateway.api.schema import INT, TEXT, choice, obj, token, whole
from gateway.auth import Session
from gateway.hub.profile import MAIN, SUB, profile_of
from gateway.outputs.hls.http import SIGNER_KEY, int_param
from gateway.web.errors import ApiError, ok

SIGNED_EXPIRE = (60, 10, 86400)  # default, min, max seconds of a GetHlsUrl token


@command(
    "GetHlsUrl",
    params=(
        token(),
        choice("profile", (MAIN, SUB)),
        whole("expire", SIGNED_EXPIRE[1], SIGNED_EXPIRE[2], about="seconds the URLs may start to be played"),
    ),
    answer=obj(strUrl=TEXT, strV1Url=TEXT, strV2Url=TEXT, nExpire=INT),
)
async def get_hls_url(request: web.Request, session: Session | None) -> web.Response:
    """Signed HLS URLs (relative to the gateway root) for one stream; `profile=sub`: its
    sub stream. They end with the caller's session."""
    token = token_param(request, remote=True)
    try:
        profile = profile_of(request.query.get("profile"))
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    default, low, high = SIGNED_EXPIRE
    seconds = int_param(request.query, "expire")
    seconds = default if seconds is None else seconds
    if not low <= seconds <= high:
        raise ApiError(400, f"parameter 'expire' must be {low}-{high} seconds")
    query = "?hlstoken=" + request.app[SIGNER_KEY].sign(token, seconds, session)
    if profile == SUB:
        query += "&profile=sub"
    return ok(
        strUrl=f"{token}/index.m3u8{query}",
        strV1Url=f"hls/v1/{token}/hls.m3u8{query}",
        strV2Url=f"hls/v2/{token}/hls.m3u8{query}",
        nExpire=seconds,
    )
