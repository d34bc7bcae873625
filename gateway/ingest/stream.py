"""H5_STREAM: an RTSP, RTMP or HTTP camera URL.

Only network schemes are accepted and FFmpeg is told to use only the protocols that
scheme needs, so a URL can never make FFmpeg read local files (`file:`, `concat:`,
`subfile:` and friends).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.ingest.base import InputSpec, SourceError
from gateway.redact import redact

# FFmpeg protocols each scheme may pull in underneath (RTSP over UDP opens rtp/udp).
PROTOCOLS = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp,http,httpproxy",
    "rtsps": "rtsps,rtsp,rtp,srtp,udp,tcp,tls,http,https,httpproxy",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
    "http": "http,tcp,httpproxy",
    "https": "https,http,tcp,tls,httpproxy",
}
RTSP_TRANSPORT = {"H5_RTSP_TCP": "tcp", "H5_RTSP_UDP": "udp", "H5_RTSP_HTTP": "http", "H5_RTSP_HTTPS": "https"}


def check_url(url: str) -> str:
    """The URL, or a SourceError saying what is wrong with it."""
    if not url or any(c in url for c in "\x00\r\n\t "):
        raise SourceError("url is empty or contains spaces/control characters")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise SourceError(f"malformed url: {e}") from None
    try:
        port = parts.port
    except ValueError:
        raise SourceError("url port must be a number from 1 to 65535") from None
    if parts.scheme.lower() not in PROTOCOLS:
        raise SourceError(
            f"url scheme {parts.scheme + ':' if parts.scheme else '(none)'} is not allowed; use {', '.join(PROTOCOLS)}"
        )
    if not parts.hostname:
        raise SourceError("url has no host")
    if port == 0:
        raise SourceError("url port must be 1-65535")
    return url


def with_credentials(url: str, user: str, password: str) -> str:
    """Put user/password into the URL's authority, percent-encoded."""
    if not user:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def input_options(url: str, rtsp_type: str = "H5_RTSP_TCP") -> dict[str, str]:
    scheme = urlsplit(url).scheme.lower()
    options = {"protocol_whitelist": PROTOCOLS[scheme], "fflags": "nobuffer"}
    if scheme.startswith("rtsp"):
        # The SDP already names every stream and carries the parameter sets, so skip
        # FFmpeg's probing (about 1 s): the first keyframe is the first thing we need.
        options.update(probesize="32", analyzeduration="0")
        if rtsp_type in RTSP_TRANSPORT:
            options["rtsp_transport"] = RTSP_TRANSPORT[rtsp_type]
    else:
        # FLV/HTTP announce streams as they come: probe briefly so audio is not missed.
        options.update(analyzeduration="500000")
    return options


class StreamSource:
    def __init__(self, url: str, user: str = "", password: str = "", rtsp_type: str = "H5_RTSP_TCP"):
        self.url = check_url(url)
        self.user = user
        self.password = password
        self.rtsp_type = rtsp_type

    async def resolve(self) -> InputSpec:
        full = with_credentials(self.url, self.user, self.password)
        return InputSpec(full, input_options(self.url, self.rtsp_type), label=redact(self.url))

    def describe(self) -> dict[str, Any]:
        return {}
