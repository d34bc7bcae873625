"""RTSP/1.0 messages (RFC 2326 §6-7): requests read with a bounded size and time, answers written.

A request line, headers and an optional body of Content-Length bytes; anything else is a
BadRequest, which the server answers with 400 and closes. Interleaved `$` frames a client
sends between requests (a reader's RTCP receiver reports, a publisher's RTP) are read here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 8192  # bytes of request line and headers
MAX_BODY = 16384  # bytes of a body (an ANNOUNCE's SDP, GET_PARAMETER's)
VERSION = "RTSP/1.0"
METHOD = re.compile(r"[A-Za-z_]{1,32}")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class BadRequest(Exception):
    """Not an RTSP request we can read: answered 400 (or 505), and the connection closed."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "0")

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reason: str = ""  # says what is wrong, in place of the status's usual phrase

    def encode(self, cseq: str) -> bytes:
        phrase = " ".join(self.reason.split()) or REASONS.get(self.status, "Error")
        lines = [f"{VERSION} {self.status} {phrase}", f"CSeq: {cseq}", "Server: h5ss"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line); BadRequest if malformed."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("not UTF-8") from None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not METHOD.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest("malformed request line")
    method, url, version = parts
    if not version.startswith("RTSP/"):
        raise BadRequest("not an RTSP request")
    if version != VERSION:
        raise BadRequest(f"version {version[:16]} not supported", 505)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise BadRequest("malformed header")
        headers[name.lower()] = value.strip()
    return Request(method.upper(), url, headers)


async def read_request(
    reader: asyncio.StreamReader, timeout: float, on_frame: Callable[[int, bytes], None] | None = None
) -> Request | None:
    """The next request; None when the client closed. Interleaved frames on the way go to
    `on_frame` (channel, data): a publisher's RTP; a reader's RTCP is skipped.

    `timeout` bounds the wait for the whole of one request, from its first byte on; the wait
    before it is the caller's (an idle connection is the session's business)."""
    while True:
        first = await reader.read(1)
        if not first:
            return None
        if first == b"$":  # an interleaved frame: channel, 16-bit length, data
            async with asyncio.timeout(timeout):  # cheaper than wait_for: a publisher sends hundreds a second
                channel_and_size = await reader.readexactly(3)
                data = await reader.readexactly(int.from_bytes(channel_and_size[1:], "big"))
            if on_frame is not None:
                on_frame(channel_and_size[0], data)
            continue
        if first in b"\r\n":
            continue
        return await asyncio.wait_for(_rest_of_request(reader, first), timeout)


async def _rest_of_request(reader: asyncio.StreamReader, first: bytes) -> Request:
    try:
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too long") from None
    except asyncio.IncompleteReadError:
        raise BadRequest("connection closed inside a request") from None
    if len(head) > MAX_HEAD:
        raise BadRequest("request head too long")
    request = parse_head(head[:-4])
    length = request.header("content-length")
    if length:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise BadRequest("bad Content-Length")
        try:
            request.body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError:
            raise BadRequest("connection closed inside a body") from None
    return request
