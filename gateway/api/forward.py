"""h5stream's `servertoken=`: a cloud runs a REST command on one of its edges.

On the cloud (`forward`), the caller's own session and role are checked as for any
command (api/commands.py dispatch); then the command, with its query less `session` and
`servertoken`, goes over that edge's cloud link, and the edge's answer (status, type,
body) is the answer. On the edge (`run_locally`), the command runs as an Administrator
through the edge's own HTTP API on loopback, with a session made for that one call, so it
takes exactly the path (checks, limits, errors) of a local caller's: the link can never
run anything but a registered command.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web

from gateway.core import Gateway
from gateway.web.errors import error_json

log = logging.getLogger(__name__)

# What may be sent to an edge: its sources, ONVIF and PTZ, recording, snapshots and state.
# Not: logins and users (the cloud's own), DownloadRecord (a stream, not an answer),
# GetHlsUrl (URLs of the edge's own ports), the HikCentral import.
FORWARDED = frozenset(
    name.lower()
    for name in (
        "GetSrc",
        "AddSrcFile",
        "AddSrcRTSP",
        "AddSrcONVIF",
        "AddSrcPush",
        "DelSrc",
        "OnvifProbe",
        "OnvifSearch",
        "Ptz",
        "GetPresets",
        "SetPreset",
        "DelPreset",
        "Record",
        "PathRecord",
        "ManualRecordStart",
        "ManualRecordStop",
        "SetRec",
        "Snapshot",
        "PathSnapshot",
        "Search",
        "GetImage",
        "GetSystemInfo",
        "GetRunInfo",
    )
)
NOT_FORWARDED_PARAMS = ("session", "servertoken")
LOCAL_TIMEOUT = 9.0  # seconds the edge gives its own API (the cloud waits 10 for the link's answer)
EDGE_USER = "cloud"  # the user name of the sessions made for forwarded commands, in the edge's logs


@dataclass(frozen=True)
class ForwardedAnswer:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def error(cls, status: int, reason: str) -> ForwardedAnswer:
        return cls(status, "application/json", error_json(reason))


class Edge(Protocol):
    """An edge as the cloud's link registry has it (ingest/cloud/)."""

    @property
    def online(self) -> bool: ...

    async def request(self, command: str, query: dict[str, str]) -> ForwardedAnswer:
        """The edge's answer; TimeoutError when it gives none in time."""
        ...


async def forward(gw: Gateway, request: web.Request, name: str) -> web.Response:
    """Run command `name` of `request` (its caller already let in) on the edge its
    `servertoken=` names."""
    server_token = request.query["servertoken"]
    if name.lower() not in FORWARDED:
        return answer(ForwardedAnswer.error(400, f"{name} cannot be sent to an edge (servertoken)"))
    edge = gw.edges.get(server_token)
    if edge is None:
        return answer(ForwardedAnswer.error(404, f"unknown server token {server_token!r}"))
    if not edge.online:
        return answer(ForwardedAnswer.error(503, f"edge {server_token!r} is offline"))
    query = {key: value for key, value in request.query.items() if key not in NOT_FORWARDED_PARAMS}
    try:
        return answer(await edge.request(name, query))
    except TimeoutError:
        return answer(ForwardedAnswer.error(504, f"edge {server_token!r} did not answer {name} in time"))


def answer(forwarded: ForwardedAnswer) -> web.Response:
    return web.Response(status=forwarded.status, body=forwarded.body, content_type=forwarded.content_type)


async def run_locally(gw: Gateway, command: str, query: dict[str, str]) -> ForwardedAnswer:
    """The edge's answer to a command its cloud sends: run through its own API on
    loopback as an Administrator (a session made for the call and ended after it)."""
    if command.lower() not in FORWARDED:
        return ForwardedAnswer.error(400, f"{command} cannot be sent to an edge")
    base = local_api(gw)
    if base is None:
        return ForwardedAnswer.error(503, "the edge serves no HTTP port to run the command on")
    session = gw.auth.grant(EDGE_USER, "Administrator") if gw.settings.http.auth else None
    params = {key: value for key, value in query.items() if key not in NOT_FORWARDED_PARAMS}
    if session is not None:
        params["session"] = session.id
    # The edge's own certificate on loopback: it may be self-signed, and the peer is us.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LOCAL_TIMEOUT)) as client,
            client.get(f"{base}/api/v1/{command}", params=params, ssl=context) as response,
        ):
            return ForwardedAnswer(response.status, response.content_type, await response.read())
    except (aiohttp.ClientError, TimeoutError) as e:
        log.warning("cloud: running %s on this edge failed: %s", command, type(e).__name__)
        return ForwardedAnswer.error(502, f"the edge could not run {command}: {type(e).__name__}")
    finally:
        if session is not None:
            gw.auth.end(session, "forwarded command done")


def local_api(gw: Gateway) -> str | None:
    """The base URL of this gateway's own API on loopback (HTTP, else HTTPS), None if it serves neither."""
    http = gw.settings.http
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(http.bind, http.bind)
    if ":" in host:
        host = f"[{host}]"
    if http.port:
        return f"http://{host}:{http.port}"
    if http.https_port:
        return f"https://{host}:{http.https_port}"
    return None
