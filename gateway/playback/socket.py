"""WS playback of recordings: /api/v1/h5swsapi?playback=true&token&begintime&endtime[&filename].

The same protocol as live (PROTOCOLS.md §2): first binary frame the MIME string, then
the init segment, then fragments; text frames are events. The recordings come from the
media index (never from listing directories); pacer.py paces them.

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
import concurrent.futures
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway.auth import AuthError
from gateway.hub.output import OutputCounts
from gateway.playback.pacer import SPEEDS, Playback, PlaybackControl, PlaybackStopped
from gateway.playback.range import MAX_RANGE, record_range
from gateway.web.errors import ApiError
from gateway.web.request import gateway, session_from
from gateway.web.websocket import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_READY,
    CLOSE_POLICY,
    client_message,
    close_ended,
    ended_session,
    error_event,
    h5s_socket,
    refuse,
)

log = logging.getLogger(__name__)

SEND_TIMEOUT = 30.0  # a viewer that takes no data for this long is dropped


async def playback_socket(request: web.Request) -> web.WebSocketResponse:
    gw = gateway(request)
    ws = h5s_socket()
    await ws.prepare(request)
    try:
        session = session_from(request)
        wanted = record_range(gw, request.query, "begintime", "endtime")
    except AuthError as e:
        return await refuse(ws, CLOSE_POLICY, f"unauthorized: {e}")
    except ApiError as e:
        return await refuse(ws, CLOSE_NOT_FOUND if e.status == 404 else CLOSE_BAD_REQUEST, e.reason)

    loop = asyncio.get_running_loop()
    finished: asyncio.Future[str | None] = loop.create_future()
    counts = gw.recording_clients.setdefault(("playback", wanted.token), OutputCounts(clients=0))

    async def send_counted(data: bytes | str) -> None:
        await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
        counts.bytes_out += len(data)

    def dropped() -> None:
        counts.dropped += 1

    def send(data: bytes | str) -> None:
        """From the playback thread: one message, waiting until the socket took it."""
        try:
            asyncio.run_coroutine_threadsafe(send_counted(data), loop).result(SEND_TIMEOUT)
        except concurrent.futures.TimeoutError as e:  # a viewer that stopped reading
            try:
                loop.call_soon_threadsafe(dropped)
            except RuntimeError:  # loop closed at shutdown
                pass
            raise PlaybackStopped from e
        except Exception as e:  # closed socket, stopped loop
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
        with counts.client(), ended_session(request, session) as session_ended:
            waiting: list[asyncio.Future[Any]] = [reader, finished, session_ended]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if session_ended.done():
                control.stop()
                await close_ended(ws, session_ended.result())
        if finished.done() and not ws.closed:
            error = finished.result()
            if error:
                await refuse(ws, CLOSE_NOT_READY, error)
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


def _number(message: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = message.get(name)
    if not isinstance(value, int | float | str):  # the h5s player sends numbers; older pages strings
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int of hundreds of digits
        return None
    return number if low <= number <= high else None


async def _read_commands(ws: web.WebSocketResponse, control: PlaybackControl) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        message = client_message(msg.data)
        if message is None:
            continue  # "keepalive" from older players, or noise
        cmd = message.get("cmd")
        if cmd == "H5_PAUSE":
            control.pause()
        elif cmd in ("H5_RESUME", "H5_START"):
            control.resume()
        elif cmd == "H5_SEEK":
            seconds = _number(message, "nSeekTime", 0.0, MAX_RANGE)
            if seconds is None:
                await error_event(ws, "nSeekTime must be seconds from begintime")
            else:
                control.seek(seconds)
        elif cmd == "H5_SPEED":
            speed = _number(message, "nSpeed", *SPEEDS)
            if speed is None:
                await error_event(ws, f"nSpeed must be {SPEEDS[0]} to {SPEEDS[1]}")
            else:
                control.set_speed(speed)
