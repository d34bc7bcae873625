"""Snapshot files: the current keyframe's JPEG written into the store and its index."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path

from gateway.outputs.snapshot.snapshotter import Snapshotter
from gateway.store.context import StoreContext
from gateway.store.index import MediaEntry
from gateway.store.layout import Place
from gateway.store.reconcile import TEMP_PREFIX


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename: a half-written JPEG never exists under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TEMP_PREFIX + path.name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def save_snapshot(
    ctx: StoreContext, snapshotter: Snapshotter, name: str, place: Place | None, timeout: float
) -> MediaEntry:
    """A JPEG of the stream's current keyframe written into the store (`place` None: where
    the time now says), indexed; StreamNotReady when the stream has no media in time."""
    jpeg = await snapshotter.jpeg(timeout)
    token = snapshotter.stream.token
    now = time.time()
    place = place or Place.at("snapshot", token, datetime.fromtimestamp(now).astimezone())
    path = place.free_path(ctx.root, name, ctx.busy)
    ctx.busy.add(path)
    try:
        await asyncio.get_running_loop().run_in_executor(ctx.io, _write_atomically, ctx.root / path, jpeg)
    finally:
        ctx.busy.discard(path)
    entry = MediaEntry("snapshot", token, path, now, 0.0, len(jpeg), place.tz)
    ctx.index.put(entry)
    return entry
