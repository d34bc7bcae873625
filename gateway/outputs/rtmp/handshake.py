"""The RTMP handshake, server side (RTMP spec 5.2): C0 C1 in, S0 S1 S2 out, C2 in.

The plain handshake: S1 has a zero version field, which tells FFmpeg (librtmp, OBS,
nginx-rtmp's client) not to look for the digest of Flash's signed handshake, so they take
an unsigned server. C2 is read and not checked: clients echo S1 loosely.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

VERSION = 3
SIZE = 1536


class HandshakeError(ValueError):
    """Not an RTMP client (or not version 3)."""


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    c0 = await reader.readexactly(1)
    if c0[0] != VERSION:
        raise HandshakeError(f"RTMP version {c0[0]} (this server speaks 3)")
    c1 = await reader.readexactly(SIZE)
    s1 = struct.pack(">II", int(time.monotonic() * 1000) & 0xFFFFFFFF, 0) + os.urandom(SIZE - 8)
    writer.write(bytes([VERSION]) + s1 + c1)  # S0, S1, and S2: C1 echoed
    await writer.drain()
    await reader.readexactly(SIZE)  # C2
