"""The RTSP server (RFC 2326, read side): a listener per port, a Connection per client.

Started by the composition root on rtsp.nRTSPPort, and on rtsp.nSSLPort with the HTTPS
server's certificate (RTSPS: RTSP over TLS, which keeps Basic credentials off the wire).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from gateway.outputs.rtsp.connection import Connection

if TYPE_CHECKING:
    from gateway.core import Gateway

log = logging.getLogger(__name__)

READ_LIMIT = 16384  # the stream reader's buffer: a request head longer than this is refused


class RtspServer:
    def __init__(self, gateway: Gateway, bind: str):
        self.gateway = gateway
        self.bind = bind
        self.servers: list[asyncio.Server] = []
        self.connections: set[Connection] = set()

    async def listen(self, port: int, context: ssl.SSLContext | None = None) -> None:
        server = await asyncio.start_server(self._serve, self.bind, port, ssl=context, limit=READ_LIMIT)
        self.servers.append(server)
        log.info("serving %s://%s:%d/{token}", "rtsps" if context else "rtsp", self.bind, port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self.gateway, reader, writer, self.bind)
        self.connections.add(connection)
        try:
            await connection.run()
        except Exception:
            log.exception("rtsp connection failed")
            writer.close()
        finally:
            self.connections.discard(connection)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.close("the gateway is stopping")  # its reads end, and it ends its session
        for server in self.servers:
            await server.wait_closed()
