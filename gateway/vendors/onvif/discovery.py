"""WS-Discovery: find ONVIF cameras with one Probe and collect the ProbeMatches.

Written on asyncio's datagram API instead of the `wsdiscovery` package, which runs its
own threads and blocking sockets: a search is one datagram out (sent twice, as UDP
WS-Discovery asks) and a few back, which an asyncio protocol does in a few lines without
tying up a thread per request. The probe goes to the WS-Discovery multicast group by
default; the target is configurable, so tests probe a responder on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MULTICAST_TARGET = ("239.255.255.250", 3702)
REPEAT_AFTER = 0.2  # seconds before the probe is sent a second time
NVT_TYPE = "dn:NetworkVideoTransmitter"
MODEL_SCOPE = "onvif://www.onvif.org/hardware/"
NAME_SCOPE = "onvif://www.onvif.org/name/"

PROBE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    ' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<s:Header>"
    '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
    "<a:MessageID>{message_id}</a:MessageID>"
    "<a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
    '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
    "</s:Header>"
    f"<s:Body><d:Probe><d:Types>{NVT_TYPE}</d:Types></d:Probe></s:Body>"
    "</s:Envelope>"
)


class DiscoveryError(Exception):
    """The probe could not be sent at all (no route to the multicast group, ...)."""


@dataclass(frozen=True)
class FoundDevice:
    ip: str
    port: int
    path: str  # the device service's path, h5stream's strOnvifAddr
    model: str
    name: str


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    """Descendants by local name: cameras use both the 2005/04 and the 1.1 namespaces."""
    return [e for e in element.iter() if e.tag.rsplit("}", 1)[-1] == name]


def _text(element: ET.Element, name: str) -> str:
    found = _children(element, name)
    return (found[0].text or "").strip() if found else ""


def parse_matches(data: bytes, message_id: str) -> list[FoundDevice]:
    """The devices in a ProbeMatches answer to our probe; anything else gives []."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    if _text(root, "RelatesTo") != message_id:
        return []
    found = []
    for match in _children(root, "ProbeMatch"):
        scopes = _text(match, "Scopes").split()
        for xaddr in _text(match, "XAddrs").split():
            parts = urlsplit(xaddr)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                continue
            if parts.scheme in ("http", "https") and parts.hostname:
                found.append(
                    FoundDevice(
                        ip=parts.hostname,
                        port=port,
                        path=parts.path or "/onvif/device_service",
                        model=_scope(scopes, MODEL_SCOPE),
                        name=_scope(scopes, NAME_SCOPE),
                    )
                )
                break  # one address per device; cameras list the same service on each interface
    return found


def _scope(scopes: list[str], prefix: str) -> str:
    return next((unquote(s[len(prefix) :]) for s in scopes if s.startswith(prefix)), "")


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str):
        self.message_id = message_id
        self.devices: dict[tuple[str, int, str], FoundDevice] = {}
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        for device in parse_matches(data, self.message_id):
            self.devices.setdefault((device.ip, device.port, device.path), device)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc


async def search(timeout: float, target: tuple[str, int] = MULTICAST_TARGET) -> list[FoundDevice]:
    """Probe for ONVIF video devices and collect answers for `timeout` seconds."""
    loop = asyncio.get_running_loop()
    message_id = f"urn:uuid:{uuid.uuid4()}"
    probe = PROBE.format(message_id=message_id).encode()
    bind = "127.0.0.1" if ipaddress.ip_address(target[0]).is_loopback else "0.0.0.0"
    try:
        transport, collector = await loop.create_datagram_endpoint(lambda: _Collector(message_id), local_addr=(bind, 0))
    except OSError as e:
        raise DiscoveryError(f"cannot open a UDP socket on {bind}: {e.strerror or e}") from None
    repeat = min(REPEAT_AFTER, timeout / 2)
    try:
        transport.sendto(probe, target)
        await asyncio.sleep(repeat)
        transport.sendto(probe, target)
        await asyncio.sleep(timeout - repeat)
    finally:
        transport.close()
    if collector.error is not None and not collector.devices:
        raise DiscoveryError(f"cannot probe {target[0]}:{target[1]}: {collector.error.strerror or collector.error}")
    return sorted(collector.devices.values(), key=lambda d: (d.ip, d.port))
