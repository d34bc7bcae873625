"""The chunk stream, read side (RTMP spec 5.3): bytes in, whole messages out.

Sans I/O: `feed` takes whatever the socket gave and returns the messages completed. All
four chunk header formats, the extended timestamp (also on type 3 chunks whose stream
last had one, as FFmpeg and librtmp write them), interleaved chunk streams, and the
peer's Set Chunk Size and Abort, applied at once since they change how the very next
chunk is read. Every size is bounded: a peer past a bound gets a ChunkError, and the
connection drops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.outputs.rtmp.message import ABORT, SET_CHUNK_SIZE, Message

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 1 << 24  # the spec allows 2^31 - 1; no client needs more than a few KiB
MAX_MESSAGE_SIZE = 8 << 20  # a 4K keyframe is a few MiB at most
MAX_CHUNK_STREAMS = 64  # clients use a handful
MAX_PENDING = 16 << 20  # bytes of unfinished messages over all chunk streams
_EXTENDED = 0xFFFFFF


class ChunkError(ValueError):
    """The peer broke the chunk stream or one of its bounds; the message says how."""


@dataclass(slots=True)
class _ChunkStream:
    """What later chunks of a chunk stream take from earlier ones."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False  # the last header's timestamp field was 0xFFFFFF
    parts: list[bytes] = field(default_factory=list)  # the message being read
    have: int = 0  # bytes of it so far
    started: bool = False  # a type 0 header came: the other types have something to take


class ChunkReader:
    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.bytes_read = 0  # for acknowledgements
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._pending = 0

    def feed(self, data: bytes) -> list[Message]:
        self.bytes_read += len(data)
        buf = self._buf
        buf += data
        messages: list[Message] = []
        pos = 0
        while True:
            end = self._chunk(buf, pos, messages)
            if end < 0:
                break
            pos = end
        del buf[:pos]
        if len(buf) > self.chunk_size + 32:  # a chunk and its longest header: never waits for more
            raise ChunkError("chunk larger than the chunk size")
        return messages

    def _chunk(self, buf: bytearray, pos: int, messages: list[Message]) -> int:
        """Read one chunk at `pos`; returns where the next starts, or -1 if it is not all there."""
        size = len(buf)
        if pos >= size:
            return -1
        first = buf[pos]
        fmt, csid = first >> 6, first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > size:
                return -1
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > size:
                return -1
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2
        header = (11, 7, 3, 0)[fmt]
        if pos + header > size:
            return -1
        stream = self._streams.get(csid)
        if stream is None:
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise ChunkError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
            stream = _ChunkStream()
        if fmt != 0 and not stream.started:
            raise ChunkError(f"chunk stream {csid} starts without a type 0 header")
        new_message = stream.have == 0
        if fmt != 3 and not new_message:
            raise ChunkError(f"chunk stream {csid}: a new header inside an unfinished message")
        value = int.from_bytes(buf[pos : pos + 3], "big") if fmt != 3 else 0
        length, kind = stream.length, stream.type
        if fmt <= 1:
            length, kind = int.from_bytes(buf[pos + 3 : pos + 6], "big"), buf[pos + 6]
            if length > MAX_MESSAGE_SIZE:
                raise ChunkError(f"message of {length} bytes (at most {MAX_MESSAGE_SIZE})")
        stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little") if fmt == 0 else stream.stream_id
        pos += header
        extended = value == _EXTENDED if fmt != 3 else stream.extended
        if extended:
            if pos + 4 > size:
                return -1
            value = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        take = min(self.chunk_size, length - stream.have)
        if pos + take > size:
            return -1
        # The whole chunk is there: only now does it change the chunk stream's state.
        if fmt == 0:
            stream.timestamp, stream.delta = value, 0
        elif fmt != 3 or new_message:
            if fmt != 3:
                stream.delta = value
            stream.timestamp = (stream.timestamp + stream.delta) & 0xFFFFFFFF
        if fmt != 3:
            stream.extended = extended
        stream.length, stream.type, stream.stream_id = length, kind, stream_id
        stream.started = True
        self._streams[csid] = stream
        if take:
            stream.parts.append(bytes(buf[pos : pos + take]))
            stream.have += take
            self._pending += take
            if self._pending > MAX_PENDING:
                raise ChunkError("too many unfinished messages")
        pos += take
        if stream.have == stream.length:
            payload = b"".join(stream.parts)
            stream.parts, stream.have = [], 0
            self._pending -= len(payload)
            message = Message(stream.type, stream.timestamp, stream.stream_id, payload)
            self._control(message)
            messages.append(message)
        return pos

    def _control(self, message: Message) -> None:
        """Set Chunk Size and Abort change how the next chunks are read."""
        if message.type == SET_CHUNK_SIZE and len(message.payload) >= 4:
            size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
            if not 1 <= size <= MAX_CHUNK_SIZE:
                raise ChunkError(f"chunk size {size} (at most {MAX_CHUNK_SIZE})")
            self.chunk_size = size
        elif message.type == ABORT and len(message.payload) >= 4:
            stream = self._streams.get(int.from_bytes(message.payload[:4], "big"))
            if stream is not None:
                self._pending -= stream.have
                stream.parts, stream.have = [], 0
