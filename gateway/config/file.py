"""Load, validate and save conf/h5ss.conf (h5stream's JSON keys).

The file is the one source of truth. We keep the parsed JSON as it was read (so the
`*Comment` siblings and keys we do not use survive a save) and expose typed views of the
parts the gateway uses. Every problem is reported as one ConfigError naming the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gateway.config.settings import Settings
from gateway.vendors.hikvision.client import platform_url

SOURCE_TYPES = ("H5_FILE", "H5_STREAM", "H5_ONVIF", "H5_HIKVISION", "H5_PUSH")
PUSH_TYPE = "H5_PUSH"  # h5ss: a stream published into the gateway (RTSP RECORD, RTMP publish)
CONNECT_TYPES = ("H5_ONDEMAND", "H5_ALWAYS", "H5_AUTO")
RTSP_TYPES = ("H5_RTSP_TCP", "H5_RTSP_UDP", "H5_RTSP_HTTP", "H5_RTSP_HTTPS", "H5_RTSP_AUTO")
HLS_TYPES = ("H5_HLS_NONE", "H5_HLS_V1", "H5_HLS_V2")
USER_TYPES = ("Administrator", "Operator", "Viewer")
RENDITION_MODES = ("auto", "off")
RENDITION_MAX_KBPS = 100000
RENDITION_HEIGHTS = (90, 4320)  # nH264RenditionHeight's range besides 0

# (section, key, type, default). Types: int, bool, str, or a tuple of allowed strings.
SETTINGS: tuple[tuple[str, str, Any, Any], ...] = (
    ("http", "nHTTPPort", int, 8080),
    ("http", "nHTTPSPort", int, 8443),
    ("http", "strBindAddress", str, "0.0.0.0"),
    ("http", "bAuth", bool, True),
    ("http", "strMetricsToken", str, ""),
    ("rtsp", "bRTSPSink", bool, False),
    ("rtsp", "nRTSPPort", int, 8554),
    ("rtsp", "nSSLPort", int, 8555),
    ("rtmp", "nRTMPPort", int, 8935),
    ("rtmp", "nSSLPort", int, 8936),
    ("flv", "nFLVPort", int, 8090),
    ("hls", "nHLSSinkType", HLS_TYPES, "H5_HLS_NONE"),
    ("hls", "nHLSSegmentNum", int, 4),
    ("hls", "nHLSDuration", int, 2),
    ("webrtc", "bWebRTCSink", bool, True),
    ("webrtc", "nWebRTCPort", int, 0),
    ("system", "strLogLevel", ("debug", "info", "warning", "error"), "info"),
    ("system", "strMediaDir", str, "media"),
    ("system", "strMediaStoreDir", str, "mediastore"),
    ("system", "nRecordInDay", int, 7),
    ("system", "nSnapshotInDay", int, 7),
    ("system", "nRecordSegmentSec", int, 600),
    ("system", "nDiskFullPercent", int, 90),
    ("system", "nDownloadMax", int, 4),
    ("system", "nDownloadMaxPerUser", int, 2),
    ("system", "nDownloadWriteTimeoutSec", int, 30),
    ("system", "nSessionTimeout", int, 600),
    ("system", "nLoginFailLimit", int, 5),
    ("system", "nLoginLockSec", int, 300),
    ("source", "nOnDemandLingerSec", int, 10),
    ("onvif", "strDiscoveryTarget", str, "239.255.255.250:3702"),
    ("hikvision", "strHost", str, ""),
    ("hikvision", "strAppKey", str, ""),
    ("hikvision", "strSecretKey", str, ""),
    ("hikvision", "nUrlValiditySec", int, 120),
    ("hikvision", "strQuality", ("main", "sub"), "main"),
    ("cloud", "strServerName", str, ""),
    ("cloud", "strServerToken", str, ""),
    ("cloud", "bEnable", bool, False),
    ("cloud", "strCloudIp", str, ""),
    ("cloud", "strCloudPort", str, ""),  # h5stream writes it as a string; a number is taken too
    ("cloud", "bSSL", bool, False),
    ("cloud", "bSSLVerify", bool, True),
    ("cloud", "strUser", str, ""),
    ("cloud", "strPasswd", str, ""),
)
HIK_MIN_VALIDITY = 10
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")

PORT_KEYS = (
    ("http", "nHTTPPort"),
    ("http", "nHTTPSPort"),
    ("rtsp", "nRTSPPort"),
    ("rtsp", "nSSLPort"),
    ("rtmp", "nRTMPPort"),
    ("rtmp", "nSSLPort"),
    ("flv", "nFLVPort"),
    ("webrtc", "nWebRTCPort"),
)


class ConfigError(Exception):
    """A config problem, with the dotted key it concerns in the message."""


def _check(key: str, value: Any, kind: Any) -> Any:
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(kind)}")
        return value
    # bool is an int in Python: keep the two apart.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


@dataclass
class SourceConf:
    """One entry of source.src, in h5stream's field names."""

    raw: dict[str, Any]

    FIELDS: ClassVar[dict[str, tuple[Any, Any]]] = {
        "strName": (str, ""),
        "strToken": (str, ""),
        "nType": (SOURCE_TYPES, "H5_STREAM"),
        "strUrl": (str, ""),
        "strUser": (str, ""),
        "strPasswd": (str, ""),
        "bPasswdEncrypt": (bool, False),
        "bEnableAudio": (bool, True),
        "nConnectType": (CONNECT_TYPES, "H5_ONDEMAND"),
        "nRTSPType": (RTSP_TYPES, "H5_RTSP_TCP"),
        "strSrcIpAddress": (str, ""),
        "strSrcPort": (str, ""),
        "nChannelNumber": (int, 1),
        "bOnvifProfileAuto": (bool, True),
        "strOnvifAddr": (str, "/onvif/device_service"),
        "strOnvifProfileMain": (str, ""),
        "strOnvifProfileSub": (str, ""),
        "bRec": (bool, False),
        # h5ss: the H.264 rendition of an H.265 stream (hub/rendition_input.py)
        "strH264Rendition": (RENDITION_MODES, "auto"),
        "nH264RenditionKbps": (int, 0),
        "nH264RenditionHeight": (int, 0),
    }
    # h5ss's own fields, present only on sources of their type.
    TYPE_FIELDS: ClassVar[dict[str, dict[str, tuple[Any, Any]]]] = {
        "H5_STREAM": {"strUrlSub": (str, "")},  # the sub stream's URL (empty: none)
        "H5_HIKVISION": {"strHikDeviceSerial": (str, ""), "strHikCameraId": (str, "")},
    }

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> SourceConf:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected an object")
        for name, (kind, default) in cls.FIELDS.items():
            raw.setdefault(name, default)
            # h5stream writes ports as strings; accept numbers too.
            if name == "strSrcPort" and isinstance(raw[name], int) and not isinstance(raw[name], bool):
                raw[name] = str(raw[name])
            _check(f"{where}.{name}", raw[name], kind)
        for name, (kind, default) in cls.TYPE_FIELDS.get(raw["nType"], {}).items():
            raw.setdefault(name, default)
            _check(f"{where}.{name}", raw[name], kind)
        kbps, height = raw["nH264RenditionKbps"], raw["nH264RenditionHeight"]
        if not 0 <= kbps <= RENDITION_MAX_KBPS:
            raise ConfigError(f"{where}.nH264RenditionKbps: {kbps} is not 0 (from the size) to {RENDITION_MAX_KBPS}")
        low, high = RENDITION_HEIGHTS
        if height and not low <= height <= high:
            raise ConfigError(f"{where}.nH264RenditionHeight: {height} is not 0 (the source's) or {low}-{high}")
        token = raw["strToken"]
        if not valid_token(token):
            raise ConfigError(f"{where}.strToken: {token!r} must be 1-64 letters, digits, '-', '_' or '.'")
        return cls(raw)

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]

    @property
    def token(self) -> str:
        return self.raw["strToken"]

    @property
    def name(self) -> str:
        return self.raw["strName"]

    @property
    def type(self) -> str:
        return self.raw["nType"]

    @property
    def url(self) -> str:
        return self.raw["strUrl"]

    @property
    def url_sub(self) -> str:
        """An H5_STREAM source's sub stream URL (strUrlSub), empty when it has none."""
        return self.raw.get("strUrlSub", "")

    @property
    def user(self) -> str:
        return self.raw["strUser"]

    @property
    def password(self) -> str:
        return self.raw["strPasswd"]

    @property
    def rtsp_type(self) -> str:
        return self.raw["nRTSPType"]

    @property
    def enable_audio(self) -> bool:
        return self.raw["bEnableAudio"]

    @property
    def always_on(self) -> bool:
        """nConnectType H5_ALWAYS: connected from start-up (H5_AUTO behaves as on demand).
        A pushed source (H5_PUSH) always is: its stream waits for a publisher from start-up
        and keeps every packet of one, whether or not anyone watches yet."""
        return self.raw["nConnectType"] == "H5_ALWAYS" or self.type == PUSH_TYPE

    @property
    def h264_rendition(self) -> bool:
        """strH264Rendition auto: an H.265 stream gets an H.264 rendition while a client needs it."""
        return self.raw["strH264Rendition"] == "auto"

    @property
    def rendition_kbps(self) -> int:
        """nH264RenditionKbps: the rendition's bitrate, 0 from its size."""
        return self.raw["nH264RenditionKbps"]

    @property
    def rendition_height(self) -> int:
        """nH264RenditionHeight: the rendition's height, 0 the source's (never scaled up)."""
        return self.raw["nH264RenditionHeight"]

    @property
    def record(self) -> bool:
        """bRec: recorded continuously (h5ss)."""
        return self.raw["bRec"]


