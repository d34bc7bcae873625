"""HikCentral Connect OpenAPI client: token, devices, cameras and live stream addresses.

One client per platform, shared by every H5_HIKVISION source and the import, so they
share one access token and one rate limit. Every call is a POST of JSON with the token in
a `Token:` header; the answer is `{"errorCode": "0", "data": {...}}`, failures come with
HTTP 200 and another errorCode, which is raised as HikError naming the code and the call.

- The token is fetched once and kept until shortly before it expires; a token error
  (OPEN000006 and friends) drops it, fetches a new one and retries the call once.
- Requests are spaced at least MIN_INTERVAL apart (the platform allows about 5 a second).
- HTTP 5xx, timeouts and refused connections are retried with a short backoff, inside
  one time budget per call, then raised as HikUnavailable.
- appKey, secretKey, the token and the signed stream URLs are never logged nor put in
  an error message (the dataclasses hide them from repr too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

TOKEN_PATH = "/api/hccgw/platform/v1/token/get"
DEVICES_PATH = "/api/hccgw/resource/v1/devices/get"
CAMERAS_PATH = "/api/hccgw/resource/v1/cameras/get"
LIVE_ADDRESS_PATH = "/api/hccgw/video/v1/live/address/get"

# Codes that mean "this access token is no good": fetch a new one and retry once.
TOKEN_ERRORS = frozenset({"OPEN000006", "OPEN000007", "EVZ10002"})
CAMERA_OFFLINE = "EVZ20007"
REQUEST_TIMEOUT = 4.0
CALL_BUDGET = 8.0  # seconds one call may take with its retries (a source's resolve waits 15 s)
RETRY_FIRST = 0.5
MIN_INTERVAL = 0.2  # at most 5 requests a second
TOKEN_MARGIN = 300.0  # renew the token this long before it expires
TOKEN_FALLBACK_LIFE = 12 * 3600.0  # when the platform does not say
PAGE_SIZE = 500
MAX_PAGES = 1000
LIVE_PROTOCOL_RTMP = 3
QUALITY = {"main": 1, "sub": 2}


class HikError(Exception):
    """The platform refused a call; `code` is its errorCode (or "HTTP 4xx")."""

    def __init__(self, call: str, code: str, message: str = ""):
        self.call, self.code = call, code
        super().__init__(f"HikCentral Connect {call}: {code}" + (f" ({message})" if message else ""))


class HikUnavailable(HikError):
    """The platform could not be reached or kept failing (5xx, timeouts)."""


def platform_url(host: str) -> str:
    """The platform's base URL from `hikvision.strHost`: a host name (https is implied)
    or an explicit http(s)://host[:port] URL. ValueError says what is wrong."""
    text = host.strip()
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as e:
        raise ValueError(f"{host!r} is not a host name or URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{host!r}: expected a host name or an http(s)://host[:port] URL")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{host!r}: give only the host (and port), no path, query or user")
    if any(c.isspace() for c in text):
        raise ValueError(f"{host!r} contains spaces")
    return f"{parts.scheme}://{parts.netloc}"


