"""Recording: a hub output that remuxes a stream into fragmented MP4 files.

No decoding: the hub's H.264 and AAC packets go into moof+mdat fragments of about one
second (cut at keyframes), each appended and flushed as soon as it is complete, so a file
is playable while it is written and after a crash (kill -9 loses at most the fragment
being gathered). Finishing a file only writes the movie duration into fixed-size fields of
its moov (mvhd, mehd) in place. File I/O runs on one writer thread shared by all
recordings, which keeps each file's writes in order and the event loop free.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from gateway.formats.fmp4 import MOVIE_TIMESCALE, duration_field_offsets, fragment_tracks, init_segment
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.store.context import StoreContext
from gateway.store.index import MediaEntry
from gateway.store.layout import Place

log = logging.getLogger(__name__)

FRAGMENT_SECONDS = 1.0  # most a crash can lose
STALL_GRACE_SECONDS = 60.0  # a fixed-duration job ends this long after its duration in wall time


class RecordFile:
    """One MP4 file on disk; every method runs on the writer thread."""

    def __init__(self, path: Path):
        self.path = path
        self.size = 0
        self._file: BinaryIO | None = None
        self._duration_offsets: list[int] = []

    def open(self, init: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "xb")  # noqa: SIM115 - open across calls; never over an existing recording
        self._duration_offsets = duration_field_offsets(init)
        self.append(init)

    def append(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        self.size += len(data)

    def finish(self, seconds: float) -> None:
        """Patch the movie duration in (same-size fields: the file stays valid throughout)."""
        assert self._file is not None
        value = struct.pack(">I", min(round(seconds * MOVIE_TIMESCALE), 0xFFFFFFFF))
        for offset in self._duration_offsets:
            os.pwrite(self._file.fileno(), value, offset)
        self._file.close()
        self._file = None


@dataclass
class Segment:
    """The file being written and what the index says of it."""

    file: RecordFile
    entry: MediaEntry
    video_base: int  # 90 kHz dts of its first frame
    audio_base: int | None  # the same instant on the audio clock
    video_end: int = 0  # relative dts after the last written video frame
    sequence: int = 0
    video: list[MediaPacket] = field(default_factory=list)
    audio: list[MediaPacket] = field(default_factory=list)


@dataclass(slots=True)
class RecordCounts:
    """A stream's recording totals for /metrics: bytes written, and writes that failed."""

    bytes_written: int = 0
    errors: int = 0


