"""H5_ONVIF: ask the camera's media service for its RTSP URI, then stream it as H5_STREAM does.

The URI is asked for again on every (re)connect: cameras hand out a new one after a
reboot or a profile change, so a stream that failed is retried with a fresh answer.
The camera credentials serve both ONVIF (WS-Security digest) and the RTSP connection.
A source's sub stream is a second OnvifSource with profile "sub": it streams the sub
profile, or the main one when the camera has no second H.264 or H.265 profile to pick.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.config.file import SourceConf, whole_number
from gateway.hub.profile import MAIN
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.stream import check_url, input_options, with_credentials
from gateway.redact import redact
from gateway.vendors.onvif.client import DEFAULT_PATH, Endpoint, OnvifDevice, OnvifError, Profile

log = logging.getLogger(__name__)

# What the demux thread reads, so what is picked automatically (H.265 is served to clients
# without it through the H.264 rendition). ONVIF Media 1 cameras say "H264" only; H.265
# profiles appear as "H265" (Media 2, and Hikvision's Media 1 extension).
PLAYABLE_CODECS = ("H264", "H265")


def choose(profiles: list[Profile], wanted: str, auto: bool, other_than: Profile | None = None) -> Profile | None:
    """The profile named `wanted` (token or name), else with `auto` the first H.264 or H.265 one."""
    if wanted:
        for profile in profiles:
            if wanted in (profile.token, profile.name):
                return profile
        have = ", ".join(f"{p.token} ({p.name})" for p in profiles) or "none"
        raise SourceError(f"ONVIF profile {wanted!r} not found; the camera has: {have}")
    if not auto:
        return None
    return next((p for p in profiles if p.codec.upper() in PLAYABLE_CODECS and p is not other_than), None)


class OnvifSource:
    def __init__(
        self,
        endpoint: Endpoint,
        main: str = "",
        sub: str = "",
        auto: bool = True,
        rtsp_type: str = "H5_RTSP_TCP",
        profile: str = MAIN,
    ):
        if not (main or auto):
            raise SourceError("strOnvifProfileMain is empty and bOnvifProfileAuto is false: name a profile")
        self.endpoint = endpoint
        self.wanted_main, self.wanted_sub, self.auto = main, sub, auto
        self.rtsp_type = rtsp_type
        self.profile = profile  # which of the two this source streams
        self.main: Profile | None = None
        self.sub: Profile | None = None
        self.url = ""  # the streamed profile's RTSP URI as the camera last gave it

    @classmethod
    def from_conf(cls, conf: SourceConf, profile: str = MAIN) -> OnvifSource:
        port = whole_number(conf["strSrcPort"] or "80", max_digits=5)
        if port is None:
            raise SourceError(f"strSrcPort {conf['strSrcPort']!r} is not a port number")
        try:
            endpoint = Endpoint(
                conf["strSrcIpAddress"],
                port,
                conf["strUser"],
                conf["strPasswd"],
                conf["strOnvifAddr"] or DEFAULT_PATH,
            )
        except ValueError as e:
            raise SourceError(f"bad ONVIF address: {e}") from None
        return cls(
            endpoint,
            conf["strOnvifProfileMain"],
            conf["strOnvifProfileSub"],
            conf["bOnvifProfileAuto"],
            conf["nRTSPType"],
            profile,
        )

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[OnvifDevice, Profile]]:
        """The camera, connected, and the main profile as this source's settings choose it."""
        async with OnvifDevice(self.endpoint) as device:
            profiles = await device.profiles()
            main = choose(profiles, self.wanted_main, self.auto)
            if main is None:
                raise SourceError(f"ONVIF device {self.endpoint.label} has no H.264 or H.265 profile")
            self.main = main
            self.sub = choose(profiles, self.wanted_sub, self.auto, other_than=main)
            yield device, main

    async def stream_url(self) -> str:
        """The streamed profile's RTSP URI, fresh from the camera; OnvifError/SourceError say why not."""
        async with self.connect() as (device, main):
            streamed = main
            if self.profile != MAIN:
                if self.sub is None:
                    log.debug("ONVIF device %s has no sub profile: its sub stream is the main one", self.endpoint.label)
                streamed = self.sub or main
            url = check_url(await device.stream_uri(streamed.token))
        self.url = url
        return url

    async def resolve(self) -> InputSpec:
        try:
            url = await self.stream_url()
        except OnvifError as e:
            raise SourceError(str(e)) from None
        full = with_credentials(url, self.endpoint.user, self.endpoint.password)
        return InputSpec(full, input_options(url, self.rtsp_type), label=redact(url))

    def describe(self) -> dict[str, Any]:
        """What GetSrc adds for this source: the profiles in use and the URI last resolved
        (a sub stream's source: the URI it streams)."""
        if self.profile != MAIN:
            return {"strOnvifSubRtspUrl": redact(self.url)}
        return {
            "strOnvifProfileToken": self.main.token if self.main else "",
            "strOnvifProfileName": self.main.name if self.main else "",
            "strOnvifProfileSubToken": self.sub.token if self.sub else "",
            "strOnvifRtspUrl": redact(self.url),
        }
