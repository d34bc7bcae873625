"""Sources: GetSrc, AddSrcFile, AddSrcRTSP, AddSrcPush, DelSrc."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.cloud import describe_remote
from gateway.api.commands import bool_param, command, enum_param, param, token_param
from gateway.api.schema import BOOL, INT, TEXT, Param, choice, flag, list_of, obj, text, token, whole
from gateway.auth import Session
from gateway.config.file import (
    CONNECT_TYPES,
    PUSH_TYPE,
    RENDITION_HEIGHTS,
    RENDITION_MAX_KBPS,
    RENDITION_MODES,
    RTSP_TYPES,
    SourceConf,
    whole_number,
)
from gateway.core import Gateway
from gateway.hub.rendition_input import RenditionInput
from gateway.redact import MASK, redact, redact_urls
from gateway.web.errors import ApiError, ok
from gateway.web.request import gateway

SRC_FIELDS = (
    "nType",
    "strName",
    "strToken",
    "strUrl",
    "strUser",
    "bPasswdEncrypt",
    "bEnableAudio",
    "nConnectType",
    "nRTSPType",
    "strSrcIpAddress",
    "strSrcPort",
    "nChannelNumber",
    "bOnvifProfileAuto",
    "strOnvifAddr",
    "strOnvifProfileMain",
    "strOnvifProfileSub",
    "bRec",
    "strH264Rendition",
    "nH264RenditionKbps",
    "nH264RenditionHeight",
)

# GetSrc's strVideoCodec: the camera's codec as people name it (strCodec is the MIME type).
VIDEO_CODEC_NAMES = {"h264": "H.264", "h265": "H.265"}


def describe_source(gw: Gateway, token: str) -> dict[str, Any]:
    """GetSrc's entry of a configured source, or on a cloud of an edge's (its stream's conf)."""
    stream = gw.stream(token)
    remote = None if token in gw.config.sources else gw.edges.source(token)
    conf = gw.config.sources[token] if remote is None or stream is None else stream.conf
    info = {key: conf[key] for key in SRC_FIELDS}
    info.update({key: conf[key] for key in SourceConf.TYPE_FIELDS.get(conf.type, {})})
    info["strUrl"] = redact(conf.url)
    if "strUrlSub" in info:
        info["strUrlSub"] = redact(conf.url_sub)
    info["strPasswd"] = MASK if conf.password else ""
    info["bOnline"] = bool(stream and stream.online)
    info["strState"] = stream.state if stream else "disabled"
    info["strLastError"] = redact_urls((stream.last_error if stream else "source could not be created") or "")
    info["nViewers"] = stream.viewers if stream else 0
    info["nRtcPeers"] = sum(1 for peer in gw.rtc_peers.values() if peer.stream.token == token)  # main and sub
    info["strSnapshotUrl"] = f"api/v1/GetImage?token={token}"
    info["nHlsSegments"] = 0  # in memory only while HLS clients poll (the segmenter says)
    # Whether the H.264 rendition of the main stream transcodes now (clients without H.265 watch).
    transcode = stream.rendition.source if stream and stream.rendition else None
    info["bH264Rendition"] = isinstance(transcode, RenditionInput) and transcode.transcoding
    # What the source learnt while connecting (ONVIF: the profile in use), and its outputs.
    if stream:
        info.update(stream.describe())
    if stream and stream.params and stream.params.video:
        info["nWidth"], info["nHeight"] = stream.params.video.width, stream.params.video.height
        info["strCodec"] = stream.params.mime
        info["strVideoCodec"] = VIDEO_CODEC_NAMES[stream.params.video.codec]
    info.update(describe_sub(gw, token, info))
    if remote is not None:
        info.update(describe_remote(*remote, stream))
    return info


def describe_sub(gw: Gateway, token: str, main: dict[str, Any]) -> dict[str, Any]:
    """GetSrc's word on the sub stream (h5ss): `bSubStream` whether the source has its own;
    `bSubOnline`, `strSubState`, `nSubViewers` and its size are those of the stream
    `profile=sub` serves (the main one when it has none); the sub input's own fields."""
    sub = gw.streams.sub(token)
    if sub is None:
        info = {"bSubStream": False, "bSubOnline": main["bOnline"], "strSubState": main["strState"], "nSubViewers": 0}
        if "nWidth" in main:
            info["nSubWidth"], info["nSubHeight"] = main["nWidth"], main["nHeight"]
        return info
    info = {
        "bSubStream": True,
        "bSubOnline": sub.online,
        "strSubState": sub.state,
        "strSubLastError": sub.last_error or "",
        "nSubViewers": sub.viewers,
    }
    info.update(sub.source.describe())
    if sub.params and sub.params.video:
        info["nSubWidth"], info["nSubHeight"] = sub.params.video.width, sub.params.video.height
        info["strSubVideoCodec"] = VIDEO_CODEC_NAMES[sub.params.video.codec]
    return info


# GetSrc's fields of a source (describe_source; some depend on its type and state).
SOURCE_ANSWER = obj(
    nType=TEXT,
    strName=TEXT,
    strToken=TEXT,
    strUrl=TEXT,
    strUser=TEXT,
    strPasswd=TEXT,
    bPasswdEncrypt=BOOL,
    bEnableAudio=BOOL,
    nConnectType=TEXT,
    nRTSPType=TEXT,
    strSrcIpAddress=TEXT,
    strSrcPort=TEXT,
    nChannelNumber=INT,
    bOnvifProfileAuto=BOOL,
    strOnvifAddr=TEXT,
    strOnvifProfileMain=TEXT,
    strOnvifProfileSub=TEXT,
    bRec=BOOL,
    strH264Rendition=TEXT,
    nH264RenditionKbps=INT,
    nH264RenditionHeight=INT,
    bH264Rendition=BOOL,
    bOnline=BOOL,
    strState=TEXT,
    strLastError=TEXT,
    nViewers=INT,
    nRtcPeers=INT,
    strSnapshotUrl=TEXT,
    nWidth=INT,
    nHeight=INT,
    strCodec=TEXT,
    strVideoCodec=TEXT,
    bSubStream=BOOL,
    bSubOnline=BOOL,
    strSubState=TEXT,
    nSubViewers=INT,
    strSubVideoCodec=TEXT,
    strPublisher=TEXT,
)


@command("GetSrc", params=(token(required=False, about="only this source"),), answer=obj(src=list_of(SOURCE_ANSWER)))
async def get_src(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    tokens = (
        [token_param(request, remote=True)]
        if "token" in request.query
        else [*gw.config.sources, *gw.edges.remote_tokens()]
    )
    return web.json_response({"bStatus": True, "strCode": "ok", "src": [describe_source(gw, t) for t in tokens]})


# What common_source_fields reads.
SOURCE_PARAMS: tuple[Param, ...] = (
    text("name", 128, required=True),
    token(about="the new source's token (unique)"),
    flag("audio", "pass the audio on (default true)"),
    choice("connecttype", CONNECT_TYPES),
    flag("rec", "record continuously (default false)"),
    choice("rendition", RENDITION_MODES, about="H.264 rendition of an H.265 stream: auto (default) or off"),
    whole("renditionkbps", 0, RENDITION_MAX_KBPS, about="the rendition's bitrate (0, the default: from its size)"),
    whole("renditionheight", 0, RENDITION_HEIGHTS[1], about="the rendition's height (0, the default: the source's)"),
)


def common_source_fields(request: web.Request) -> dict[str, Any]:
    name = param(request, "name", max_len=128).strip()
    if not name:
        raise ApiError(400, "name must not be empty")
    return {
        "strName": name,
        "strToken": token_param(request, existing=False),
        "bEnableAudio": bool_param(request, "audio", True),
        "nConnectType": enum_param(request, "connecttype", CONNECT_TYPES, "H5_ONDEMAND"),
        "bRec": bool_param(request, "rec", False),
        "strH264Rendition": enum_param(request, "rendition", RENDITION_MODES, "auto"),
        "nH264RenditionKbps": int_param(request, "renditionkbps"),
        "nH264RenditionHeight": int_param(request, "renditionheight"),
    }


def int_param(request: web.Request, name: str) -> int:
    """A whole-number parameter, 0 when not given; its range is the config's to check."""
    number = whole_number(param(request, name, "0"))
    if number is None:
        raise ApiError(400, f"parameter '{name}' must be a whole number >= 0")
    return number


@command(
    "AddSrcFile",
    role="Administrator",
    params=(*SOURCE_PARAMS, text("url", required=True, about="a file name in the media dir")),
)
async def add_src_file(request: web.Request, _: Session | None) -> web.Response:
    fields = common_source_fields(request) | {"nType": "H5_FILE", "strUrl": param(request, "url")}
    conf = gateway(request).add_source(fields)
    return ok(f"source {conf.token} added")


@command(
    "AddSrcRTSP",
    role="Administrator",
    params=(
        *SOURCE_PARAMS,
        text("url", required=True, about="rtsp:// or rtmp:// URL"),
        text("suburl", about="the sub stream's URL"),
        text("user", 128),
        text("password", 128),
        choice("rtsptype", RTSP_TYPES),
    ),
)
async def add_src_rtsp(request: web.Request, _: Session | None) -> web.Response:
    fields = common_source_fields(request) | {
        "nType": "H5_STREAM",
        "strUrl": param(request, "url"),
        "strUrlSub": param(request, "suburl", ""),
        "strUser": param(request, "user", "", max_len=128),
        "strPasswd": param(request, "password", "", max_len=128),
        "nRTSPType": enum_param(request, "rtsptype", RTSP_TYPES, "H5_RTSP_TCP"),
    }
    conf = gateway(request).add_source(fields)
    return ok(f"source {conf.token} added")


@command("AddSrcPush", role="Administrator", params=SOURCE_PARAMS)
async def add_src_push(request: web.Request, _: Session | None) -> web.Response:
    """h5ss: a source that a publisher pushes into (rtsp://host:8554/{token} with ANNOUNCE
    and RECORD, rtmp://host:8935/live/{token}); it waits for one."""
    fields = common_source_fields(request) | {"nType": PUSH_TYPE}
    conf = gateway(request).add_source(fields)
    return ok(f"source {conf.token} added")


@command("DelSrc", role="Administrator", params=(token(),))
async def del_src(request: web.Request, _: Session | None) -> web.Response:
    token = token_param(request)
    gateway(request).delete_source(token)
    return ok(f"source {token} deleted")
