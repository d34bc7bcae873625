"""The media store over HTTP: its files, and MP4 downloads of a time range.

GET /mediastore/record/...mp4, /mediastore/snapshot/...jpg   (?session=S)
    a file of the store, with Range requests (206); only under record/ and snapshot/,
    never the index, never a directory listing, nothing outside the store.
GET /api/v1/DownloadRecord?token&start&end&session[&filename]
    one MP4 of a token's recordings between two instants (ISO 8601 as Search takes
    them), stitched across segments by remuxing; at most 24 hours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path, PurePosixPath

import av
from aiohttp import web

from gateway.api.v1 import GATEWAY_KEY, command, fail, gateway, session_from
from gateway.auth import AuthError, Session
from gateway.playback.socket import RangeError, record_range
from gateway.playback.stitch import stitch
from gateway.store.timefmt import format_time, parse_offset

log = logging.getLogger(__name__)

SERVED_KINDS = ("record", "snapshot")
CHUNK = 256 * 1024


def store_file(root: Path, relative: str) -> Path | None:
    """The file `relative` names inside the store, or None when it is not one we serve:
    outside record/ and snapshot/, with '..' or empty parts, or a symlink leading out."""
    parts = PurePosixPath(relative).parts
    if len(parts) < 2 or parts[0] not in SERVED_KINDS or any(p in ("", ".", "..") or "\\" in p for p in parts):
        return None
    path = (root / Path(*parts)).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


async def mediastore_file(request: web.Request) -> web.StreamResponse:
    try:
        session_from(request)
    except AuthError as e:
        return fail(401, str(e))
    relative = request.match_info["path"]
    path = store_file(request.app[GATEWAY_KEY].config.mediastore_dir, relative)
    if path is None:
        return fail(404, f"no file {relative[:200]!r} in the media store")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=60"})


@command("DownloadRecord")
async def download_record(request: web.Request, _: Session | None) -> web.StreamResponse:
    gw = gateway(request)
    try:
        wanted = record_range(gw, request.query, "start", "end")
    except RangeError as e:
        return fail(e.status, e.reason)
    root = gw.config.mediastore_dir
    # Written to a temp file first (an MP4's moov goes first for players, and is known
    # only at the end), opened, unlinked at once: nothing is left behind, whatever happens.
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".mp4", dir=root)
    os.close(fd)
    try:
        await asyncio.to_thread(stitch, wanted.segments(gw), wanted.end - wanted.begin, Path(name))
        handle = open(name, "rb")
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/mediastore/{path:.+}", mediastore_file)
