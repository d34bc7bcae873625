"""How a reader's RTP and RTCP leave: interleaved on its RTSP connection, or UDP unicast.

TCP (RFC 2326 §10.12): the packets go on the control connection, `$`-framed on the
channels the client chose in SETUP; the connection's send buffer is the reader's queue, and
a buffer over budget means the reader is behind. UDP: each track's packets go to the
client's port pair from one server port pair per session; the server's RTCP port hears the
client's receiver reports, which keep the session alive as its requests do.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from gateway.outputs.rtsp.batch import INTERLEAVED, RtpBatch

TCP_BUDGET = 4 * 1024 * 1024  # unsent bytes on a reader's connection: a few seconds of a 4-8 Mbps stream


class TcpOut:
    """Interleaved on the RTSP connection."""

    def __init__(self, transport: asyncio.WriteTransport, budget: int = TCP_BUDGET):
        self.transport = transport
        self.budget = budget
        self.channels: dict[int, int] = {}  # track -> its RTP channel (RTCP: the next one)

    def add_track(self, track: int, channel: int) -> None:
        self.channels[track] = channel

    def behind(self, size: int) -> bool:
        return self.transport.get_write_buffer_size() + size > self.budget

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def send(self, batch: RtpBatch) -> None:
        channel = self.channels[batch.track]
        self.transport.write(batch.data if channel == 2 * batch.track else batch.on_channel(channel))

    def send_rtcp(self, track: int, packet: bytes) -> None:
        channel = self.channels[track] + 1
        self.transport.write(INTERLEAVED.pack(b"$", channel, len(packet)) + packet)

    def close(self) -> None:
        """The connection is the session's: closing it is the server's business."""


class RtcpListener(asyncio.DatagramProtocol):
    """The server's RTCP port: any datagram from the client is a sign of life."""

    def __init__(self, on_datagram: Callable[[], None]):
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram()


class UdpOut:
    """UDP unicast from one server port pair to the client's pair per track."""

    def __init__(self, rtp: asyncio.DatagramTransport, rtcp: asyncio.DatagramTransport, host: str):
        self.rtp, self.rtcp, self.host = rtp, rtcp, host
        self.ports: dict[int, int] = {}  # track -> the client's RTP port (RTCP: the next one)

    @property
    def server_ports(self) -> tuple[int, int]:
        return self.rtp.get_extra_info("sockname")[1], self.rtcp.get_extra_info("sockname")[1]

    def add_track(self, track: int, client_port: int) -> None:
        self.ports[track] = client_port

    def behind(self, size: int) -> bool:
        return False  # datagrams are not queued: a slow reader loses packets instead

    def write(self, data: bytes) -> None:
        raise AssertionError("UDP sends packet by packet")

    def send(self, batch: RtpBatch) -> None:
        address = (self.host, self.ports[batch.track])
        for packet in batch.rtp_packets():
            self.rtp.sendto(packet, address)

    def send_rtcp(self, track: int, packet: bytes) -> None:
        self.rtcp.sendto(packet, (self.host, self.ports[track] + 1))

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


async def bind_pair(
    bind: str,
    rtp_protocol: Callable[[], asyncio.DatagramProtocol],
    rtcp_protocol: Callable[[], asyncio.DatagramProtocol],
    tries: int = 20,
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramTransport]:
    """Datagram endpoints on a free even RTP port and the odd port after it (RFC 3550 §11)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    for _ in range(tries):
        rtp, _ = await loop.create_datagram_endpoint(rtp_protocol, local_addr=(bind, 0), family=family)
        port = rtp.get_extra_info("sockname")[1]
        if port % 2 == 0:
            try:
                rtcp, _ = await loop.create_datagram_endpoint(rtcp_protocol, local_addr=(bind, port + 1), family=family)
            except OSError:
                rtp.close()
                continue
            return rtp, rtcp
        rtp.close()
    raise OSError("no free UDP port pair")


async def open_udp_pair(bind: str, host: str, on_rtcp: Callable[[], None]) -> UdpOut:
    """A UdpOut from a free port pair; its RTCP port hears the client's reports."""
    rtp, rtcp = await bind_pair(bind, asyncio.DatagramProtocol, lambda: RtcpListener(on_rtcp))
    return UdpOut(rtp, rtcp, host)