class Recorder:
    """Records one stream into one file, or into consecutive segments cut at keyframes.

    `duration` (s) ends the recording after that much media; `segment` (s) starts a new file
    at the first keyframe after that much. `first_place`/`name` choose the first file's path
    (later segments go where their own start time says).
    """

    def __init__(
        self,
        ctx: StoreContext,
        stream: Stream,
        name: str,
        first_place: Place | None,
        duration: float | None,
        segment: float | None,
        on_end: Callable[[Recorder], None],
        counts: RecordCounts | None = None,
    ):
        self.ctx = ctx
        self.counts = counts or RecordCounts()
        self.stream = stream
        self.name = name
        self.duration = duration
        self.segment = segment
        self.on_end = on_end
        self.params: StreamParams | None = None
        self.paths: list[str] = []
        self.current: Segment | None = None
        self.ended = False
        self._first_dts: int | None = None  # 90 kHz, of the recording's first frame
        self._next_path: str | None = None
        self.last_write: asyncio.Future | None = None
        self._deadline: asyncio.TimerHandle | None = None
        if first_place is not None:
            self._next_path = first_place.free_path(ctx.root, name, ctx.busy)
            ctx.busy.add(self._next_path)
        self.loop = asyncio.get_running_loop()

    @property
    def first_path(self) -> str | None:
        return self._next_path or (self.paths[0] if self.paths else None)

    def start(self) -> None:
        self.stream.acquire()
        self.stream.attach(self)
        if self.duration is not None:
            # `duration` is media time; a source that stalls must not hold the job for ever.
            self._deadline = self.loop.call_later(self.duration + STALL_GRACE_SECONDS, self.stop)

    def stop(self) -> None:
        """Finish the file being written and leave the stream (idempotent)."""
        if self.ended:
            return
        self.ended = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.stream.detach(self)
        self.stream.release()
        self._finish()
        if self._next_path is not None:
            self.ctx.busy.discard(self._next_path)
            self._next_path = None
        self.on_end(self)

    # -- StreamOutput ------------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params != self.params and self.current is not None:
            self._finish()  # new codec parameters need a new init segment: a new file
        self.params = params

    def on_packet(self, packet: MediaPacket) -> None:
        if self.ended or self.params is None or self.params.video is None:
            return
        if packet.kind == "video":
            self._on_video(packet)
        elif packet.kind == "audio" and self.params.audio is not None and self.current is not None:
            seg = self.current
            if seg.audio_base is not None and packet.dts >= seg.audio_base:
                seg.audio.append(packet)
                if self._span(seg.audio, self.params.audio.sample_rate) >= 2 * FRAGMENT_SECONDS:
                    self._flush()  # video stopped: do not hold audio unboundedly

    def _on_video(self, packet: MediaPacket) -> None:
        if self._first_dts is None:
            if not packet.keyframe:
                return
            self._first_dts = packet.dts
        if self.duration is not None and packet.dts - self._first_dts >= self.duration * VIDEO_TIMESCALE:
            self.stop()
            return
        seg = self.current
        # Half a frame of slack, as the HLS segmenter has: a camera clock a hair slow must not
        # push the cut to the keyframe after (a 2 s segment of a 1 s GOP becoming 3 s).
        if (
            seg is not None
            and packet.keyframe
            and self.segment is not None
            and packet.dts - seg.video_base + packet.duration / 2 >= self.segment * VIDEO_TIMESCALE
        ):
            self._finish()
            seg = None
        if seg is None:
            if not packet.keyframe:
                return
            seg = self._open(packet)
        elif packet.keyframe or self._span(seg.video, VIDEO_TIMESCALE) >= FRAGMENT_SECONDS:
            self._flush()
        seg.video.append(packet)

    @staticmethod
    def _span(packets: list[MediaPacket], rate: int) -> float:
        return (packets[-1].dts - packets[0].dts) / rate if packets else 0.0

    # -- files -------------------------------------------------------------------------

    def _open(self, keyframe: MediaPacket) -> Segment:
        assert self.params is not None
        newest = max((p.dts for p in self.stream.gop.packets if p.kind == "video"), default=keyframe.dts)
        start = time.time() - max(0, newest - keyframe.dts) / VIDEO_TIMESCALE  # the GOP cache is replayed at once
        if self._next_path is not None:
            path, self._next_path = self._next_path, None
        else:
            place = Place.at("record", self.stream.token, datetime.fromtimestamp(start).astimezone())
            path = place.free_path(self.ctx.root, self.name, self.ctx.busy)
            self.ctx.busy.add(path)
        tz = path.split("/")[2].rsplit("TZ", 1)[1]
        audio = self.params.audio
        audio_base = keyframe.dts * audio.sample_rate // VIDEO_TIMESCALE if audio else None
        entry = MediaEntry("record", self.stream.token, path, start, 0.0, 0, tz)
        seg = Segment(RecordFile(self.ctx.root / path), entry, keyframe.dts, audio_base)
        self.current = seg
        self.paths.append(path)
        init = init_segment(self.params, with_duration=True)
        self._write(seg, seg.file.open, init)
        return seg

    def _flush(self) -> None:
        """Write the gathered packets as one fragment (on the writer thread)."""
        seg = self.current
        if seg is None or not (seg.video or seg.audio):
            return
        video = [_shifted(p, seg.video_base) for p in seg.video]
        audio = [_shifted(p, seg.audio_base or 0) for p in seg.audio]
        seg.sequence += 1
        data = fragment_tracks(seg.sequence, [("video", video), ("audio", audio)])
        if video:
            seg.video_end = video[-1].dts + video[-1].duration
        seg.video, seg.audio = [], []
        self._write(seg, seg.file.append, data)

    def _finish(self) -> None:
        seg = self.current
        if seg is None:
            return
        self._flush()
        self.current = None
        self._write(seg, seg.file.finish, seg.video_end / VIDEO_TIMESCALE, last=True)

    def _write(self, seg: Segment, action: Callable[..., None], arg: object, last: bool = False) -> None:
        seconds = seg.video_end / VIDEO_TIMESCALE
        size = len(arg) if isinstance(arg, bytes) else 0
        future = self.loop.run_in_executor(self.ctx.io, action, arg)
        future.add_done_callback(lambda f: self._written(f, seg, seconds, size, last))
        self.last_write = future

    def _written(self, future: asyncio.Future, seg: Segment, seconds: float, size: int, last: bool) -> None:
        """Back on the loop after a write (of `size` bytes): keep the index in step with the file."""
        error = future.exception()
        if error is not None:
            self.counts.errors += 1
            log.error("recording %s: cannot write %s: %s", self.stream.token, seg.entry.path, error)
            self.ctx.busy.discard(seg.entry.path)
            if self.current is seg:
                self.current = None
            self.stop()
            return
        self.counts.bytes_written += size
        seg.entry = MediaEntry(
            "record", seg.entry.token, seg.entry.path, seg.entry.start, seconds, seg.file.size, seg.entry.tz
        )
        self.ctx.index.put(seg.entry)
        if last:
            self.ctx.busy.discard(seg.entry.path)
            log.info("recording %s: finished %s (%.1f s)", self.stream.token, seg.entry.path, seconds)


def _shifted(packet: MediaPacket, base: int) -> MediaPacket:
    """A copy on the file's own clock (hub packets are shared by every output: never mutate)."""
    return MediaPacket(packet.kind, packet.dts - base, packet.pts - base, packet.duration, packet.keyframe, packet.data)
