"""The gateway process under hostile clients: a request body sent a byte a second, and more
idle connections than it has file descriptors while a camera plays."""

from __future__ import annotations

import json
import os
import socket
import time

from tests.fixtures.ws_client import WsViewer
from tests.test_http_front import read_response

FD_LIMIT = 256


def test_a_whep_body_sent_a_byte_a_second_gets_408(gateway):
    session = gateway.login()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(
            f"POST /token1/whep HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {session}\r\n"
            "Content-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0\r\n".encode()
        )
        start = time.monotonic()
        sock.settimeout(1.0)
        received = bytearray()
        while b"\r\n\r\n" not in received and time.monotonic() - start < 15:
            sock.sendall(b"m")
            try:
                received += sock.recv(65536)
            except TimeoutError:
                continue
        waited = time.monotonic() - start
        sock.settimeout(5)
        status, _, body = read_response(sock, received)
    assert status == 408 and "body not received" in json.loads(body)["strCode"]
    assert 9 < waited < 12


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_past_the_fd_limit_leave_the_gateway_serving(make_gateway, camera_factory):
    """At RLIMIT_NOFILE 256, 2 × 256 idle unauthenticated connections: the gateway's fds stay
    under its limit, new clients are served (each taking an idle connection's place) or
    refused at once, a live viewer keeps playing, GetImage and a new viewer work, the camera
    never runs out of fds, and the log stays a few lines long."""
    camera = camera_factory()
    gw = make_gateway(start=False).start(fd_limit=FD_LIMIT)
    assert gw.proc is not None
    session = gw.login()
    assert gw.api("AddSrcRTSP", session=session, name="Cam", token="cam", url=camera.url)[0] == 200
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(5, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    log_lines = len(gw.log().splitlines())
    idle: list[socket.socket] = []
    most_fds = 0
    started = time.monotonic()
    try:
        for _ in range(2 * FD_LIMIT):
            idle.append(socket.create_connection(("127.0.0.1", gw.port), timeout=5))
            most_fds = max(most_fds, open_fds(gw.proc.pid))
        opened_in = time.monotonic() - started
        time.sleep(1.5)  # every idle connection idle over a second: each may make room for a newcomer
        frames = len(viewer.frames)
        start = time.monotonic()
        status, answer = gw.api("GetSrc", session=session)
        assert status == 200 and answer["bStatus"] is True
        status, ctype, image = gw.get(f"/api/v1/GetImage?token=cam&session={session}", timeout=10)
        assert status == 200 and ctype == "image/jpeg" and image[:2] == b"\xff\xd8"
        second = WsViewer(gw.ws_url, "cam", session)
        second.start()
        assert second.wait_frames(5, 10), (second.error, second.close_reason)
        served_in = time.monotonic() - start
        assert viewer.wait_frames(frames + 10, 5) and viewer.is_alive()  # the first one never stopped
        second.stop()
        # Every idle connection was kept, taken over by a newcomer or refused: none hangs.
        answered = [s for s in idle if closed_or_answered(s)]
        most_fds = max(most_fds, open_fds(gw.proc.pid))
    finally:
        for s in idle:
            s.close()
        viewer.stop()
    log = gw.log()
    attack_lines = len(log.splitlines()) - log_lines
    print(f"{len(idle)} connections opened in {opened_in:.1f} s, {len(answered)} closed by the gateway; "
          f"gateway fds at most {most_fds} of {FD_LIMIT}; clients served in {served_in:.1f} s; "
          f"{attack_lines} log lines")
    assert most_fds < FD_LIMIT - 32
    assert len(answered) >= len(idle) - FD_LIMIT  # past the cap, not kept (and not hanging)
    assert "Too many open files" not in log and "out of system resource" not in log
    assert attack_lines < 100, log[-3000:]
    assert "file descriptor limit: 256" in log and "client connections at once" in log


def closed_or_answered(sock: socket.socket) -> bool:
    """Whether the gateway closed this connection (a 503 first, or nothing)."""
    sock.settimeout(0.001)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")
