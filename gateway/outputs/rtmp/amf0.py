"""AMF0 (Adobe AMF 0 specification): the values of RTMP commands and data messages.

Only what RTMP clients send and what our answers need: number, boolean, string, object,
null, undefined, ECMA array, strict array and long string. Decoding is bounded (nesting
depth, the payload's own length), and anything else is an Amf0Error.
"""

from __future__ import annotations

import struct
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED_MARKER = 0, 1, 2, 3, 5, 6
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, LONG_STRING = 8, 9, 10, 12
MAX_DEPTH = 16


class Amf0Error(ValueError):
    """A malformed or unsupported AMF0 value."""


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()  # AMF0 undefined (None is null)


class EcmaArray(dict[str, Any]):
    """A dict that encodes as an ECMA array (onMetaData's usual form) rather than an object."""


def encode(*values: Any) -> bytes:
    return b"".join(_encode(v) for v in values)


def _encode(value: Any) -> bytes:
    if value is None:
        return bytes([NULL])
    if value is UNDEFINED:
        return bytes([UNDEFINED_MARKER])
    if isinstance(value, bool):
        return bytes([BOOLEAN, int(value)])
    if isinstance(value, int | float):
        return bytes([NUMBER]) + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        if len(data) > 0xFFFF:
            return bytes([LONG_STRING]) + struct.pack(">I", len(data)) + data
        return bytes([STRING]) + struct.pack(">H", len(data)) + data
    if isinstance(value, EcmaArray):
        return bytes([ECMA_ARRAY]) + struct.pack(">I", len(value)) + _properties(value)
    if isinstance(value, dict):
        return bytes([OBJECT]) + _properties(value)
    if isinstance(value, list | tuple):
        return bytes([STRICT_ARRAY]) + struct.pack(">I", len(value)) + b"".join(_encode(v) for v in value)
    raise TypeError(f"no AMF0 encoding for {type(value).__name__}")


def _properties(values: dict[str, Any]) -> bytes:
    out = b"".join(_key(k) + _encode(v) for k, v in values.items())
    return out + b"\x00\x00" + bytes([OBJECT_END])


def _key(name: str) -> bytes:
    data = name.encode()
    return struct.pack(">H", len(data)) + data


def decode(data: bytes) -> list[Any]:
    """Every value in `data`, in order (a command's name, transaction id, objects...)."""
    reader = _Reader(data)
    values = []
    while reader.pos < len(data):
        values.append(reader.value(0))
    return values


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise Amf0Error("AMF0 value runs past the end of the message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def text(self, size_bytes: int) -> str:
        size = int.from_bytes(self.take(size_bytes), "big")
        try:
            return self.take(size).decode()
        except UnicodeDecodeError:
            raise Amf0Error("AMF0 string is not UTF-8") from None

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Amf0Error("AMF0 values nested too deep")
        marker = self.take(1)[0]
        if marker == NUMBER:
            return struct.unpack(">d", self.take(8))[0]
        if marker == BOOLEAN:
            return self.take(1)[0] != 0
        if marker == STRING:
            return self.text(2)
        if marker == LONG_STRING:
            return self.text(4)
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == OBJECT:
            return self.properties(depth, dict())
        if marker == ECMA_ARRAY:
            self.take(4)  # the count is a hint: the end marker ends it
            return self.properties(depth, EcmaArray())
        if marker == STRICT_ARRAY:
            count = int.from_bytes(self.take(4), "big")
            if count > len(self.data) - self.pos:  # every value takes at least a byte
                raise Amf0Error("AMF0 strict array longer than its message")
            return [self.value(depth + 1) for _ in range(count)]
        raise Amf0Error(f"unsupported AMF0 type {marker}")

    def properties(self, depth: int, into: dict[str, Any]) -> dict[str, Any]:
        while True:
            name = self.text(2)
            if not name and self.data[self.pos : self.pos + 1] == bytes([OBJECT_END]):
                self.pos += 1
                return into
            into[name] = self.value(depth + 1)
