"""H5_HIKVISION: a camera on HikCentral Connect, streamed from the expiring RTMP URL the
platform hands out for it.

Each resolve() asks the platform (live/address/get) for a fresh URL and says when it
expires, so the demux thread renews it make-before-break while someone watches, and asks
again at once when a URL dies early. URLs are only asked for while the stream runs (an
on-demand source: while someone watches). A camera that is offline or a platform that is
down makes resolve() fail with a growing retry_after, so the platform is not hammered.
The signed URL is a bearer credential: it is never logged nor shown (GetSrc shows the
device serial, camera id and when the current URL expires). A source's sub stream is a
second HikvisionSource asking for the camera's sub quality.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gateway.config.file import SourceConf
from gateway.hub.profile import MAIN, SUB
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.stream import check_url, input_options
from gateway.vendors.hikvision.client import HikClient, HikError

RETRY_FIRST = 1.0
RETRY_CAP = 10.0


class HikvisionSource:
    def __init__(self, client: HikClient, device_serial: str, camera_id: str, profile: str = MAIN):
        if not device_serial or not camera_id:
            raise SourceError("an H5_HIKVISION source needs strHikDeviceSerial and strHikCameraId")
        self.client = client
        self.device_serial = device_serial
        self.camera_id = camera_id
        self.profile = profile
        # The main stream asks for hikvision.strQuality, the sub stream for the sub quality.
        self.quality = client.settings.quality if profile == MAIN else SUB
        self.urls_fetched = 0
        self.expires_at: float | None = None
        self._failures = 0

    @classmethod
    def from_conf(cls, conf: SourceConf, client: HikClient | None, profile: str = MAIN) -> HikvisionSource:
        if client is None:
            raise SourceError("HikCentral Connect is not configured (hikvision.strHost, strAppKey, strSecretKey)")
        return cls(client, conf["strHikDeviceSerial"], conf["strHikCameraId"], profile)

    @property
    def label(self) -> str:
        return f"HikCentral Connect camera {self.camera_id}"

    async def resolve(self) -> InputSpec:
        try:
            address = await self.client.live_address(self.device_serial, self.camera_id, self.quality)
        except HikError as e:
            self._failures += 1
            retry_after = min(RETRY_CAP, RETRY_FIRST * 2 ** (self._failures - 1))
            raise SourceError(str(e), retry_after=retry_after) from None
        self._failures = 0
        try:
            url = check_url(address.url)
        except SourceError:
            raise SourceError(f"{self.label}: the platform gave an unusable stream URL") from None
        if urlsplit(url).scheme.lower() not in ("rtmp", "rtmps"):
            raise SourceError(f"{self.label}: the platform gave a {urlsplit(url).scheme} URL, not RTMP")
        self.urls_fetched += 1
        self.expires_at = address.expires_at
        return InputSpec(url, input_options(url), label=self.label, expires_at=address.expires_at)

    def describe(self) -> dict[str, Any]:
        """What GetSrc adds: the current URL's expiry (never the URL itself); a sub stream's
        source names its fields strHikSub…/nHikSub…."""
        expires = ""
        if self.expires_at is not None:
            expires = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        sub = "Sub" if self.profile != MAIN else ""
        return {
            f"strHik{sub}UrlExpires": expires,
            f"nHik{sub}UrlsFetched": self.urls_fetched,
        }
