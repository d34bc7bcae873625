"""The media store at run time: recording jobs, snapshot files, retention.

Three kinds of recording job per stream, each a media.recorder.Recorder: one-off `Record`
/`PathRecord` jobs (a fixed duration), at most one manual job (`ManualRecordStart/Stop`) and
at most one continuous job (the source's `bRec`, in segments of system.nRecordSegmentSec).
At start the index is reconciled with the files, then retention runs now and every minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from gateway.config.file import Config
from gateway.hub.stream import Stream, StreamManager
from gateway.outputs.record.recorder import Recorder, StoreContext
from gateway.outputs.snapshot.snapshotter import Snapshotter
from gateway.store.index import MediaEntry, MediaIndex
from gateway.store.layout import Place
from gateway.store.reconcile import TEMP_PREFIX, reconcile
from gateway.store.retention import retention_pass

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 60.0


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TEMP_PREFIX + path.name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MediaStore:
    def __init__(self, config: Config, index: MediaIndex, streams: StreamManager):
        self.config = config
        self.streams = streams
        self.root = config.mediastore_dir
        self.ctx = StoreContext(self.root, index, ThreadPoolExecutor(1, thread_name_prefix="record-io"))
        self.jobs: set[Recorder] = set()
        self.manual: dict[str, Recorder] = {}
        self.continuous: dict[str, Recorder] = {}
        self._retention_task: asyncio.Task | None = None

    @property
    def index(self) -> MediaIndex:
        return self.ctx.index

    @property
    def segment_seconds(self) -> int:
        return self.config.get("system", "nRecordSegmentSec")

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Reconcile (before any recorder writes), start continuous jobs and the retention timer."""
        self.root.mkdir(parents=True, exist_ok=True)
        reconcile(self.root, self.index)
        for conf in self.config.sources.values():
            if conf["bRec"]:
                self.set_continuous(conf.token, True)
        self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
        jobs = list(self.jobs)
        for job in jobs:
            job.stop()
        writes = [job.last_write for job in jobs if job.last_write is not None]
        await asyncio.gather(*writes, return_exceptions=True)  # files finished, index updated
        self.ctx.io.shutdown()

    async def _retention_loop(self) -> None:
        while True:
            try:
                self.retention()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(RETENTION_INTERVAL)

    def retention(self) -> int:
        system = self.config.raw["system"]
        days = {"record": system["nRecordInDay"], "snapshot": system["nSnapshotInDay"]}
        return retention_pass(self.root, self.index, days, system["nDiskFullPercent"], self.ctx.busy)

    # -- recording jobs -----------------------------------------------------------------

    def _job(
        self, stream: Stream, name: str, place: Place | None, duration: float | None, segment: float | None
    ) -> Recorder:
        job = Recorder(self.ctx, stream, name, place, duration, segment, self._ended)
        self.jobs.add(job)
        job.start()
        return job

    def _ended(self, job: Recorder) -> None:
        self.jobs.discard(job)
        token = job.stream.token
        if self.manual.get(token) is job:
            del self.manual[token]
        if self.continuous.get(token) is job:
            del self.continuous[token]

    def record(self, stream: Stream, name: str, place: Place | None, duration: float) -> Recorder:
        """`Record`/`PathRecord`: one file of `duration` s (place None: where its start says)."""
        place = place or Place.at("record", stream.token, datetime.now().astimezone())
        return self._job(stream, name, place, duration, None)

    def manual_start(self, stream: Stream, duration: float | None) -> Recorder:
        if stream.token in self.manual:
            raise ValueError(f"{stream.token} is already being recorded manually (ManualRecordStop first)")
        place = Place.at("record", stream.token, datetime.now().astimezone())
        job = self._job(stream, stream.token, place, duration, self.segment_seconds)
        self.manual[stream.token] = job
        return job

    def manual_stop(self, token: str) -> list[str]:
        job = self.manual.get(token)
        if job is None:
            raise ValueError(f"{token} is not being recorded manually")
        job.stop()
        return job.paths

    def set_continuous(self, token: str, enabled: bool) -> None:
        """Start or stop the source's continuous recording (its bRec), if its stream exists."""
        job = self.continuous.get(token)
        stream = self.streams.get(token)
        if enabled and job is None and stream is not None:
            self.continuous[token] = self._job(stream, token, None, None, self.segment_seconds)
        elif not enabled and job is not None:
            job.stop()

    def forget(self, token: str) -> None:
        """The source is being deleted: finish its recordings (the files stay)."""
        for job in [j for j in self.jobs if j.stream.token == token]:
            job.stop()

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(self, stream: Stream, name: str, place: Place | None, timeout: float) -> MediaEntry:
        """A JPEG of the current keyframe written into the store (temp file, then rename)."""
        jpeg = await Snapshotter.of(stream).jpeg(timeout)
        now = time.time()
        place = place or Place.at("snapshot", stream.token, datetime.fromtimestamp(now).astimezone())
        path = place.free_path(self.root, name, self.ctx.busy)
        self.ctx.busy.add(path)
        try:
            await asyncio.get_running_loop().run_in_executor(self.ctx.io, _write_atomically, self.root / path, jpeg)
        finally:
            self.ctx.busy.discard(path)
        entry = MediaEntry("snapshot", stream.token, path, now, 0.0, len(jpeg), place.tz)
        self.index.put(entry)
        return entry
