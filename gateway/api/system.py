"""The gateway itself: GetSystemInfo, GetRunInfo, GetLoadingImage."""

from __future__ import annotations

import hashlib
import platform
import socket
from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.api.commands import command
from gateway.api.schema import INT, NUMBER, TEXT, obj
from gateway.auth import Session
from gateway.outputs.webrtc.sender_path import SENDER_PATH
from gateway.web.request import gateway

LOADING_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 640 360">'
    '<rect width="640" height="360" fill="#1d2129"/>'
    '<text x="320" y="190" fill="#8a94a6" font-family="sans-serif" font-size="28" text-anchor="middle">'
    "Loading…</text></svg>"
)


def host_id() -> str:
    try:
        seed = Path("/etc/machine-id").read_text().strip()
    except OSError:
        seed = socket.gethostname()
    return hashlib.sha256(seed.encode()).hexdigest()[:16].upper()


@command(
    "GetSystemInfo",
    answer=obj(strVersion=TEXT, strHostId=TEXT, strHostName=TEXT, strOS=TEXT, strPython=TEXT, nSourceCount=INT),
)
async def get_system_info(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    return web.json_response(
        {
            "bStatus": True,
            "strCode": "ok",
            "strVersion": __version__,
            "strHostId": host_id(),
            "strHostName": socket.gethostname(),
            "strOS": f"{platform.system()} {platform.release()}",
            "strPython": platform.python_version(),
            "nSourceCount": len(gw.config.sources),
        }
    )


@command(
    "GetRunInfo",
    answer=obj(
        strRunTime=TEXT,
        nCPUUsage=NUMBER,
        nMemoryUsage=NUMBER,
        nTotalMemoryByte=INT,
        nNetworkInK=NUMBER,
        nNetworkOutK=NUMBER,
        nTotalSpaceByte=INT,
        nFreeSpaceByte=INT,
        nRecordTotalSpaceByte=INT,
        nRecordFreeSpaceByte=INT,
        strWebRtcPath=TEXT,
        nWebRtcFallbacks=INT,
    ),
)
async def get_run_info(request: web.Request, _: Session | None) -> web.Response:
    answer = {"bStatus": True, "strCode": "ok", **gateway(request).runinfo.snapshot(), **SENDER_PATH.run_info()}
    return web.json_response(answer)


@command("GetLoadingImage", role=None, media_type="image/svg+xml")
async def get_loading_image(request: web.Request, _: Session | None) -> web.Response:
    return web.Response(text=LOADING_SVG, content_type="image/svg+xml")
