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

CLOSE_TIMEOUT = 5.0  # seconds the connections have to end when the gateway stops


class RtmpServer:
    def __init__(self, gateway: Gateway, bind: str):
        self.gateway = gateway
        self.bind = bind
        self.servers: list[asyncio.Server] = []
        self.connections: dict[Connection, asyncio.Task[None]] = {}

    async def listen(self, port: int, context: ssl.SSLContext | None = None) -> None:
        server = await asyncio.start_server(self._serve, self.bind, port, ssl=context)
        self.servers.append(server)
        log.info("serving %s://%s:%d/live/{token}", "rtmps" if context else "rtmp", self.bind, port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self.gateway, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self.connections[connection] = task
        try:
            await connection.run()
        except Exception:
            log.exception("rtmp connection failed")
            writer.close()
        finally:
            self.connections.pop(connection, None)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        tasks = list(self.connections.values())
        for connection in list(self.connections):
            connection.close("the gateway is stopping")  # each ends its publish or play
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        for server in self.servers:
            await server.wait_closed()
