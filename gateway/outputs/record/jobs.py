"""The recording jobs of every stream, each a Recorder.

Three kinds per stream: one-off `Record`/`PathRecord` jobs (a fixed duration), at most
one manual job (`ManualRecordStart/Stop`) and at most one continuous job (the source's
`bRec`, in segments of system.nRecordSegmentSec).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from gateway.hub.stream import Stream
from gateway.outputs.record.recorder import RecordCounts, Recorder
from gateway.store.context import StoreContext
from gateway.store.layout import Place


class RecordingJobs:
    def __init__(self, ctx: StoreContext, segment_seconds: int):
        self.ctx = ctx
        self.segment_seconds = segment_seconds
        self.jobs: set[Recorder] = set()
        self.manual: dict[str, Recorder] = {}
        self.continuous: dict[str, Recorder] = {}
        self.counts: dict[str, RecordCounts] = {}  # by token, for /metrics: kept when the source goes

    def running(self, token: str) -> int:
        """How many recordings of the token are under way."""
        return sum(job.stream.token == token for job in self.jobs)

    async def stop(self) -> None:
        """Finish every file and wait until they and the index are written."""
        jobs = list(self.jobs)
        for job in jobs:
            job.stop()
        writes = [job.last_write for job in jobs if job.last_write is not None]
        await asyncio.gather(*writes, return_exceptions=True)  # errors are logged by the recorders

    def _job(
        self, stream: Stream, name: str, place: Place | None, duration: float | None, segment: float | None
    ) -> Recorder:
        counts = self.counts.setdefault(stream.token, RecordCounts())
        job = Recorder(self.ctx, stream, name, place, duration, segment, self._ended, counts)
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

    def set_continuous(self, stream: Stream, enabled: bool) -> None:
        """Start or stop the stream's continuous recording (its source's bRec)."""
        job = self.continuous.get(stream.token)
        if enabled and job is None:
            self.continuous[stream.token] = self._job(stream, stream.token, None, None, self.segment_seconds)
        elif not enabled and job is not None:
            job.stop()

    def forget(self, token: str) -> None:
        """The source is being deleted: finish its recordings (the files stay)."""
        for job in [j for j in self.jobs if j.stream.token == token]:
            job.stop()
