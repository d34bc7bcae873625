"""DownloadRecord: one MP4 of a token's recordings between two instants (ISO 8601 as
Search takes them), stitched across segments by remuxing; at most 24 hours.

The MP4 is fragmented and streamed to the client as it is remuxed: nothing is written to
the store (a download cannot fill the disk and make retention delete recordings), the
remux runs only a few chunks ahead of what the client has read, a client that reads
nothing for `system.nDownloadWriteTimeoutSec` is dropped, and downloads at once are
limited gateway-wide (503) and per user (429).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime

import av
from aiohttp import web

from gateway.api.commands import command
from gateway.api.schema import TIME_SCHEMA, shaped, text, token
from gateway.auth import Session
from gateway.config.settings import DownloadSettings
from gateway.hub.output import OutputCounts
from gateway.playback.pacer import Segment
from gateway.playback.range import RecordRange, record_range
from gateway.playback.stitch import stitch
from gateway.store.timefmt import format_time, parse_offset
from gateway.web.errors import ApiError, fail
from gateway.web.request import gateway

log = logging.getLogger(__name__)

CHUNK = 64 * 1024  # a client must take one within the write timeout
AHEAD = 8  # chunks the remux may be ahead of the client


class DownloadLimits:
    """Downloads running, in all and per user; a slot is held for a download's whole life.
    Remuxes run on threads of their own: a stalled client's never holds up others'
    asyncio.to_thread work."""

    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self.running: Counter[str] = Counter()
        self.threads = ThreadPoolExecutor(settings.at_most, thread_name_prefix="download")

    @contextmanager
    def slot(self, who: str) -> Iterator[None]:
        at_most, per_user = self.settings.at_most, self.settings.at_most_per_user
        if self.running.total() >= at_most:
            raise ApiError(503, f"{at_most} downloads are running, the most at once; try again when one ends")
        if self.running[who] >= per_user:
            raise ApiError(429, f"you have {per_user} downloads running, the most at once; try again when one ends")
        self.running[who] += 1
        try:
            yield
        finally:
            self.running[who] -= 1
            if not self.running[who]:
                del self.running[who]


DOWNLOAD_LIMITS_KEY = web.AppKey("download_limits", DownloadLimits)


class ChunkPipe:
    """The remux thread's output, handed to the event loop CHUNK bytes at a time; the
    thread waits while AHEAD chunks are unsent, and its next write fails once closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the end
        self._room = threading.Semaphore(AHEAD)
        self._buffer = bytearray()
        self._closed = threading.Event()

    def write(self, data: bytes) -> int:  # the thread's side, called by PyAV
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        self._room.acquire()
        if self._closed.is_set():
            raise BrokenPipeError("the download was ended")
        self._loop.call_soon_threadsafe(self._chunks.put_nowait, bytes(self._buffer))
        self._buffer.clear()

    def end(self, complete: bool) -> None:  # the thread's side, last
        if complete and self._buffer:
            self._send()
        self._loop.call_soon_threadsafe(self._chunks.put_nowait, None)

    async def next(self) -> bytes | None:
        """The next chunk (the previous one is taken as sent), or None at the end."""
        return await self._chunks.get()

    def sent(self) -> None:
        self._room.release()

    def close(self) -> None:
        """Ends the remux at its next write (a thread waiting for room wakes up)."""
        self._closed.set()
        self._room.release(AHEAD + 1)


def _remux(segments: list[Segment], length: float, pipe: ChunkPipe) -> None:
    complete = False
    try:
        stitch(segments, length, pipe)
        complete = True
    finally:
        pipe.end(complete)


@command(
    "DownloadRecord",
    params=(
        token(),
        shaped("start", TIME_SCHEMA, about="required unless filename is given"),
        shaped("end", TIME_SCHEMA, about="required unless filename is given"),
        text("filename", about="one recording's strPath (from Search) instead of the range"),
    ),
    media_type="video/mp4",
    errors=(429, 503),
)
async def download_record(request: web.Request, session: Session | None) -> web.StreamResponse:
    gw = gateway(request)
    wanted = record_range(gw, request.query, "start", "end")
    who = session.user if session is not None else f"address {request.remote}"  # logins off
    limits = request.app[DOWNLOAD_LIMITS_KEY]
    with limits.slot(who):
        loop = asyncio.get_running_loop()
        pipe = ChunkPipe(loop)
        remux = loop.run_in_executor(limits.threads, _remux, wanted.segments(gw), wanted.end - wanted.begin, pipe)
        counts = gw.recording_clients.setdefault(("download", wanted.token), OutputCounts(clients=0))
        try:
            with counts.client():
                return await _stream(request, wanted, pipe, remux, gw.settings.download.write_timeout, counts)
        finally:
            pipe.close()
            with suppress(Exception):
                await remux  # the thread ends at its next write; the slot is freed after it


async def _stream(
    request: web.Request,
    wanted: RecordRange,
    pipe: ChunkPipe,
    remux: asyncio.Future[None],
    write_timeout: float,
    counts: OutputCounts,
) -> web.StreamResponse:
    chunk = await pipe.next()
    if chunk is None:  # failed before its first chunk: an answer can still say so
        try:
            await remux
        except (OSError, ValueError, av.error.FFmpegError) as e:
            log.warning("DownloadRecord %s: %s", wanted.token, e)
            return fail(500, "cannot make the download (see the gateway log)")
    # Named by the range's start in the zone the recordings' paths are written in.
    begin = format_time(datetime.fromtimestamp(wanted.begin, parse_offset(wanted.entries[0].tz)))
    response = web.StreamResponse(
        headers={
            "Content-Type": "video/mp4",
            "Content-Disposition": f'attachment; filename="{wanted.token}-{begin}.mp4"',
        }
    )
    await response.prepare(request)
    try:
        while chunk is not None:
            await asyncio.wait_for(response.write(chunk), write_timeout)
            counts.bytes_out += len(chunk)
            pipe.sent()
            chunk = await pipe.next()
        await remux
        await response.write_eof()
    except TimeoutError:
        log.info("DownloadRecord %s: the client read nothing for %.0f s; dropped", wanted.token, write_timeout)
        counts.dropped += 1
        _drop(request)
    except ConnectionError:
        log.debug("DownloadRecord %s: the client went away", wanted.token)
    except (OSError, ValueError, av.error.FFmpegError) as e:
        log.warning("DownloadRecord %s: failed part way (%s); the client gets a cut-off answer", wanted.token, e)
        _drop(request)
    return response


def _drop(request: web.Request) -> None:
    """Close the connection at once, its unsent bytes discarded (no terminating chunk
    either, so the client sees the download is incomplete)."""
    if request.transport is not None:
        request.transport.abort()