def valid_token(token: Any) -> bool:
    return (
        isinstance(token, str)
        and 0 < len(token) <= 64
        and token not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in token)
    )


def valid_server_token(token: str) -> bool:
    """A cloud server token: 1-32 of [A-Za-z0-9-]. No '_', so that a remote source's token
    on the cloud, `{serverToken}_{token}`, splits at its first '_'."""
    return 0 < len(token) <= 32 and all(c.isascii() and (c.isalnum() or c == "-") for c in token)


def check_cloud(cloud: dict[str, Any]) -> None:
    """The `cloud` section (h5stream's cloud push mode): checked in full when bEnable is on."""
    token = cloud["strServerToken"]
    if token and not valid_server_token(token):
        raise ConfigError(f"cloud.strServerToken: {token!r} must be 1-32 letters, digits or '-' (no '_')")
    if not cloud["bEnable"]:
        return
    if not token:
        raise ConfigError("cloud.strServerToken: must be set when cloud.bEnable is true")
    if not cloud["strCloudIp"]:
        raise ConfigError("cloud.strCloudIp: must be set when cloud.bEnable is true")
    port = whole_number(cloud["strCloudPort"], 5)
    if port is None or not 0 < port < 65536:
        raise ConfigError(f"cloud.strCloudPort: {cloud['strCloudPort']!r} is not a port number (1-65535)")
    if not cloud["strUser"]:
        raise ConfigError("cloud.strUser: must be set when cloud.bEnable is true")
    if not _MD5_HEX.fullmatch(cloud["strPasswd"]):
        raise ConfigError("cloud.strPasswd: must be the MD5 hex (32 hex digits) of the cloud user's password")


