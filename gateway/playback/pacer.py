"""Playback of recordings: the files covering a time range as one paced fMP4 stream.

The recordings of a range are stitched onto one timeline, in seconds from the playback's
origin (the requested begin time, or the keyframe just before it when the range starts
inside a GOP). A gap between files stays a gap in the timeline (the player steps over
it) and costs no waiting here. One thread per viewer demuxes the files with PyAV (no
decoding), turns packets into moof+mdat with the project's box writer and sends them at
real time × speed, a little ahead (LEAD) so the browser's buffer never runs dry. The
viewer's commands (pause, resume, seek, speed) reach the thread through `PlaybackControl`.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gateway.formats.fmp4 import fragment, init_segment
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams
from gateway.ingest.packets import PacketReader

log = logging.getLogger(__name__)

LEAD = 1.0  # seconds of media sent ahead of what the viewer is due to show
SEND_EVERY = 0.2  # seconds of media per message once paced (5 sends a second, not one per frame)
GAP_SKIP = 2.0  # media further ahead than LEAD + this is a gap: re-anchor instead of waiting
BATCH_BYTES = 256 * 1024  # one WebSocket message holds due fragments up to about this much
SPEEDS = (0.25, 8.0)
REORDER = 2.0  # seconds of a file's packets read ahead to send them in time order


@dataclass(frozen=True)
class Segment:
    """One recording file placed on the playback timeline."""

    path: Path
    offset: float  # seconds from the requested begin to the file's first frame (negative: before it)
    duration: float

    @property
    def end(self) -> float:
        return self.offset + self.duration


def time_base(stream: av.stream.Stream) -> Fraction:
    if stream.time_base is None:  # an MP4 track always has one
        raise ValueError("a track without a time base")
    return stream.time_base


def first_frame(video: av.video.stream.VideoStream) -> float:
    """File seconds of the first video frame: the instant the index's `start` stands for."""
    return float(video.start_time * time_base(video)) if video.start_time is not None else 0.0


def seek_file(container: av.container.InputContainer, video: av.video.stream.VideoStream, seconds: float) -> None:
    """To the keyframe at or before file second `seconds` (a millisecond of slack, so a
    keyframe exactly there is not missed by rounding)."""
    container.seek(round((seconds + 0.001) / time_base(video)), stream=video, backward=True)


class PlaybackStopped(Exception):
    """The viewer went away (or the socket failed): the thread ends quietly."""


