"""An RTMP message (RTMP spec 6.1) and the message types the server reads or writes."""

from __future__ import annotations

from dataclasses import dataclass

SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
COMMAND_AMF3 = 17
DATA_AMF0 = 18
COMMAND_AMF0 = 20

# User control events (RTMP spec 7.1.7)
STREAM_BEGIN = 0
PING_REQUEST = 6
PING_RESPONSE = 7


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    timestamp: int  # ms, 32 bits
    stream_id: int  # the message stream: 0 for the connection, createStream's id for media
    payload: bytes
