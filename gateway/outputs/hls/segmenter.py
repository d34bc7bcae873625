"""One HLS segmenter per stream, shared by every HLS client of it, kept in memory.

The segmenter cuts the hub's packets into fMP4 parts of about PART_TARGET (a keyframe
always starts a new part) and groups parts into segments that start at a keyframe once
the open one has reached the `hls` target duration. A complete segment's fMP4 is its
parts joined, so LL-HLS parts, HLS v2 segments and the MPEG-TS segments of HLS v1 (made
on first request, in order, by one TsWriter) all come from the same cut.

Players start from complete segments, so the first ones are made as early as they can be:
attaching to a live stream replays its cached GOP at once, so the first segment begins at
the cached keyframe (a real past segment: its wall-clock time is when those frames were
live), and it and the next ones up to START_SEGMENTS end at the next keyframe rather than
at the target duration.

It runs only while clients ask: the first request attaches it to the stream (acquiring an
on-demand source), and when no request has come for CLIENT_TIMEOUT target durations it
detaches, releases the stream and forgets every segment. Waiting requests (blocking
playlist reload, preload hints) are callbacks with a condition (`when`), called by the
change that fulfils it, so a new part answers exactly the requests that waited for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config.settings import HlsSettings
from gateway.formats.fmp4 import fragment_tracks, init_segment
from gateway.formats.mpegts import TsWriter
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams
from gateway.hub.stream import Stream

PART_TARGET = 0.2  # seconds: LL-HLS part length (a part may be cut short by a keyframe)
PART_TICKS = round(PART_TARGET * VIDEO_TIMESCALE)
CLIENT_TIMEOUT = 3  # target durations without a request before the segmenter stops
EXTRA_SEGMENTS = 2  # kept beyond the playlist window for clients a little behind
START_SEGMENTS = 3  # a GOP each at the start: Chromium's own HLS starts with no fewer (rules.FirstSegments)
EXPIRY_CHECK = 0.25  # seconds between checks for waiting requests that timed out


@dataclass
class Clock:
    """Maps the stream timeline to wall-clock time (EXT-X-PROGRAM-DATE-TIME)."""

    dts: int
    wall: float

    def at(self, dts: int) -> float:
        return self.wall + (dts - self.dts) / VIDEO_TIMESCALE


@dataclass(slots=True)
class _Waiter:
    ready: Callable[[], bool]
    callback: Callable[[bool], None]
    deadline: float  # loop time (time.monotonic)


@dataclass
class Part:
    index: int
    duration: float
    independent: bool
    data: bytes


@dataclass
class Segment:
    msn: int
    params: StreamParams
    init_id: int
    first_dts: int
    clock: Clock
    discontinuity: bool
    parts: list[Part] = field(default_factory=list)
    packets: list[MediaPacket] = field(default_factory=list)  # in arrival order, for TS
    duration: float = 0.0
    data: bytes | None = None  # fMP4, set when the segment is complete
    ts: bytes | None = None  # MPEG-TS, made on first request

    @property
    def complete(self) -> bool:
        return self.data is not None

    @property
    def start(self) -> float:
        """Wall-clock time of the first frame, for EXT-X-PROGRAM-DATE-TIME."""
        return self.clock.at(self.first_dts)


class HlsSegmenter:
    def __init__(self, stream: Stream, settings: HlsSettings):
        self.stream = stream
        self.segment_count = settings.segment_count
        self.target = settings.target_duration
        self.idle_timeout = CLIENT_TIMEOUT * self.target
        # Kept for the stream's life, so a client never sees numbers go backwards.
        self.next_msn = 0
        self.init_id = 0
        self.dropped_discontinuities = 0
        self.max_duration = float(self.target)
        self.part_target = PART_TARGET
        self.active = False
        self.last_request = 0.0
        self.version = 0  # bumped on every change (the HTTP side renders playlists once per version)
        self._waiting: list[_Waiter] = []  # requests waiting for a part or segment
        self._expiry: asyncio.TimerHandle | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._ts_lock = asyncio.Lock()
        self._clear()

    def _clear(self) -> None:
        self.segments: list[Segment] = []  # oldest first; the last one may be open
        self.inits: dict[int, bytes] = {}
        self.params: StreamParams | None = None
        self._pending: list[MediaPacket] = []  # the open part, in arrival order
        self._discontinuity = False
        self._session: float | None = None
        self._clock: Clock | None = None
        self._last_video_dts = 0
        self._video_end: int | None = None  # where the next part's video begins (see _placed)
        self._fragments = 0
        self._ts = TsWriter()
        self._ts_next: int | None = None  # the msn the TsWriter continues with

    # -- lifetime ------------------------------------------------------------------

    def touch(self) -> None:
        """An HLS client asked for something: segment if idle, and keep going a while."""
        self.last_request = time.monotonic()  # the loop's clock (asyncio uses monotonic)
        if self.active:
            return
        loop = asyncio.get_running_loop()
        self.active = True
        self.stream.acquire()
        self.stream.attach(self)
        if self._clock is not None:
            # attach() replayed the cached GOP at once: its newest frame is the one live now.
            self._clock.dts, self._clock.wall = self._last_video_dts, time.time()
        self._idle_handle = loop.call_later(self.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_request
        if idle >= self.idle_timeout and not self._waiting:
            self.stop()
        else:
            self._idle_handle = loop.call_later(max(0.5, self.idle_timeout - idle), self._check_idle)

    def stop(self) -> None:
        """No client left: detach, release the stream, forget every segment."""
        if not self.active:
            return
        self.active = False
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.stream.detach(self)
        self.stream.release()
        self._clear()
        self._notify()

    def close(self) -> None:
        """The stream is going away: answer every waiting request and stop."""
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {"nHlsSegments": len(self.segments)}  # in memory only while HLS clients poll

    # -- waiting for media ---------------------------------------------------------

    def _notify(self) -> None:
        """Something changed: answer the waiters whose condition now holds (all, when stopped)."""
        self.version += 1
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        still = []
        for waiter in waiting:
            if not self.active:
                waiter.callback(False)
            elif waiter.ready():
                waiter.callback(True)
            else:
                still.append(waiter)
        self._waiting = still + self._waiting
        self.last_request = time.monotonic()

    def when(self, ready: Callable[[], bool], timeout: float, callback: Callable[[bool], None]) -> None:
        """Call `callback(True)` once `ready()` holds (checked on every change), or
        `callback(False)` after about `timeout` seconds or when the segmenter stops. No task
        and no timer per waiter: a blocked playlist request costs one list entry."""
        loop = asyncio.get_running_loop()
        self._waiting.append(_Waiter(ready, callback, loop.time() + timeout))
        if self._expiry is None:
            self._expiry = loop.call_later(EXPIRY_CHECK, self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = [w for w in self._waiting if w.deadline <= now]
        if late:
            self._waiting = [w for w in self._waiting if w.deadline > now]
            for waiter in late:
                waiter.callback(False)
            self.last_request = now
        self._expiry = loop.call_later(EXPIRY_CHECK, self._expire) if self._waiting else None

    # -- what clients ask for ------------------------------------------------------

    @property
    def open_segment(self) -> Segment | None:
        return self.segments[-1] if self.segments and not self.segments[-1].complete else None

    @property
    def complete_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.complete]

    def segment(self, msn: int) -> Segment | None:
        for s in reversed(self.segments):  # clients ask near the live edge
            if s.msn == msn:
                return s
        return None

    def has_segments(self, count: int = 1) -> bool:
        """At least `count` complete segments (all but an open last one are complete)."""
        segments = self.segments
        return len(segments) - (segments[-1].data is None if segments else 0) >= count

    def has_part(self, msn: int, index: int) -> bool:
        """Part `index` of segment `msn` exists, or (for a finished segment with fewer parts)
        part 0 of the next one does, as a blocking playlist request for it expects."""
        seg = self.segment(msn)
        if seg is None:
            return bool(self.segments) and msn < self.segments[0].msn
        if index < len(seg.parts):
            return True
        return seg.complete and self.has_part(msn + 1, 0)

    def part_gone(self, msn: int, index: int) -> bool:
        """The part will never exist: its segment ended with fewer parts, or was dropped."""
        seg = self.segment(msn)
        if seg is None:
            return not self.segments or msn < self.segments[0].msn
        return seg.complete and index >= len(seg.parts)

    async def ts(self, seg: Segment) -> bytes:
        """The MPEG-TS of a complete segment, made once; segments are written in order so
        continuity counters run on from one to the next."""
        async with self._ts_lock:
            if seg.ts is None and self._ts_next is not None and seg.msn < self._ts_next:
                # Behind the writer (a client that started further back): a writer of its own.
                seg.ts = await asyncio.to_thread(TsWriter().segment, seg.params, seg.packets)
            elif seg.ts is None:
                start = seg.msn if self._ts_next is None else self._ts_next
                for s in self.complete_segments:
                    if start <= s.msn <= seg.msn and s.ts is None:
                        s.ts = await asyncio.to_thread(self._ts.segment, s.params, s.packets)
                self._ts_next = seg.msn + 1
        assert seg.ts is not None
        return seg.ts

    # -- StreamOutput --------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        if self.params is not None:  # new codec parameters mid-stream: new init, discontinuity
            self._close_segment()
            self._discontinuity = True
        self.params = params
        self.init_id += 1
        self.inits[self.init_id] = init_segment(params)

    def on_packet(self, packet: MediaPacket) -> None:
        if self.params is None:
            return
        if packet.kind == "audio":
            if self.params.audio is not None and self.open_segment is not None:
                self._pending.append(packet)
            return
        if packet.kind != "video":
            return  # G.711 beside its AAC transcode is WebRTC's, not ours
        self._last_video_dts = packet.dts
        if packet.keyframe:
            if self._session is not None and self._session != self.stream.online_since:
                self._discontinuity = True  # the camera reconnected
            self._session = self.stream.online_since
            seg = self.open_segment
            # Half a frame of slack: camera clocks jitter, and a GOP of exactly the target
            # must not grow into a segment of two.
            elapsed = (packet.dts - seg.first_dts + packet.duration / 2) / VIDEO_TIMESCALE if seg else 0
            # Fewer than START_SEGMENTS complete segments (the open one is the last): players wait for them.
            if seg is None or self._discontinuity or elapsed >= self.target or len(self.segments) <= START_SEGMENTS:
                self._start_segment(packet)
            elif any(p.kind == "video" for p in self._pending):
                self._close_part()
        if self.open_segment is None:
            return  # waiting for a keyframe
        # The open part's length with this frame, on the parts' timeline (see _placed).
        if self._video_end is None:
            self._video_end = packet.dts
        half = packet.duration // 2
        if packet.dts + packet.duration - self._video_end > PART_TICKS + half and any(
            p.kind == "video" for p in self._pending
        ):
            self._close_part()  # a frame after a gap: it begins the next part, not this one
        self._pending.append(packet)
        # Cut when one more frame would overshoot the target by more than half a frame.
        if packet.dts + packet.duration - self._video_end >= PART_TICKS - half:
            self._close_part()

    # -- cutting -------------------------------------------------------------------

    def _start_segment(self, keyframe: MediaPacket) -> None:
        assert self.params is not None
        self._close_segment()
        discontinuity = self._discontinuity and bool(self.segments)
        if self._clock is None or self._discontinuity:
            self._clock = Clock(keyframe.dts, time.time())
        self._discontinuity = False
        self.segments.append(
            Segment(self.next_msn, self.params, self.init_id, keyframe.dts, self._clock, discontinuity)
        )
        self.next_msn += 1
        self._notify()

    def _close_part(self) -> None:
        seg = self.open_segment
        assert seg is not None
        video = self._placed([p for p in self._pending if p.kind == "video"])
        audio = [p for p in self._pending if p.kind == "audio"]
        self._fragments += 1
        data = fragment_tracks(self._fragments, [("video", video), ("audio", audio)])
        duration = sum(p.duration for p in video) / VIDEO_TIMESCALE
        self.part_target = max(self.part_target, round(duration, 3))
        seg.parts.append(Part(len(seg.parts), duration, video[0].keyframe, data))
        seg.packets += self._pending
        self._pending = []
        self._notify()

    def _placed(self, video: list[MediaPacket]) -> list[MediaPacket]:
        """A part's video frames on one unbroken timeline: each starts where the one before
        it ends (the last part's last frame too) and lasts until the next one's decode time.

        An fMP4 sample starts where the one before it ends, and the hub's durations are
        estimates (camera clocks jitter, a loaded camera drops frames). A part's last frame
        keeps its estimate, so the next part, placed at its first frame's decode time,
        could begin more than two frames after that end, or before the last frame: both
        are a discontinuity to MSE (Chromium drops every frame until the next keyframe,
        hls.js loops on the part). So a part begins where the last one ended, and its first
        frame's decode time moves by that jitter (with its presentation time); parts are
        cut by their length on this timeline (on_packet). Frames that are where they belong
        are kept as they are; others are copied (packets are shared)."""
        at = self._video_end
        assert at is not None
        for i, frame in enumerate(video):
            end = max(video[i + 1].dts, at + 1) if i + 1 < len(video) else at + frame.duration
            if frame.dts != at or frame.duration != end - at:
                video[i] = replace(frame, dts=at, pts=frame.pts + at - frame.dts, duration=end - at)
            at = end
        self._video_end = at
        return video

    def _close_segment(self) -> None:
        """Finish the open segment (its last part too); drop segments beyond the window."""
        seg = self.open_segment
        if seg is None:
            return
        if any(p.kind == "video" for p in self._pending):
            self._close_part()
        # Audio-only leftovers stay pending: they open the next segment's first part.
        if not seg.parts:
            self.segments.pop()
            return
        seg.duration = sum(p.duration for p in seg.parts)
        seg.data = b"".join(p.data for p in seg.parts)
        self.max_duration = max(self.max_duration, round(seg.duration))
        while len(self.segments) > self.segment_count + EXTRA_SEGMENTS:
            self.dropped_discontinuities += self.segments.pop(0).discontinuity
        used = {s.init_id for s in self.segments} | {self.init_id}
        self.inits = {k: v for k, v in self.inits.items() if k in used}
        self._notify()