def epoch_seconds(value: Any) -> float | None:
    """An expiry time the platform gave, in epoch seconds (it sends seconds or milliseconds)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    return number / 1000 if number > 1e11 else number


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    serial: str

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Device:
        return cls(str(item.get("id", "")), str(item.get("name", "")), str(item.get("serialNo", "")))


@dataclass(frozen=True)
class Camera:
    id: str
    name: str
    device_serial: str


@dataclass(frozen=True)
class LiveAddress:
    url: str = field(repr=False)  # signed: whoever has it can watch until it expires
    expires_at: float


@dataclass(frozen=True)
class PlatformSettings:
    """The `hikvision` section of h5ss.conf."""

    base_url: str
    app_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    url_validity: int
    quality: str


class HikClient:
    def __init__(self, settings: PlatformSettings):
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._api_base = settings.base_url  # the areaDomain the token answer names
        self._token_lock = asyncio.Lock()
        self._pace_lock = asyncio.Lock()
        self._next_slot = 0.0
        self.errors: dict[str, int] = {}  # failed platform requests by call, for /metrics

    def __repr__(self) -> str:
        return f"HikClient({self.settings.base_url})"

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- the calls -------------------------------------------------------------------

    async def devices(self) -> list[Device]:
        items = await self._pages("devices/get", DEVICES_PATH, {"filter": {"matchKey": ""}}, "device")
        return [Device.from_json(item) for item in items]

    async def cameras(self, device_serial: str) -> list[Camera]:
        body = {"filter": {"includeSubArea": "1", "deviceSerialNo": device_serial}}
        items = await self._pages("cameras/get", CAMERAS_PATH, body, "camera")
        cameras = []
        for item in items:
            found = item.get("device")
            device = found if isinstance(found, dict) else {}
            serial = str(device.get("serialNo") or device.get("deviceSerial") or device_serial)
            cameras.append(Camera(str(item.get("id", "")), str(item.get("name", "")), serial))
        return cameras

    async def live_address(self, device_serial: str, camera_id: str, quality: str | None = None) -> LiveAddress:
        """A fresh RTMP URL for the camera's live video (`quality` main or sub, default the
        configured one), valid for the configured time."""
        validity = self.settings.url_validity
        body = {
            "deviceSerial": device_serial,
            "resourceId": camera_id,
            "type": "1",
            "protocol": LIVE_PROTOCOL_RTMP,
            "quality": QUALITY[quality or self.settings.quality],
            "expireTime": validity,
        }
        data = await self._call("live/address/get", LIVE_ADDRESS_PATH, body)
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise HikError("live/address/get", "no url", "the answer carries no stream URL")
        now = time.time()
        told = epoch_seconds(data.get("expireTime"))
        # Trust the platform's expiry only as far as it agrees with what we asked for.
        expires_at = min(told, now + validity) if told is not None and told > now else now + validity
        return LiveAddress(url, expires_at)

    # -- plumbing ----------------------------------------------------------------------

    async def _pages(self, call: str, path: str, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """Every item of a paged list."""
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            data = await self._call(call, path, {"pageIndex": page, "pageSize": PAGE_SIZE, **body})
            got = data.get(key) or []
            if not isinstance(got, list):
                raise HikError(call, "bad answer", f"'{key}' is not a list")
            items += [item for item in got if isinstance(item, dict)]
            try:
                total = int(data.get("totalCount") or 0)
            except (TypeError, ValueError):
                total = 0
            if not got or len(items) >= total:
                break
        return items

    async def _call(self, call: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The data of a successful call, with one new token and retry on a token error."""
        deadline = time.monotonic() + CALL_BUDGET
        token = await self._access_token(deadline)
        try:
            return await self._post(call, self._api_base + path, body, deadline, token)
        except HikError as e:
            if e.code not in TOKEN_ERRORS:
                raise
            log.info("HikCentral Connect %s: %s, fetching a new token", call, e.code)
            if self._token == token:  # not already replaced by a concurrent call
                self._token = None
        token = await self._access_token(deadline)
        return await self._post(call, self._api_base + path, body, deadline, token)

    async def _access_token(self, deadline: float) -> str:
        async with self._token_lock:
            if self._token is not None and time.time() < self._token_renew_at:
                return self._token
            body = {"appKey": self.settings.app_key, "secretKey": self.settings.secret_key}
            data = await self._post("token/get", self.settings.base_url + TOKEN_PATH, body, deadline, None)
            token = data.get("accessToken")
            if not isinstance(token, str) or not token:
                raise HikError("token/get", "no token", "the answer carries no accessToken")
            now = time.time()
            expires = epoch_seconds(data.get("expireTime"))
            life = expires - now if expires is not None and expires > now else TOKEN_FALLBACK_LIFE
            self._token_renew_at = now + max(life - TOKEN_MARGIN, life / 2)
            self._api_base = self._area(data.get("areaDomain"))
            self._token = token
            log.info("HikCentral Connect: new access token, valid %.0f s", life)
            return token

    def _area(self, domain: Any) -> str:
        """Where the calls after token/get go: the areaDomain, if it is a proper URL
        (https, or http only when the configured platform is http, i.e. a local test)."""
        if not isinstance(domain, str) or not domain.strip():
            return self.settings.base_url
        try:
            url = platform_url(domain)
        except ValueError:
            log.warning("HikCentral Connect: ignoring the malformed areaDomain")
            return self.settings.base_url
        if url.startswith("https://") or self.settings.base_url.startswith("http://"):
            return url
        log.warning("HikCentral Connect: ignoring a plain-http areaDomain")
        return self.settings.base_url

    async def _pace(self) -> None:
        """Space requests at least MIN_INTERVAL apart, across all callers."""
        async with self._pace_lock:
            loop = asyncio.get_running_loop()
            wait = self._next_slot - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_slot = loop.time() + MIN_INTERVAL

    async def _post(
        self, call: str, url: str, body: dict[str, Any], deadline: float, token: str | None
    ) -> dict[str, Any]:
        """One call's envelope checked (_request), its failure counted in `errors`."""
        try:
            return await self._request(call, url, body, deadline, token)
        except HikError:
            self.errors[call] = self.errors.get(call, 0) + 1
            raise

    async def _request(
        self, call: str, url: str, body: dict[str, Any], deadline: float, token: str | None
    ) -> dict[str, Any]:
        """One call's envelope checked; 5xx, timeouts and refused connections retried."""
        if self._http is None:
            self._http = aiohttp.ClientSession(headers={"Content-Type": "application/json"})
        headers = {"Token": token} if token is not None else {}
        delay, problem = RETRY_FIRST, ""
        while True:
            left = deadline - time.monotonic()
            if left <= 0.1:
                raise HikUnavailable(call, "unavailable", problem or "no time left")
            await self._pace()
            try:
                timeout = aiohttp.ClientTimeout(total=min(REQUEST_TIMEOUT, left))
                async with self._http.post(url, json=body, headers=headers, timeout=timeout) as response:
                    if response.status < 500:
                        if response.status != 200:
                            raise HikError(call, f"HTTP {response.status}")
                        try:
                            envelope = await response.json(content_type=None)
                        except ValueError:
                            raise HikError(call, "bad answer", "not JSON") from None
                        break
                    problem = f"HTTP {response.status}"
            except TimeoutError:
                problem = "timed out"
            except aiohttp.ClientError as e:
                problem = f"cannot connect ({type(e).__name__})"
            log.info("HikCentral Connect %s: %s; retrying", call, problem)
            if deadline - time.monotonic() <= delay:
                raise HikUnavailable(call, "unavailable", problem)
            await asyncio.sleep(delay)
            delay *= 2
        if not isinstance(envelope, dict):
            raise HikError(call, "bad answer", "not a JSON object")
        code = str(envelope.get("errorCode", ""))
        if code != "0":
            message = envelope.get("message")
            raise HikError(call, code or "no errorCode", message[:200] if isinstance(message, str) else "")
        data = envelope.get("data")
        log.debug("HikCentral Connect %s: ok", call)
        return data if isinstance(data, dict) else {}
