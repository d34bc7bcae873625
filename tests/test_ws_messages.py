"""Hostile text messages on every h5s WebSocket (live fMP4, WebRTC signalling, HLS
keepalive, playback): 50,000 nested `[`, numbers past int()'s digit limit and the like are
ignored, the socket stays open and answers its next command, and nothing is logged as a
traceback."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import aiohttp
import pytest

from tests.test_playback import h5_time, recorded, run_async  # noqa: F401  (recorded: a fixture)

HOSTILE = [
    "[" * 50_000,
    "{" + '"a":{' * 10_000,
    '{"cmd": "H5_SPEED", "nSpeed": ' + "9" * 5000 + "}",
    '{"cmd": "H5_SPEED", "nSpeed": 1' + "0" * 400 + "}",  # parses; too big for a float
    '{"cmd": "H5_SEEK", "nSeekTime": 1e400}',
    "[1, 2]",
    '"H5_PAUSE"',
]


async def _still_answers(url: str, probe: str | None, answer_type: str | None) -> list[str]:
    """Send every hostile message, then `probe`; what came back as text, in order. The socket
    must still be open 1 s later."""
    texts: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        for message in HOSTILE:
            await ws.send_str(message)
        if probe is not None:
            await ws.send_str(probe)
        deadline = asyncio.get_running_loop().time() + 1.0
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), (msg.type, msg.data, texts)
            if msg.type == aiohttp.WSMsgType.TEXT:
                texts.append(json.loads(msg.data).get("type"))
        assert not ws.closed
    if answer_type is not None:
        assert answer_type in texts, texts
    return texts


@pytest.mark.parametrize("kind", ["live", "webrtc", "hls_keepalive", "playback"])
def test_hostile_json_on_a_websocket_is_ignored_and_the_socket_stays_sane(recorded, kind):
    gw, session, start, _ = recorded
    base = f"{gw.ws_url}/api/v1"
    url, probe, answer_type = {
        "live": (f"{base}/h5swsapi?token=cam&session={session}", None, None),
        "webrtc": (f"{base}/h5srtcapi?token=cam&session={session}", '{"type": "open"}', "iceserver"),
        "hls_keepalive": (f"{base}/h5swscmnapi?token=cam&session={quote(session)}", '{"type": "keepalive"}', None),
        "playback": (f"{base}/h5swsapi?playback=true&token=cam&session={session}"
                     f"&begintime={h5_time(start)}&endtime={h5_time(start + 15)}",
                     '{"cmd": "H5_SPEED", "nSpeed": "fast"}', "H5_ERROR"),
    }[kind]
    run_async(_still_answers(url, probe, answer_type))
    log = gw.log()
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
