"""The ONVIF commands of /api/v1: add a camera by profile, probe, search, PTZ and presets.

A camera that cannot be reached or refuses a call gives a 502 with the reason; bad
parameters a 400 before the camera is asked anything. Nothing is saved unless the camera
answered as the new source needs.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from gateway.api.commands import command, enum_param, param, token_param
from gateway.api.sources import common_source_fields
from gateway.auth import Session
from gateway.config.file import RTSP_TYPES, SourceConf, whole_number
from gateway.ingest.onvif import OnvifSource
from gateway.redact import redact
from gateway.vendors.onvif import discovery
from gateway.vendors.onvif.client import DEFAULT_PATH, Endpoint, OnvifDevice, OnvifError
from gateway.web.errors import ApiError, ok
from gateway.web.request import gateway

# action -> (pan, tilt, zoom) direction; the speed scales it.
MOVES = {
    "up": (0, 1, 0),
    "down": (0, -1, 0),
    "left": (-1, 0, 0),
    "right": (1, 0, 0),
    "zoomin": (0, 0, 1),
    "zoomout": (0, 0, -1),
}
PTZ_ACTIONS = (*MOVES, "stop", "preset")
SEARCH_DEFAULT, SEARCH_MIN, SEARCH_MAX = 5.0, 0.5, 30.0


def number_param(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    text = param(request, name, str(default), max_len=16)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise ApiError(400, f"parameter '{name}' must be a number from {low:g} to {high:g}")
    return value


def endpoint_param(request: web.Request) -> Endpoint:
    port = whole_number(param(request, "port", "80", max_len=5))
    if port is None:
        raise ApiError(400, "parameter 'port' must be a number from 1 to 65535")
    return Endpoint(
        host=param(request, "ip", max_len=253),
        port=port,
        user=param(request, "user", "", max_len=128),
        password=param(request, "password", "", max_len=128),
        path=param(request, "onvifaddr", "", max_len=256) or DEFAULT_PATH,
    )


def onvif_source(request: web.Request) -> OnvifSource:
    gw = gateway(request)
    token = token_param(request)
    conf = gw.config.sources[token]
    if conf.type != "H5_ONVIF":
        raise ApiError(400, f"source {token} is not an ONVIF camera (nType {conf.type})")
    source = gw.inputs.get(token)
    if not isinstance(source, OnvifSource):
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    return source


def device_failed(e: OnvifError) -> ApiError:
    return ApiError(502, str(e))


# -- sources -----------------------------------------------------------------------------


@command("AddSrcONVIF", role="Administrator")
async def add_src_onvif(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    endpoint = endpoint_param(request)
    main, sub = param(request, "main", "", max_len=64), param(request, "sub", "", max_len=64)
    fields = common_source_fields(request) | {
        "nType": "H5_ONVIF",
        "strUser": endpoint.user,
        "strPasswd": endpoint.password,
        "strSrcIpAddress": endpoint.host,
        "strSrcPort": str(endpoint.port),
        "strOnvifAddr": endpoint.path,
        "bOnvifProfileAuto": not main,
        "strOnvifProfileMain": main,
        "strOnvifProfileSub": sub,
        "nRTSPType": enum_param(request, "rtsptype", RTSP_TYPES, "H5_RTSP_TCP"),
    }
    if fields["strToken"] in gw.config.sources:
        raise ApiError(400, f"token {fields['strToken']!r} already exists")
    source = OnvifSource.from_conf(SourceConf.from_json(dict(fields), "source"))
    try:
        await source.stream_url()
    except OnvifError as e:
        raise device_failed(e) from None
    conf = gw.add_source(fields, source)
    return ok(f"source {conf.token} added", **source.describe())


# -- finding cameras -------------------------------------------------------------------


@command("OnvifProbe", role="Administrator")
async def onvif_probe(request: web.Request, _: Session | None) -> web.Response:
    found: list[dict[str, Any]] = []
    try:
        async with OnvifDevice(endpoint_param(request)) as device:
            for profile in await device.profiles():
                try:
                    url = await device.stream_uri(profile.token)
                except OnvifError:
                    url = ""  # some profiles (JPEG, audio only) have no RTSP stream
                found.append(
                    {
                        "strToken": profile.token,
                        "strName": profile.name,
                        "strCodecName": profile.codec,
                        "strRtspUrl": redact(url),
                        "nWidth": profile.width,
                        "nHeight": profile.height,
                        "nFps": profile.fps,
                        "nBandwidth": profile.bitrate,
                        "bGotUrl": bool(url),
                        "bPtz": profile.ptz,
                    }
                )
    except OnvifError as e:
        raise device_failed(e) from None
    return ok(profile=found)


@command("OnvifSearch", role="Administrator")
async def onvif_search(request: web.Request, _: Session | None) -> web.Response:
    timeout = number_param(request, "timeout", SEARCH_DEFAULT, SEARCH_MIN, SEARCH_MAX)
    try:
        devices = await discovery.search(timeout, gateway(request).settings.onvif.discovery_target)
    except discovery.DiscoveryError as e:
        raise ApiError(503, str(e)) from None
    return ok(
        device=[
            {"strIp": d.ip, "strPort": str(d.port), "strOnvifAddr": d.path, "strModel": d.model, "strName": d.name}
            for d in devices
        ]
    )


# -- PTZ -------------------------------------------------------------------------------


@command("Ptz", role="Operator")
async def ptz(request: web.Request, _: Session | None) -> web.Response:
    source = onvif_source(request)
    action = enum_param(request, "action", PTZ_ACTIONS, "")
    speed = number_param(request, "speed", 0.5, 0.01, 1.0)
    preset = param(request, "preset", max_len=64) if action == "preset" else ""
    try:
        async with source.connect() as (device, profile):
            if action == "stop":
                await device.stop(profile.token)
            elif action == "preset":
                await device.goto_preset(profile.token, preset)
            else:
                pan, tilt, zoom = (speed * axis for axis in MOVES[action])
                await device.move(profile.token, pan, tilt, zoom)
    except OnvifError as e:
        raise device_failed(e) from None
    return ok(f"{action} sent")


@command("GetPresets", role="Operator")
async def get_presets(request: web.Request, _: Session | None) -> web.Response:
    source = onvif_source(request)
    try:
        async with source.connect() as (device, profile):
            presets = await device.presets(profile.token)
    except OnvifError as e:
        raise device_failed(e) from None
    return ok(preset=[{"strToken": p.token, "strName": p.name} for p in presets])


@command("SetPreset", role="Operator")
async def set_preset(request: web.Request, _: Session | None) -> web.Response:
    source = onvif_source(request)
    name = param(request, "presetname", max_len=64).strip()
    if not name:
        raise ApiError(400, "presetname must not be empty")
    overwrite = param(request, "presettoken", "", max_len=64)
    try:
        async with source.connect() as (device, profile):
            token = await device.set_preset(profile.token, name, overwrite)
    except OnvifError as e:
        raise device_failed(e) from None
    return ok(f"preset {token} saved", strPresetToken=token)


@command("DelPreset", role="Operator")
async def del_preset(request: web.Request, _: Session | None) -> web.Response:
    source = onvif_source(request)
    preset = param(request, "presettoken", max_len=64)
    try:
        async with source.connect() as (device, profile):
            await device.remove_preset(profile.token, preset)
    except OnvifError as e:
        raise device_failed(e) from None
    return ok(f"preset {preset} deleted")