def whole_number(text: str, max_digits: int = 12) -> int | None:
    """`text` as an int when it is 1 to `max_digits` ASCII digits, else None: str.isdigit
    also takes '²' (which int() refuses) and '١٢' (which it reads), and int() has a digit limit."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


@dataclass
class Config:
    """The file as read (`raw`, written back by save()), its sources, and its typed settings."""

    path: Path
    raw: dict[str, Any]
    settings: Settings
    sources: dict[str, SourceConf] = field(default_factory=dict)

    @property
    def users(self) -> list[dict[str, Any]]:
        return self.raw["user"]["users"]

    def add_source(self, source: SourceConf) -> None:
        self.sources[source.token] = source

    def remove_source(self, token: str) -> SourceConf:
        return self.sources.pop(token)

    def save(self) -> None:
        """Write the config back atomically: temp file, fsync, rename."""
        self.raw["source"]["src"] = [s.raw for s in self.sources.values()]
        text = json.dumps(self.raw, indent=4, ensure_ascii=False) + "\n"
        directory = self.path.resolve().parent
        fd, tmp = tempfile.mkstemp(prefix=".h5ss.conf.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def gateway_root(path: Path) -> Path:
    """The gateway root: the directory above conf/, else the config's own directory."""
    parent = path.resolve().parent
    return parent.parent if parent.name == "conf" else parent


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be an object")

    for section, key, kind, default in SETTINGS:
        sect = raw.setdefault(section, {})
        if not isinstance(sect, dict):
            raise ConfigError(f"{section}: expected an object")
        sect.setdefault(key, default)
        port = sect[key]
        if (section, key) == ("cloud", "strCloudPort") and isinstance(port, int) and not isinstance(port, bool):
            sect[key] = str(port)
        _check(f"{section}.{key}", sect[key], kind)

    seen_ports: dict[int, str] = {}
    for section, key in PORT_KEYS:
        port = raw[section][key]
        if not 0 <= port <= 65535:
            raise ConfigError(f"{section}.{key}: {port} is not a port number (0-65535, 0 disables)")
        if port and port in seen_ports:
            raise ConfigError(f"{section}.{key}: port {port} is already used by {seen_ports[port]}")
        if port:
            seen_ports[port] = f"{section}.{key}"

    host, _, port = raw["onvif"]["strDiscoveryTarget"].rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        if not 0 < int(port) < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError("onvif.strDiscoveryTarget: expected IPv4:PORT, e.g. 239.255.255.250:3702") from None

    if not 1 <= raw["system"]["nDiskFullPercent"] <= 100:
        raise ConfigError("system.nDiskFullPercent: must be 1-100")
    hik = raw["hikvision"]
    if hik["strHost"]:
        try:
            platform_url(hik["strHost"])
        except ValueError as e:
            raise ConfigError(f"hikvision.strHost: {e}") from None
    if hik["nUrlValiditySec"] < HIK_MIN_VALIDITY:
        raise ConfigError(f"hikvision.nUrlValiditySec: must be at least {HIK_MIN_VALIDITY} seconds")

    check_cloud(raw["cloud"])

    for section, key in (
        ("system", "nRecordSegmentSec"),
        ("system", "nSessionTimeout"),
        ("system", "nLoginFailLimit"),
        ("system", "nDownloadMax"),
        ("system", "nDownloadMaxPerUser"),
        ("system", "nDownloadWriteTimeoutSec"),
        ("hls", "nHLSSegmentNum"),
        ("hls", "nHLSDuration"),
    ):
        if raw[section][key] <= 0:
            raise ConfigError(f"{section}.{key}: must be greater than 0")

    users = raw.setdefault("user", {}).setdefault("users", [])
    if not isinstance(users, list):
        raise ConfigError("user.users: expected a list")
    names: set[str] = set()
    for i, user in enumerate(users):
        where = f"user.users[{i}]"
        if not isinstance(user, dict):
            raise ConfigError(f"{where}: expected an object")
        for key in ("strUser", "strPasswd"):
            _check(f"{where}.{key}", user.get(key), str)
        user.setdefault("strUserType", "Viewer")
        _check(f"{where}.strUserType", user["strUserType"], USER_TYPES)
        if user["strUser"] in names:
            raise ConfigError(f"{where}.strUser: duplicate user {user['strUser']!r}")
        names.add(user["strUser"])

    src_list = raw["source"].setdefault("src", [])
    if not isinstance(src_list, list):
        raise ConfigError("source.src: expected a list")
    config = Config(path=path, raw=raw, settings=Settings.from_raw(raw, gateway_root(path)))
    for i, entry in enumerate(src_list):
        source = SourceConf.from_json(entry, f"source.src[{i}]")
        if source.token in config.sources:
            raise ConfigError(f"source.src[{i}].strToken: duplicate token {source.token!r}")
        config.add_source(source)
    return config
