"""Typed settings: the validated sections of h5ss.conf, built once after loading.

The hub, the outputs and the servers take these at construction and never look into the
JSON at run time. Sources, users and a source's `bRec` change through the API and stay
in `Config` (config/file.py), which writes them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class HttpSettings:
    port: int  # http.nHTTPPort, 0: off
    https_port: int  # http.nHTTPSPort, 0: off
    bind: str  # http.strBindAddress
    auth: bool  # http.bAuth: sessions required (off: everyone is an Administrator)
    metrics_token: str = ""  # http.strMetricsToken: a scraper's bearer token for /metrics, empty: none


@dataclass(frozen=True, slots=True)
class SystemSettings:
    log_level: str
    media_dir: Path  # H5_FILE sources read only here
    mediastore_dir: Path  # recordings, snapshots and their index
    record_days: int  # 0: kept for ever
    snapshot_days: int
    record_segment_seconds: int
    disk_full_percent: int
    session_timeout: int
    login_fail_limit: int
    login_lock_seconds: int


@dataclass(frozen=True, slots=True)
class SourceSettings:
    linger: float  # source.nOnDemandLingerSec: an on-demand source stays up this long after its last viewer


@dataclass(frozen=True, slots=True)
class HlsSettings:
    segment_count: int  # hls.nHLSSegmentNum: segments in a playlist
    target_duration: int  # hls.nHLSDuration: seconds


@dataclass(frozen=True, slots=True)
class RtspSettings:
    port: int  # rtsp.nRTSPPort, 0: off
    tls_port: int  # rtsp.nSSLPort: RTSPS with the HTTPS certificate, 0: off


@dataclass(frozen=True, slots=True)
class RtmpSettings:
    port: int  # rtmp.nRTMPPort, 0: off
    tls_port: int  # rtmp.nSSLPort: RTMPS with the HTTPS certificate, 0: off


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: str | tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @property
    def url_list(self) -> list[str]:
        return [self.urls] if isinstance(self.urls, str) else list(self.urls)

    @property
    def first_url(self) -> str:
        return self.url_list[0]

    def as_json(self) -> dict[str, Any]:
        """As the h5s signalling's `iceserver` message and WHEP's Link header carry it."""
        server: dict[str, Any] = {"urls": self.urls if isinstance(self.urls, str) else list(self.urls)}
        if self.username is not None:
            server["username"] = self.username
        if self.credential is not None:
            server["credential"] = self.credential
        return server


@dataclass(frozen=True, slots=True)
class WebRtcSettings:
    enabled: bool  # webrtc.bWebRTCSink
    port: int  # webrtc.nWebRTCPort: MediaMTX-style URLs on an extra port, 0: off
    ice_servers: tuple[IceServer, ...]  # webrtc.iceServers
    bind: str  # the address ICE gathers host candidates on (http.strBindAddress)


@dataclass(frozen=True, slots=True)
class FlvSettings:
    port: int  # flv.nFLVPort: HTTP-FLV/WS-FLV on an extra port, 0: off (the HTTP ports serve it too)


@dataclass(frozen=True, slots=True)
class DownloadSettings:
    at_most: int  # system.nDownloadMax: DownloadRecord answers at once, gateway-wide
    at_most_per_user: int  # system.nDownloadMaxPerUser
    write_timeout: float  # system.nDownloadWriteTimeoutSec: a client reading nothing this long is dropped


@dataclass(frozen=True, slots=True)
class OnvifSettings:
    discovery_target: tuple[str, int]  # onvif.strDiscoveryTarget


@dataclass(frozen=True, slots=True)
class HikvisionSettings:
    host: str  # empty: no HikCentral Connect
    app_key: str
    secret_key: str
    url_validity_seconds: int
    quality: str  # main or sub


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """h5stream's `cloud` section: this gateway as an edge of a cloud gateway (issue 20)."""

    enable: bool  # bEnable: dial out to the cloud
    server_name: str  # strServerName: what the cloud's GetServerList shows
    server_token: str  # strServerToken: this edge's name on the cloud, 1-32 of [A-Za-z0-9-]
    cloud_ip: str  # strCloudIp
    cloud_port: int  # strCloudPort: the cloud's HTTP(S) port, 0 when not set
    ssl: bool  # bSSL: wss://
    ssl_verify: bool  # bSSLVerify (h5ss): check the cloud's certificate
    user: str  # strUser: a cloud Administrator
    password_md5: str  # strPasswd: the MD5 hex of that user's password

    @property
    def address(self) -> str:
        """host:port, for logs."""
        return f"{self.cloud_ip}:{self.cloud_port}"

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        host = f"[{self.cloud_ip}]" if ":" in self.cloud_ip else self.cloud_ip
        return f"{scheme}://{host}:{self.cloud_port}/api/v1/h5scloudlink"


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path  # the gateway root: conf/, media/, certs/, www/ are below it
    http: HttpSettings
    system: SystemSettings
    source: SourceSettings
    hls: HlsSettings
    webrtc: WebRtcSettings
    onvif: OnvifSettings
    hikvision: HikvisionSettings
    download: DownloadSettings
    rtsp: RtspSettings
    rtmp: RtmpSettings
    flv: FlvSettings
    cloud: CloudSettings

    @classmethod
    def from_raw(cls, raw: dict[str, Any], root: Path) -> Settings:
        """From the JSON as load_config has validated it (every key present, typed)."""
        http, system, hik, cloud = raw["http"], raw["system"], raw["hikvision"], raw["cloud"]
        host, _, port = raw["onvif"]["strDiscoveryTarget"].rpartition(":")
        return cls(
            root=root,
            http=HttpSettings(
                http["nHTTPPort"], http["nHTTPSPort"], http["strBindAddress"], http["bAuth"], http["strMetricsToken"]
            ),
            system=SystemSettings(
                log_level=system["strLogLevel"],
                media_dir=(root / system["strMediaDir"]).resolve(),
                mediastore_dir=(root / system["strMediaStoreDir"]).resolve(),
                record_days=system["nRecordInDay"],
                snapshot_days=system["nSnapshotInDay"],
                record_segment_seconds=system["nRecordSegmentSec"],
                disk_full_percent=system["nDiskFullPercent"],
                session_timeout=system["nSessionTimeout"],
                login_fail_limit=system["nLoginFailLimit"],
                login_lock_seconds=system["nLoginLockSec"],
            ),
            download=DownloadSettings(
                system["nDownloadMax"], system["nDownloadMaxPerUser"], float(system["nDownloadWriteTimeoutSec"])
            ),
            source=SourceSettings(float(raw["source"]["nOnDemandLingerSec"])),
            hls=HlsSettings(raw["hls"]["nHLSSegmentNum"], raw["hls"]["nHLSDuration"]),
            webrtc=WebRtcSettings(
                raw["webrtc"]["bWebRTCSink"],
                raw["webrtc"]["nWebRTCPort"],
                ice_servers(raw["webrtc"].get("iceServers", [])),
                http["strBindAddress"],
            ),
            rtsp=RtspSettings(raw["rtsp"]["nRTSPPort"], raw["rtsp"]["nSSLPort"]),
            rtmp=RtmpSettings(raw["rtmp"]["nRTMPPort"], raw["rtmp"]["nSSLPort"]),
            flv=FlvSettings(raw["flv"]["nFLVPort"]),
            onvif=OnvifSettings((host, int(port))),
            hikvision=HikvisionSettings(
                hik["strHost"], hik["strAppKey"], hik["strSecretKey"], hik["nUrlValiditySec"], hik["strQuality"]
            ),
            cloud=CloudSettings(
                enable=cloud["bEnable"],
                server_name=cloud["strServerName"],
                server_token=cloud["strServerToken"],
                cloud_ip=cloud["strCloudIp"],
                cloud_port=port_number(cloud["strCloudPort"]),
                ssl=cloud["bSSL"],
                ssl_verify=cloud["bSSLVerify"],
                user=cloud["strUser"],
                password_md5=cloud["strPasswd"].lower(),
            ),
        )


def port_number(text: str) -> int:
    """A port written as a string (h5stream's strCloudPort), 0 when it is not one."""
    if 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) < 65536:
        return int(text)
    return 0


def ice_servers(entries: Any) -> tuple[IceServer, ...]:
    """webrtc.iceServers as the browser's RTCIceServer list has them; entries without
    `urls` are left out, as before."""
    servers = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("urls"):
            continue
        urls = entry["urls"]
        servers.append(
            IceServer(
                urls if isinstance(urls, str) else tuple(str(u) for u in urls),
                entry.get("username"),
                entry.get("credential"),
            )
        )
    return tuple(servers)
