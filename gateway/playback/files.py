"""The media store's files over HTTP: GET /mediastore/record/...mp4 and
/mediastore/snapshot/...jpg (?session=S), with Range requests (206); only under record/
and snapshot/, never the index, never a directory listing, nothing outside the store.
(DownloadRecord, one MP4 of a time range, is api/download.py.)"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from aiohttp import web

from gateway.auth import AuthError
from gateway.web.errors import fail
from gateway.web.request import gateway, session_from

log = logging.getLogger(__name__)

SERVED_KINDS = ("record", "snapshot")


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
    path = store_file(gateway(request).settings.system.mediastore_dir, relative)
    if path is None:
        return fail(404, f"no file {relative[:200]!r} in the media store")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=60"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/mediastore/{path:.+}", mediastore_file)
