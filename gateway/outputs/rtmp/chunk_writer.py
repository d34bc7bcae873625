"""The chunk stream, write side (RTMP spec 5.3): a message as chunks.

Every message starts with a type 0 header (absolute timestamp) and goes on in type 3
chunks. Headers that borrow from the previous message (types 1 and 2) would save a few
bytes, but would make a message's bytes depend on what that connection was sent before;
with type 0 they depend only on the message and the chunk size, so one rendering of a
media message serves every player of a stream (outputs/flv/client.py's shared renders).
Extended timestamps are repeated on the type 3 chunks, as FFmpeg and librtmp read them.
"""

from __future__ import annotations

import struct

from gateway.outputs.rtmp.message import (
    ACKNOWLEDGEMENT,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    WINDOW_ACK_SIZE,
)

OUT_CHUNK_SIZE = 4096  # what the server sends Set Chunk Size for, at once after connect
_EXTENDED = 0xFFFFFF

# Chunk stream ids the server writes on (2 is the protocol control stream).
CONTROL_CSID = 2
COMMAND_CSID = 3
AUDIO_CSID = 4
VIDEO_CSID = 6
DATA_CSID = 5


def chunked(
    csid: int, kind: int, timestamp: int, stream_id: int, payload: bytes, chunk_size: int = OUT_CHUNK_SIZE
) -> bytes:
    """The chunks of one message; `csid` is 2..63 (one-byte basic headers)."""
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= _EXTENDED
    head = struct.pack(">B", csid) + (_EXTENDED if extended else timestamp).to_bytes(3, "big")
    head += len(payload).to_bytes(3, "big") + bytes([kind]) + struct.pack("<I", stream_id)
    ext = struct.pack(">I", timestamp) if extended else b""
    if len(payload) <= chunk_size:
        return head + ext + payload
    continuation = bytes([0xC0 | csid]) + ext
    parts = [head, ext, payload[:chunk_size]]
    for start in range(chunk_size, len(payload), chunk_size):
        parts.append(continuation)
        parts.append(payload[start : start + chunk_size])
    return b"".join(parts)


def control(kind: int, value: int) -> bytes:
    """A protocol control message of one 32-bit value (set chunk size, window ack size, ack)."""
    return chunked(CONTROL_CSID, kind, 0, 0, struct.pack(">I", value))


def set_chunk_size(size: int) -> bytes:
    return control(SET_CHUNK_SIZE, size)


def window_ack_size(size: int) -> bytes:
    return control(WINDOW_ACK_SIZE, size)


def acknowledgement(bytes_read: int) -> bytes:
    return control(ACKNOWLEDGEMENT, bytes_read & 0xFFFFFFFF)


def set_peer_bandwidth(size: int) -> bytes:
    return chunked(CONTROL_CSID, SET_PEER_BANDWIDTH, 0, 0, struct.pack(">IB", size, 2))  # 2: dynamic


def user_control(event: int, value: int) -> bytes:
    return chunked(CONTROL_CSID, USER_CONTROL, 0, 0, struct.pack(">HI", event, value))
