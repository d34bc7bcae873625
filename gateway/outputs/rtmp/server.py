"""The RTMP server: a listener per port, a Connection per client.

Started by the composition root on rtmp.nRTMPPort, and on rtmp.nSSLPort with the HTTPS
server's certificate (RTMPS: RTMP over TLS, which keeps the URL's credentials off the wire).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from gateway.outputs.rtmp.connection import Connection

if TYPE_CHECKING:
    from gateway.core import Gateway

log = logging.getLogger(__name__)


class RtmpServer:
    def __init__(self, gateway: Gateway, bind: str):
        self.gateway = gateway
        self.bind = bind
        self.servers: list[asyncio.Server] = []
        self.connections: set[Connection] = set()

    async def listen(self, port: int, context: ssl.SSLContext | None = None) -> None:
        server = await asyncio.start_server(self._serve, self.bind, port, ssl=context)
        self.servers.append(server)
        log.info("serving %s://%s:%d/live/{token}", "rtmps" if context else "rtmp", self.bind, port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self.gateway, reader, writer)
        self.connections.add(connection)
        try:
            await connection.run()
        except Exception:
            log.exception("rtmp connection failed")
            writer.close()
        finally:
            self.connections.discard(connection)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.close("the gateway is stopping")
        for server in self.servers:
            await server.wait_closed()
