"""The Transport header of a SETUP (RFC 2326 §12.39): which of our two ways the client asks for,
to play or to record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TransportRequest:
    tcp: bool
    ports: tuple[int, int] | None  # TCP: the interleaved channels; UDP: the client's RTP/RTCP ports
    record: bool = False  # mode=record: the client sends (a publisher), not receives


def pair(value: str, limit: int) -> tuple[int, int] | None:
    first, _, second = value.partition("-")
    if not first.isdigit() or not (second.isdigit() if second else True):
        return None
    a = int(first)
    b = int(second) if second else a + 1
    return (a, b) if 0 <= a < limit and 0 <= b < limit else None


def parse_transport(header: str) -> TransportRequest | None:
    """The first of the client's choices we serve: TCP interleaved or UDP unicast; None if none is."""
    for choice in header.split(","):
        fields = [f.strip() for f in choice.split(";")]
        spec, params = fields[0].upper(), {}
        for field in fields[1:]:
            name, _, value = field.partition("=")
            params[name.lower()] = value
        mode = params.get("mode", "play").strip('"').lower()
        if "multicast" in params or mode not in ("play", "", "record"):
            continue
        record = mode == "record"
        if spec == "RTP/AVP/TCP":
            channels = pair(params["interleaved"], 256) if "interleaved" in params else None
            if "interleaved" in params and channels is None:
                continue
            return TransportRequest(True, channels, record)
        if spec in ("RTP/AVP", "RTP/AVP/UDP"):
            ports = pair(params.get("client_port", ""), 65536)
            if ports is not None and ports[0] > 0:
                return TransportRequest(False, ports, record)
    return None
