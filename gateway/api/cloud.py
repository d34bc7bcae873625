"""Cloud push mode's commands (issue 20): GetCloudClientInfo (an edge's link), GetServerList
(a cloud's edges), and what GetSrc adds for an edge's source on a cloud."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.commands import command
from gateway.api.schema import BOOL, INT, TEXT, list_of, obj
from gateway.auth import Session
from gateway.hub.stream import Stream
from gateway.ingest.cloud.edges import Edge, RemoteSource
from gateway.web.request import gateway


def describe_remote(edge: Edge, source: RemoteSource, stream: Stream | None) -> dict[str, Any]:
    """GetSrc's fields of an edge's source: h5stream's strServerToken and strOriginalToken,
    and whether it is online: its link up, the edge's own stream online (as the edge last
    told, within a second), and the cloud's stream too while it runs."""
    running = stream is not None and stream.running
    info: dict[str, Any] = {
        "nType": source.type,
        "strName": source.name,
        "strServerToken": edge.server_token,
        "strOriginalToken": source.token,
        "bOnline": edge.online and source.online and (stream.online if running and stream else True),
    }
    if not edge.online:
        info["strLastError"] = f"edge {edge.server_token} offline"
    return info


@command(
    "GetCloudClientInfo",
    answer=obj(
        bEnable=BOOL,
        strServerName=TEXT,
        strServerToken=TEXT,
        strCloudIp=TEXT,
        strCloudPort=TEXT,
        bSSL=BOOL,
        strUser=TEXT,
        bOnline=BOOL,
        strLastError=TEXT,
        nChannels=INT,
        nSentFrames=INT,
        nSentBytes=INT,
        nSkips=INT,
    ),
)
async def get_cloud_client_info(request: web.Request, _: Session | None) -> web.Response:
    """This gateway as an edge of a cloud (its `cloud` section; never the password): whether
    its link is up, why not, and what it sends (link channels, media frames and bytes,
    keyframe skips of a slow link)."""
    gw = gateway(request)
    cloud, link = gw.config.raw["cloud"], gw.cloud_link
    counts = link.counts() if link else {"channels": 0, "frames": 0, "bytes": 0, "skips": 0}
    answer = {
        "bStatus": True,
        "strCode": "ok",
        "bEnable": cloud["bEnable"],
        "strServerName": cloud["strServerName"],
        "strServerToken": cloud["strServerToken"],
        "strCloudIp": cloud["strCloudIp"],
        "strCloudPort": cloud["strCloudPort"],
        "bSSL": cloud["bSSL"],
        "strUser": cloud["strUser"],
        "bOnline": bool(link and link.online),
        "strLastError": link.last_error if link else "",
        "nChannels": counts["channels"],
        "nSentFrames": counts["frames"],
        "nSentBytes": counts["bytes"],
        "nSkips": counts["skips"],
    }
    return web.json_response(answer)


SERVER = obj(
    strServerToken=TEXT,
    strServerName=TEXT,
    strServerIp=TEXT,
    bOnline=BOOL,
    bonline=BOOL,
    nSourceCount=INT,
    nChannels=INT,
    nReceivedFrames=INT,
    nReceivedBytes=INT,
    nLinks=INT,
)


@command("GetServerList", answer=obj(server=list_of(SERVER)))
async def get_server_list(request: web.Request, _: Session | None) -> web.Response:
    """This gateway as a cloud: the edges that linked to it since it started (`bonline` is
    h5stream's spelling of bOnline), with the streams they send now (nChannels) and since
    start (frames, bytes, links)."""
    servers = [
        {
            "strServerToken": edge.server_token,
            "strServerName": edge.server_name,
            "strServerIp": edge.ip,
            "bOnline": edge.online,
            "bonline": edge.online,
            "nSourceCount": len(edge.sources),
            "nChannels": edge.channels,
            "nReceivedFrames": edge.frames_in,
            "nReceivedBytes": edge.bytes_in,
            "nLinks": edge.links,
        }
        for edge in gateway(request).edges.edges.values()
    ]
    return web.json_response({"bStatus": True, "strCode": "ok", "server": servers})
