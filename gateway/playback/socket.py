"""WS playback of recordings: /api/v1/h5swsapi?playback=true&token&begintime&endtime[&filename].

The same protocol as live (PROTOCOLS.md §2): first binary frame the MIME string, then
the init segment, then fragments; text frames are events. The recordings come from the
media index (never from listing directories); media/playback.py paces them.

Commands (text frames, JSON): H5_PAUSE, H5_RESUME (and H5_START), H5_KEEPALIVE,
{"cmd":"H5_SEEK","nSeekTime":s} with s in seconds from begintime (the h5s player's seek
slider runs over the requested range), {"cmd":"H5_SPEED","nSpeed":x} with 0.25 <= x <= 8.
Events: {"type":"H5_PLAYBACK_START","nOrigin","nDuration"} (the timeline starts nOrigin
seconds before begintime, at the keyframe there), {"type":"H5_SEEK","nSeekTime","nTime"}
after a seek (the player drops its buffer and shows timeline second nTime), and
{"type":"H5_PLAYBACK_END"} before a normal close (1000) at the end of the range.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime

from aiohttp import WSMsgType, web

from gateway.api.v1 import GATEWAY_KEY, session_from
from gateway.auth import AuthError
from gateway.config.file import valid_token
from gateway.core import Gateway
from gateway.playback.pacer import SPEEDS, Playback, PlaybackControl, PlaybackStopped, Segment
from gateway.store.index import MediaEntry
from gateway.store.timefmt import TimeFormatError, parse_time

log = logging.getLogger(__name__)

MAX_RANGE = 24 * 3600.0  # seconds a playback or download may span
SEND_TIMEOUT = 30.0  # a viewer that takes no data for this long is dropped
CLOSE_BAD_REQUEST = 4000
CLOSE_POLICY = 4001
CLOSE_NOT_FOUND = 4004
CLOSE_FAILED = 4008


class RangeError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RecordRange:
    """What a playback or download covers: a token's recordings between two instants."""

    token: str
    begin: float  # epoch seconds
    end: float
    entries: list[MediaEntry]

    def segments(self, gw: Gateway) -> list[Segment]:
        root = gw.config.mediastore_dir
        return [Segment(root / e.path, e.start - self.begin, e.duration) for e in self.entries]


def _time(query, name: str) -> datetime:
    text = query.get(name)
    if not text:
        raise RangeError(400, f"missing parameter '{name}'")
    try:
        return parse_time(text[:64])
    except TimeFormatError as e:
        raise RangeError(400, f"parameter '{name}': {e}") from None


def record_range(gw: Gateway, query, begin_name: str, end_name: str) -> RecordRange:
    """The recordings a request asks for, or RangeError (400 bad input, 404 nothing there).

    `filename` (a path from Search, with or without /mediastore/) plays that one file;
    the h5s player sends `filename=fake` when it means none.
    """
    token = query.get("token", "")
    if not valid_token(token):
        raise RangeError(400, "token must be 1-64 letters, digits, '-', '_' or '.'")
    filename = query.get("filename", "")
    if filename and filename != "fake":
        path = filename.removeprefix("/").removeprefix("mediastore/")
        entry = gw.media_index.get(path[:1024])
        if entry is None or entry.kind != "record" or entry.token != token:
            raise RangeError(404, f"no recording {filename[:200]!r} of {token!r}")
        begin = _time(query, begin_name).timestamp() if query.get(begin_name) else entry.start
        end = _time(query, end_name).timestamp() if query.get(end_name) else entry.end
        entries = [entry] if entry.start < end and entry.end > begin else []
    else:
        begin, end = _time(query, begin_name).timestamp(), _time(query, end_name).timestamp()
        entries = []
    if not end > begin:
        raise RangeError(400, f"'{end_name}' must be after '{begin_name}'")
    if end - begin > MAX_RANGE:
        raise RangeError(400, f"the range may span {MAX_RANGE / 3600:g} hours at most")
    if not entries and not (filename and filename != "fake"):
        entries = gw.media_index.search("record", token, begin, end)
    root = gw.config.mediastore_dir
    entries = [e for e in entries if (root / e.path).is_file()]
    if not entries:
        if token not in gw.config.sources and not gw.media_index.search("record", token, 0, math.inf, limit=1):
            raise RangeError(404, f"unknown token {token!r}")
        raise RangeError(404, f"no recordings of {token!r} in that range")
    return RecordRange(token, begin, end, entries)


async def playback_socket(request: web.Request) -> web.WebSocketResponse:
    gw = request.app[GATEWAY_KEY]
    ws = web.WebSocketResponse(max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    try:
        session_from(request)
        wanted = record_range(gw, request.query, "begintime", "endtime")
    except AuthError as e:
        return await _refuse(ws, CLOSE_POLICY, f"unauthorized: {e}")
    except RangeError as e:
        return await _refuse(ws, CLOSE_NOT_FOUND if e.status == 404 else CLOSE_BAD_REQUEST, e.reason)

    loop = asyncio.get_running_loop()
    finished: asyncio.Future[str | None] = loop.create_future()

    def send(data: bytes | str) -> None:
        """From the playback thread: one message, waiting until the socket took it."""
        try:
            coro = ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data)
            asyncio.run_coroutine_threadsafe(coro, loop).result(SEND_TIMEOUT)
        except Exception as e:  # closed socket, stopped loop, a viewer that stopped reading
            raise PlaybackStopped from e

    def done(error: str | None) -> None:
        def finish() -> None:
            if not finished.done():
                finished.set_result(error)

        try:
            loop.call_soon_threadsafe(finish)
        except RuntimeError:  # loop closed at shutdown
            pass

    control = PlaybackControl()
    playback = Playback(wanted.segments(gw), wanted.end - wanted.begin, control, send, done)
    playback.start()
    reader = asyncio.create_task(_read_commands(ws, control))
    try:
        await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
        if finished.done() and not ws.closed:
            error = finished.result()
            if error:
                await _refuse(ws, CLOSE_FAILED, error)
            else:
                await ws.close(message=b"end of playback")
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        control.stop()
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _error_event(ws: web.WebSocketResponse, reason: str) -> None:
    await ws.send_str(json.dumps({"type": "H5_ERROR", "strCode": reason}))


async def _refuse(ws: web.WebSocketResponse, code: int, reason: str) -> web.WebSocketResponse:
    await _error_event(ws, reason)
    await ws.close(code=code, message=reason.encode()[:120])
    return ws


def _number(message: dict, name: str, low: float, high: float) -> float | None:
    value = message.get(name)
    try:
        number = float(value)  # the h5s player sends numbers; older pages strings
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


async def _read_commands(ws: web.WebSocketResponse, control: PlaybackControl) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            message = json.loads(msg.data)
            cmd = message.get("cmd")
        except (ValueError, AttributeError):
            continue  # "keepalive" from older players, or noise
        if cmd == "H5_PAUSE":
            control.pause()
        elif cmd in ("H5_RESUME", "H5_START"):
            control.resume()
        elif cmd == "H5_SEEK":
            seconds = _number(message, "nSeekTime", 0.0, MAX_RANGE)
            if seconds is None:
                await _error_event(ws, "nSeekTime must be seconds from begintime")
            else:
                control.seek(seconds)
        elif cmd == "H5_SPEED":
            speed = _number(message, "nSpeed", *SPEEDS)
            if speed is None:
                await _error_event(ws, f"nSpeed must be {SPEEDS[0]} to {SPEEDS[1]}")
            else:
                control.set_speed(speed)