class PlaybackControl:
    """The viewer's commands, set from the event loop and read by the playback thread.

    It also keeps the clock: which timeline second the viewer is due to see now. A
    command re-anchors it under the lock, so pauses and speed changes count from the
    moment they came.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.stopped = False
        self.paused = False
        self.speed = 1.0
        self.seek_to: float | None = None  # seconds from the requested begin time
        self._media = 0.0
        self._wall = time.monotonic()

    def _due(self) -> float:
        if self.paused:
            return self._media
        return self._media + (time.monotonic() - self._wall) * self.speed

    def due(self) -> float:
        """The timeline second the viewer should be showing now."""
        with self._cond:
            return self._due()

    def anchor(self, media: float) -> None:
        with self._cond:
            self._media, self._wall = media, time.monotonic()

    def _command(self, **changes: object) -> None:
        with self._cond:
            self._media, self._wall = self._due(), time.monotonic()
            for name, value in changes.items():
                setattr(self, name, value)
            self._cond.notify_all()

    def stop(self) -> None:
        self._command(stopped=True)

    def pause(self) -> None:
        self._command(paused=True)

    def resume(self) -> None:
        self._command(paused=False)

    def seek(self, seconds: float) -> None:
        self._command(seek_to=seconds)

    def set_speed(self, speed: float) -> None:
        self._command(speed=speed)

    def take_seek(self) -> float | None:
        with self._cond:
            target, self.seek_to = self.seek_to, None
            return target

    def wait(self, seconds: float | None) -> None:
        """Sleep up to `seconds` (None: until a command), waking at once on any command."""
        with self._cond:
            if not self.stopped and self.seek_to is None:
                self._cond.wait(seconds)


Send = Callable[[bytes | str], None]  # blocking, thread-safe; raises when the viewer is gone


class Playback:
    """Plays `segments` (sorted, on a timeline whose 0 is the requested begin) up to `length`
    seconds, through `send`. Runs in its own thread; `done` is called when it ends."""

    def __init__(
        self,
        segments: list[Segment],
        length: float,
        control: PlaybackControl,
        send: Send,
        done: Callable[[str | None], None],
    ):
        self.segments = segments
        self.length = length
        self.control = control
        self.send = send
        self.done = done
        self.origin = 0.0  # how far the timeline starts before the requested begin (a GOP at most)
        self.params: StreamParams | None = None
        self._mime_sent = False
        self._init_sent = False
        self.sequence = 0
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._thread = threading.Thread(target=self._run, name="playback", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        error = None
        try:
            self._play()
        except PlaybackStopped:
            pass
        except (av.error.FFmpegError, OSError) as e:
            log.warning("playback: cannot read a recording: %s", e)
            error = "cannot read the recording"
        except Exception:
            log.exception("playback failed")
            error = "internal error"
        self.done(error)

    # -- the timeline ---------------------------------------------------------------

    def _play(self) -> None:
        position = 0.0  # seconds from the requested begin
        self.origin = max(0.0, -self._first_keyframe())
        self._event({"type": "H5_PLAYBACK_START", "nOrigin": round(self.origin, 3), "nDuration": round(self.length, 3)})
        while True:
            seeked = self._play_from(position)
            if seeked is None:
                self._flush()
                self._event({"type": "H5_PLAYBACK_END"})
                return
            position = seeked

    def _play_from(self, position: float) -> float | None:
        """Send media from `position` to the end; a seek's target if one interrupts it."""
        self.control.anchor(position + self.origin)
        for segment in self.segments:
            if segment.end <= position:
                continue
            try:
                seeked = self._play_segment(segment, max(0.0, position - segment.offset))
            except (av.error.FFmpegError, OSError) as e:  # e.g. removed by retention meanwhile
                log.warning("playback: skipping %s: %s", segment.path.name, e)
                seeked = None
            if seeked is not None:
                return seeked
            # Overlapping files (a manual recording beside the continuous one): the next
            # one goes on from where this one ended.
            position = max(position, segment.end)
            if position >= self.length:
                break
        return None

    def _first_keyframe(self) -> float:
        """Seconds from the requested begin to the keyframe at or before it (where the
        first file's media starts; positive when the recordings start later)."""
        for segment in self.segments:
            if segment.end > 0:
                within = max(0.0, -segment.offset)
                with av.open(str(segment.path)) as container:
                    video = container.streams.video[0]
                    start = first_frame(video)
                    seek_file(container, video, within + start)
                    for packet in container.demux(video):
                        if packet.pts is not None and packet.is_keyframe:
                            return segment.offset + float(packet.pts * time_base(video)) - start
                return segment.offset + within
        return 0.0

    def _play_segment(self, segment: Segment, within: float) -> float | None:
        """Send one file's media from `within` seconds into it; a seek's target if one comes."""
        with av.open(str(segment.path)) as container:
            session = PacketReader(container, enable_audio=True)
            video = session.video_stream
            if video is None or session.video is None:
                log.warning("playback: %s has no H.264 video; skipped", segment.path.name)
                return None
            self._params(session.params)
            start = first_frame(video)
            if within > 0:
                seek_file(container, video, within + start)
            for at, item in self._in_time_order(container, session, segment.offset + self.origin - start):
                if at >= self.length + self.origin:
                    return None
                seeked = self._due(at)
                if seeked is not None:
                    return seeked
                self._queue(item)
        return None

    @staticmethod
    def _in_time_order(
        container: av.container.InputContainer, session: PacketReader, shift: float
    ) -> Iterator[tuple[float, MediaPacket]]:
        """The file's packets from its first keyframe on, as (timeline second, packet) in
        time order: an fMP4 fragment stores its video run before its audio run, and sent
        in file order the audio would trail the video by a whole fragment."""
        video = session.video_stream
        ticks = {"video": VIDEO_TIMESCALE, "audio": session.audio.sample_rate if session.audio else 1}
        streams = [s for s in (video, session.audio_stream) if s is not None]
        pending: list[tuple[float, int, MediaPacket]] = []
        newest, count, started = 0.0, 0, False
        for packet in container.demux(streams):
            if packet.size == 0:
                continue
            if packet.stream is video:
                items, _ = session.video_packets(packet)
                if not started:
                    items = items if items and items[0].keyframe else []
                    started = bool(items)
            elif started:
                items = session.audio_packets(packet)
            else:
                continue
            for item in items:
                rate = ticks[item.kind]
                offset = round(shift * rate)
                item.dts, item.pts = max(0, item.dts + offset), max(0, item.pts + offset)
                at = item.dts / rate
                newest = max(newest, at)
                heapq.heappush(pending, (at, count, item))
                count += 1
            while pending and newest - pending[0][0] > REORDER:
                at, _, item = heapq.heappop(pending)
                yield at, item
        while pending:
            at, _, item = heapq.heappop(pending)
            yield at, item

    # -- pacing and commands -----------------------------------------------------------

    def _due(self, at: float) -> float | None:
        """Wait until media at timeline second `at` may be sent; a seek's target if one comes."""
        control = self.control
        while True:
            if control.stopped:
                raise PlaybackStopped
            if control.seek_to is not None:
                return self._seek()
            ahead = at - control.due()
            if ahead <= LEAD:
                return None
            if ahead > LEAD + GAP_SKIP and not control.paused:
                control.anchor(at - LEAD)  # a gap between recordings: no waiting over it
                return None
            self._flush()
            # Sleep past the due time by SEND_EVERY: what is then due goes in one message.
            control.wait(None if control.paused else min(ahead - LEAD + SEND_EVERY, 0.5))

    def _seek(self) -> float:
        target = self.control.take_seek()
        assert target is not None
        target = min(max(0.0, target), self.length)
        self._batch, self._batch_size = [], 0
        # The player drops what it holds (an init segment not yet appended among it) and
        # shows `nTime` once the new media is in: the init segment comes again first.
        self._event({"type": "H5_SEEK", "nSeekTime": round(target, 3), "nTime": round(target + self.origin, 3)})
        self._init_sent = False
        return target

    def _params(self, params: StreamParams) -> None:
        if params == self.params and self._init_sent:
            return
        self.params = params
        self._flush()
        if not self._mime_sent:
            self.send(params.mime.encode("ascii"))
            self._mime_sent = True
        self.send(init_segment(params))
        self._init_sent = True

    def _queue(self, packet: MediaPacket) -> None:
        self.sequence += 1
        data = fragment(self.sequence, packet.kind, [packet])
        self._batch.append(data)
        self._batch_size += len(data)
        if self._batch_size >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_size = self._batch, [], 0
            self.send(b"".join(batch))

    def _event(self, event: dict) -> None:
        self._flush()
        self.send(json.dumps(event))
