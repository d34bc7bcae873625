"""The lean HTTP front: HLS GETs answered by it, everything else handed to aiohttp intact."""

from __future__ import annotations

import json
import socket

import pytest

from gateway.web.front import LeanRequest, parse_head


def head(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


@pytest.mark.unit
@pytest.mark.parametrize("raw,expected", [
    (head("GET /cam/index.m3u8?session=a&session=b&x= HTTP/1.1", "Host: h"),
     LeanRequest("GET", "/cam/index.m3u8", {"session": "a", "x": ""}, True, b"\r\nHost: h")),
    (head("HEAD /hls/v1/c%61m/hls.m3u8 HTTP/1.1", "Connection: close", "host: h"),
     LeanRequest("HEAD", "/hls/v1/cam/hls.m3u8", {}, False, b"\r\nConnection: close\r\nhost: h")),
    (head("GET /a HTTP/1.0"), LeanRequest("GET", "/a", {}, False, b"")),
    (head("GET /a HTTP/1.0", "Connection: Keep-Alive"), LeanRequest("GET", "/a", {}, True, b"\r\nConnection: Keep-Alive")),
    (head("GET /a HTTP/1.1", "Content-Length: 0", "HOST: h"),
     LeanRequest("GET", "/a", {}, True, b"\r\nContent-Length: 0\r\nHOST: h")),
    (head("GET /a HTTP/1.1", "X-Content-Length: 5", "Host:", "connection: KEEP-ALIVE, close"),
     LeanRequest("GET", "/a", {}, False, b"\r\nX-Content-Length: 5\r\nHost:\r\nconnection: KEEP-ALIVE, close")),
    (head("GET /a HTTP/1.1", "Host: h", *[f"X{i}: y" for i in range(127)]),
     LeanRequest("GET", "/a", {}, True, "".join(["\r\nHost: h", *[f"\r\nX{i}: y" for i in range(127)]]).encode())),
])
def test_plain_gets_are_parsed(raw, expected):
    assert parse_head(raw) == expected


@pytest.mark.unit
@pytest.mark.parametrize("raw", [
    head("POST /cam/index.m3u8 HTTP/1.1", "Content-Length: 3"),
    head("GET /a HTTP/1.1", "Content-Length: 3"),
    head("GET /a HTTP/1.1", "Transfer-Encoding: chunked"),
    head("GET /api/v1/h5swscmnapi HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"),
    head("GET /a HTTP/1.1", "Expect: 100-continue"),
    head("GET /a HTTP/2.0"),
    head("GET  /a HTTP/1.1"),
    head("GET a HTTP/1.1"),
    head("GET /a HTTP/1.1", "Bad header"),
    head("GET /a HTTP/1.1", "Folded: a", " b"),
    head("GET /a HTTP/1.1", "Name : value"),
    head("GET /a HTTP/1.1", "X: a\x01b"),
    head("GET /a HTTP/1.1", "X: a\tb"),
    head("GET /a HTTP/1.1", "Two words: x"),
    head("GET /a HTTP/1.1", "content-LENGTH: 3"),
    head("GET /a HTTP/1.1", "Host: h", ""),
    "GET /caf\u00e9 HTTP/1.1".encode("utf-8"),
    head("GET /%ff HTTP/1.1"),
    head("GET /a HTTP/1.1"),  # no Host (aiohttp: 400)
    head("GET /a HTTP/1.1", "X-Host: h", "Hostname: h"),
    head("GET /a HTTP/1.1", "Host: h", "host: h"),  # two (aiohttp: 400)
    head("GET /a HTTP/1.0", "Host: h", "Host: h"),
    head("GET /a HTTP/1.1", "Host: h", *[f"X{i}: y" for i in range(128)]),  # 129 lines (aiohttp: 400)
])
def test_anything_else_is_left_to_aiohttp(raw):
    assert parse_head(raw) is None


def read_response(sock: socket.socket, buffer: bytearray, has_body: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One response off a keep-alive socket: status, headers (lower-case names), body."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    lines = buffer[:end].decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0)) if has_body else 0
    while len(buffer) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return int(lines[0].split(" ")[1]), headers, body


def connect(gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    return sock


def test_hls_and_api_requests_share_one_keepalive_connection(gateway):
    """HLS first (the front), then the REST API pipelined behind it (handed to aiohttp with
    the bytes already read), then HLS again, now answered by aiohttp the same way."""
    session = gateway.login()
    requests = [f"GET /hls/v1/token1/hls.m3u8?session={session} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /api/v1/GetSrc?session={session} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /hls/v1/token1/hls.m3u8?session={session} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /hls/v1/nope/hls.m3u8?session={session} HTTP/1.1\r\nHost: x\r\n\r\n"]
    with connect(gateway) as sock:
        sock.sendall("".join(requests).encode())
        buffer = bytearray()
        answers = [read_response(sock, buffer) for _ in requests]
    (s1, h1, playlist), (s2, h2, api), (s3, h3, again), (s4, h4, missing) = answers
    assert s1 == 200 and h1["content-type"] == "application/vnd.apple.mpegurl" and playlist.startswith(b"#EXTM3U")
    assert "server" not in h1  # the front's answer
    assert h1["access-control-allow-origin"] == "*" and h1["cache-control"] == "no-cache"
    assert s2 == 200 and "aiohttp" in h2["server"] and json.loads(api)["bStatus"] is True
    assert s3 == 200 and "aiohttp" in h3["server"] and again.startswith(b"#EXTM3U") and b"seg" in again
    assert s4 == 404 and h4["content-type"].startswith("application/json")
    assert "unknown token" in json.loads(missing)["strCode"]


def test_head_errors_and_connection_close(gateway):
    session = gateway.login()
    with connect(gateway) as sock:
        buffer = bytearray()
        sock.sendall(f"HEAD /token1/index.m3u8?session={session} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_response(sock, buffer, has_body=False)
        assert status == 200 and int(headers["content-length"]) > 0 and body == b""
        sock.sendall(b"GET /token1/index.m3u8?session=forged HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock, buffer)
        assert status == 401 and "invalid session" in json.loads(body)["strCode"]
        sock.sendall(b"GET /token1/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = read_response(sock, buffer)
        assert status == 401 and headers["connection"] == "close"
        assert sock.recv(100) == b"" and not buffer  # closed, nothing more sent
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("raw,codes", [
    (b"GET /token1/index.m3u8 HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", (400, 431)),
    (b"GET /token1/index.m3u8 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", (400, 401)),
    (b"BREW /token1/index.m3u8 HTTP/1.1\r\n\r\n", (400, 405)),
    (b"GET /token1/index.m3u8 HTTP/1.1\r\n\r\n", (400,)),
    (b"GET /token1/index.m3u8 HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", (400,)),
    (b"GET /token1/index.m3u8 HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 128 + b"\r\n", (400,)),
], ids=["oversized-head", "get-with-body", "unknown-method", "no-host", "two-hosts", "129-header-lines"])
def test_odd_requests_meet_aiohttp(gateway, raw, codes):
    """An oversized head, a GET with a body, an unknown method, HTTP/1.1 without one Host,
    more header lines than aiohttp takes: aiohttp's answer, no hang."""
    with connect(gateway) as sock:
        sock.sendall(raw)
        status, headers, body = read_response(sock, bytearray())
    assert status in codes and "aiohttp" in headers.get("server", "") and b"Traceback" not in body
