"""ONVIF client: onvif-zeep-async behind one deadline, readable errors and our data shapes.

Authentication is WS-Security UsernameToken with PasswordDigest (the ONVIF standard), done
by the library. The library is imported on first use, off the event loop: it costs most
of a second, and its import calls logging.basicConfig, which must not pre-empt the
gateway's own logging set-up. Its SOAP logs would carry the WS-Security header, so they
are kept at WARNING.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

DEFAULT_PATH = "/onvif/device_service"
DEFAULT_TIMEOUT = 5.0
STREAM_SETUP = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})")

for _name in ("onvif", "zeep"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T")


class OnvifError(Exception):
    """A camera that cannot be reached or refused a call; the message is safe to show."""


class OnvifAuthError(OnvifError):
    """The camera refused our user or password."""


@dataclass(frozen=True)
class Endpoint:
    """Where a camera's device service is and who we are to it."""

    host: str
    port: int = 80
    user: str = ""
    password: str = field(default="", repr=False)
    path: str = DEFAULT_PATH

    def __post_init__(self) -> None:
        if not HOST_RE.fullmatch(self.host):
            raise ValueError(f"ONVIF address {self.host!r} is not a host name or IP address")
        if not 0 < self.port < 65536:
            raise ValueError(f"ONVIF port {self.port} is not 1-65535")
        if not self.path.startswith("/") or len(self.path) > 256 or any(c.isspace() or ord(c) < 32 for c in self.path):
            raise ValueError(f"ONVIF service path {self.path!r} must be a URL path starting with '/'")

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def device_xaddr(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass
class Profile:
    """A media profile, as much of it as a client needs to pick one."""

    token: str
    name: str
    codec: str
    width: int
    height: int
    fps: int
    bitrate: int  # kbit/s, as the camera limits it
    ptz: bool


@dataclass
class Preset:
    token: str
    name: str


@functools.cache
def _camera_class() -> type:
    from onvif import ONVIFCamera

    class Camera(ONVIFCamera):
        """ONVIFCamera whose device service may live at any path (h5stream's strOnvifAddr);
        the library fixes it at /onvif/device_service."""

        def __init__(self, endpoint: Endpoint):
            super().__init__(endpoint.host, endpoint.port, endpoint.user, endpoint.password, no_cache=True)
            self.device_xaddr = endpoint.device_xaddr

        def get_definition(self, name: str, port_type: str | None = None) -> tuple[str, str, str]:
            xaddr, wsdl, binding = super().get_definition(name, port_type)
            return (self.device_xaddr if name == "devicemgmt" else xaddr), wsdl, binding

    return Camera


def _explain(error: BaseException, endpoint: Endpoint, what: str, timeout: float) -> OnvifError:
    """Turn whatever the library or the network raised into one readable OnvifError."""
    from zeep.exceptions import Fault, TransportError

    where = f"ONVIF device {endpoint.label}"
    if isinstance(error, TimeoutError):
        return OnvifError(f"{where} did not answer within {timeout:g} s ({what})")
    if isinstance(error, Fault):
        subcodes = [getattr(code, "localname", str(code)) for code in error.subcodes or []]
        text = error.message or ", ".join(subcodes) or "fault"
        if "NotAuthorized" in subcodes or re.search(r"authori|password|credential", text, re.I):
            return OnvifAuthError(f"unauthorized: {where} refused user {endpoint.user!r} (wrong user or password)")
        return OnvifError(f"{where} refused {what}: {text}")
    if isinstance(error, TransportError):
        if error.status_code == 401:
            return OnvifAuthError(f"unauthorized: {where} refused user {endpoint.user!r} (wrong user or password)")
        return OnvifError(f"{where} answered HTTP {error.status_code} ({what}); is this an ONVIF device service?")
    if isinstance(error, aiohttp.ClientConnectorError):
        errno = error.os_error.errno
        return OnvifError(f"cannot reach {where}: {os.strerror(errno) if errno else error.os_error}")
    if isinstance(error, (aiohttp.ClientError, OSError)):
        return OnvifError(f"cannot talk to {where}: {type(error).__name__}")
    if error.__cause__ is not None:  # the library wraps errors in ONVIFError
        return _explain(error.__cause__, endpoint, what, timeout)
    if "support service" in str(error):
        return OnvifError(f"{where} does not offer the {what}")
    return OnvifError(f"{where} gave an answer that is not ONVIF ({what}: {type(error).__name__})")


class OnvifDevice:
    """One connection to a camera: `async with OnvifDevice(endpoint) as device: ...`.

    Everything done through it shares one deadline, so a slow or silent camera cannot
    hold an API call or a reconnect longer than `timeout` seconds.
    """

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.timeout = timeout
        self._camera: Any = None
        self._deadline = 0.0

    async def __aenter__(self) -> OnvifDevice:
        self._deadline = asyncio.get_running_loop().time() + self.timeout
        camera_class = await self._call("loading the ONVIF library", asyncio.to_thread(_camera_class))
        self._camera = camera_class(self.endpoint)
        try:
            await self._call("GetServices", self._camera.update_xaddrs())
        except BaseException:
            await self._camera.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        # Shielded: a cancel (gateway shutdown) landing here must not cut the close short
        # and leave the library's HTTP sessions open.
        await asyncio.shield(self._camera.close())

    async def _call(self, what: str, step: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout_at(self._deadline):
                return await step
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise _explain(e, self.endpoint, what, self.timeout) from None

    async def _service(self, name: str) -> Any:
        return await self._call(f"{name} service", getattr(self._camera, f"create_{name}_service")())

    # -- media ------------------------------------------------------------------------

    async def profiles(self) -> list[Profile]:
        media = await self._service("media")
        return [_profile(p) for p in await self._call("GetProfiles", media.GetProfiles()) or []]

    async def stream_uri(self, profile: str) -> str:
        media = await self._service("media")
        answer = await self._call(
            "GetStreamUri", media.GetStreamUri({"StreamSetup": STREAM_SETUP, "ProfileToken": profile})
        )
        uri = getattr(answer, "Uri", None)
        if not uri:
            raise OnvifError(f"ONVIF device {self.endpoint.label} gave no stream URI for profile {profile!r}")
        return str(uri)

    # -- PTZ --------------------------------------------------------------------------

    async def move(self, profile: str, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0) -> None:
        """ContinuousMove at these velocities (-1..1); only the axes asked for are sent."""
        velocity: dict[str, Any] = {}
        if pan or tilt:
            velocity["PanTilt"] = {"x": pan, "y": tilt}
        if zoom:
            velocity["Zoom"] = {"x": zoom}
        ptz = await self._service("ptz")
        await self._call("ContinuousMove", ptz.ContinuousMove({"ProfileToken": profile, "Velocity": velocity}))

    async def stop(self, profile: str) -> None:
        ptz = await self._service("ptz")
        await self._call("Stop", ptz.Stop({"ProfileToken": profile, "PanTilt": True, "Zoom": True}))

    async def presets(self, profile: str) -> list[Preset]:
        ptz = await self._service("ptz")
        found = await self._call("GetPresets", ptz.GetPresets({"ProfileToken": profile})) or []
        return [Preset(str(p.token), str(p.Name or "")) for p in found]

    async def goto_preset(self, profile: str, preset: str) -> None:
        ptz = await self._service("ptz")
        await self._call("GotoPreset", ptz.GotoPreset({"ProfileToken": profile, "PresetToken": preset}))

    async def set_preset(self, profile: str, name: str, preset: str = "") -> str:
        """Save the current position as a preset (a new one, or `preset` overwritten); its token."""
        request = {"ProfileToken": profile, "PresetName": name}
        if preset:
            request["PresetToken"] = preset
        ptz = await self._service("ptz")
        return str(await self._call("SetPreset", ptz.SetPreset(request)))

    async def remove_preset(self, profile: str, preset: str) -> None:
        ptz = await self._service("ptz")
        await self._call("RemovePreset", ptz.RemovePreset({"ProfileToken": profile, "PresetToken": preset}))


def _profile(p: Any) -> Profile:
    encoder = getattr(p, "VideoEncoderConfiguration", None)
    resolution = getattr(encoder, "Resolution", None)
    rate = getattr(encoder, "RateControl", None)
    return Profile(
        token=str(p.token),
        name=str(getattr(p, "Name", "") or ""),
        codec=str(getattr(encoder, "Encoding", "") or ""),
        width=int(getattr(resolution, "Width", 0) or 0),
        height=int(getattr(resolution, "Height", 0) or 0),
        fps=int(getattr(rate, "FrameRateLimit", 0) or 0),
        bitrate=int(getattr(rate, "BitrateLimit", 0) or 0),
        ptz=getattr(p, "PTZConfiguration", None) is not None,
    )
