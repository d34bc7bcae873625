"""How a publisher's RTP arrives over UDP (RECORD, RFC 2326 §10.11): one server port pair per
track, given in its SETUP answer, where the publisher sends from its client port pair.

Datagrams from any host but the publisher's are ignored; the RTCP port takes its sender
reports and drops them (the track's timing comes from its RTP and the wall clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.outputs.rtsp.transport import bind_pair


class RtpListener(asyncio.DatagramProtocol):
    def __init__(self, host: str, on_rtp: Callable[[bytes], None]):
        self.host = host
        self.on_rtp = on_rtp

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] == self.host:
            self.on_rtp(data)


class UdpIn:
    """One track's server port pair."""

    def __init__(self, rtp: asyncio.DatagramTransport, rtcp: asyncio.DatagramTransport):
        self.rtp, self.rtcp = rtp, rtcp

    @property
    def server_ports(self) -> tuple[int, int]:
        return self.rtp.get_extra_info("sockname")[1], self.rtcp.get_extra_info("sockname")[1]

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


async def open_udp_in(bind: str, host: str, on_rtp: Callable[[bytes], None]) -> UdpIn:
    rtp, rtcp = await bind_pair(bind, lambda: RtpListener(host, on_rtp), asyncio.DatagramProtocol)
    return UdpIn(rtp, rtcp)
