"""Hostile text messages on every h5s WebSocket (live fMP4, WebRTC signalling, HLS
keepalive, playback): 50,000 nested `[`, numbers past int()'s digit limit and the like are
ignored, the socket stays open and answers its next command, and nothing is logged as a
traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
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


async def _signalling(url: str) -> tuple[list[dict], int | None]:
    """Open a WebRTC signalling socket, send a malformed candidate (ignored: the socket
    stays), then a malformed answer (refused with a reason); the events and close code."""
    events: list[dict] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str('{"type": "open"}')
        while not any(e.get("type") == "offer" for e in events):
            events.append(json.loads((await ws.receive(timeout=10)).data))
        for candidate in ["x", "1 1 udp", "a b c d e f g h"]:
            await ws.send_str(json.dumps({"type": "remoteice", "candidate": candidate, "sdpMid": "0"}))
        await ws.send_str(json.dumps({"type": "remoteice", "candidate": "1 1 udp 1 127.0.0.1 9 typ host",
                                      "sdpMid": {"x": 1}, "sdpMLineIndex": "0"}))
        with contextlib.suppress(TimeoutError):
            msg = await ws.receive(timeout=0.5)
            raise AssertionError(f"answered a malformed candidate: {msg}")
        await ws.send_str(json.dumps({"type": "answer", "sdp": "v=0\r\nm=video"}))
        async for msg in ws:
            events.append(json.loads(msg.data))
        return events, ws.close_code


def test_malformed_sdp_and_candidates_are_refused_cleanly(recorded):
    gw, session, _, _ = recorded
    events, code = run_async(_signalling(f"{gw.ws_url}/api/v1/h5srtcapi?token=cam&session={session}"))
    assert events[-1] == {"type": "H5_ERROR", "strCode": "bad signalling message: malformed SDP (AssertionError)"}
    assert code == 4001
    # WHEP: the same offer is a 400 with a reason, not a 500.
    request = urllib.request.Request(f"{gw.url}/cam/whep?session={session}", data=b"v=0\r\nm=video",
                                     headers={"Content-Type": "application/sdp"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and "malformed SDP" in json.loads(refused.value.read())["strCode"]
    log = gw.log()
    assert "Traceback" not in log, log[-3000:]
