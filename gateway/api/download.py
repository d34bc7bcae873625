"""DownloadRecord: one MP4 of a token's recordings between two instants (ISO 8601 as
Search takes them), stitched across segments by remuxing; at most 24 hours."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path

import av
from aiohttp import web

from gateway.api.commands import command
from gateway.auth import Session
from gateway.playback.range import record_range
from gateway.playback.stitch import stitch
from gateway.store.timefmt import format_time, parse_offset
from gateway.web.errors import fail
from gateway.web.request import gateway

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


@command("DownloadRecord")
async def download_record(request: web.Request, _: Session | None) -> web.StreamResponse:
    gw = gateway(request)
    wanted = record_range(gw, request.query, "start", "end")
    root = gw.settings.system.mediastore_dir
    # Written to a temp file first (an MP4's moov goes first for players, and is known
    # only at the end), opened, unlinked at once: nothing is left behind, whatever happens.
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".mp4", dir=root)
    os.close(fd)
    try:
        await asyncio.to_thread(stitch, wanted.segments(gw), wanted.end - wanted.begin, Path(name))
        handle = await asyncio.to_thread(Path(name).open, "rb")
    except (OSError, ValueError, av.error.FFmpegError) as e:
        log.warning("DownloadRecord %s: %s", wanted.token, e)
        return fail(500, "cannot make the download (see the gateway log)")
    finally:
        os.unlink(name)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        # Named by the range's start in the zone the recordings' paths are written in.
        begin = format_time(datetime.fromtimestamp(wanted.begin, parse_offset(wanted.entries[0].tz)))
        response = web.StreamResponse(
            headers={
                "Content-Type": "video/mp4",
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{wanted.token}-{begin}.mp4"',
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response
