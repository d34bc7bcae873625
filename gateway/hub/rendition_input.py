"""The input of an H.264 rendition Stream: one transcode of its H.265 source stream.

A rendition is a Stream like any other (its own GOP cache, outputs and linger); only its
input differs. Started by the rendition's first client, it holds the source stream
(acquire, attach) and hands its packets to one thread that decodes and encodes them
(formats/video_transcode.py); what comes out re-enters the event loop with
call_soon_threadsafe as the rendition's session and packets. Audio passes unchanged, in
order with the video. Stopped a linger after the rendition's last client, it releases the
source stream, which then lingers and stops by its own rule.

The hand-off to the thread is bounded: a thread that falls behind (a slow machine, a
burst) loses what is queued and starts again at the source's next keyframe, as a slow
client would. A source that turns out to be H.264 needs no transcode: its packets pass
through as they are, and no thread starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.formats.video_transcode import H264Transcoder, rendition_params
from gateway.hub.packet import MediaPacket, StreamParams

if TYPE_CHECKING:
    from gateway.hub.stream import Stream

log = logging.getLogger(__name__)

HANDOFF_SIZE = 64  # items (~1.5 s of 25 fps video with its audio) queued for the thread at most


class Handoff:
    """Packets and parameter changes from the event loop to the transcode thread; when
    full, what is queued is dropped and the next item taken is a source keyframe (the
    newest parameters are kept)."""

    def __init__(self, size: int = HANDOFF_SIZE):
        self.size = size
        self.skips = 0  # times the thread fell behind and skipped to a keyframe
        self._items: deque[MediaPacket | StreamParams] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._skipping = False

    def put(self, item: MediaPacket | StreamParams) -> None:
        with self._ready:
            if isinstance(item, MediaPacket):
                keyframe = item.kind == "video" and item.keyframe
                if len(self._items) >= self.size and not self._skipping:
                    self.skips += 1
                    newest = [i for i in self._items if isinstance(i, StreamParams)][-1:]
                    self._items.clear()
                    self._items.extend(newest)
                    self._skipping = True
                if self._skipping and not keyframe:
                    return
                self._skipping = False
            self._items.append(item)
            self._ready.notify()

    def get(self) -> MediaPacket | StreamParams | None:
        """The next item, waiting for one; None once closed."""
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            return None if self._closed else self._items.popleft()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify()


class RenditionInput:
    """The StreamInput of `source`'s H.264 rendition (hub/streams.py makes the pair)."""

    def __init__(self, source: Stream, height: int, kbps: int):
        self.source = source
        self.height = height  # nH264RenditionHeight: 0 keeps the source's size
        self.kbps = kbps  # nH264RenditionKbps: 0 from the output size
        self.transcodes = 0  # transcode threads started, for /metrics
        self.running: RunningRendition | None = None

    @property
    def transcoding(self) -> bool:
        """Whether a transcode thread is running now."""
        return self.running is not None and self.running.transcoding

    def start(self, stream: Stream) -> RunningRendition:
        self.running = RunningRendition(self, stream)
        return self.running

    def describe(self) -> dict[str, Any]:
        return {}


class RunningRendition:
    """One run of a rendition: subscribed to the source stream, feeding its thread."""

    def __init__(self, owner: RenditionInput, target: Stream):
        self.owner = owner
        self.target = target  # the rendition Stream
        self.loop = asyncio.get_running_loop()
        self.stopped = False
        self._handoff: Handoff | None = None  # with a thread, while the source is H.265
        self._thread: threading.Thread | None = None
        self._passthrough = False
        owner.source.acquire()
        owner.source.attach(self)

    @property
    def transcoding(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- RunningInput --------------------------------------------------------------

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._stop_thread()
        self.owner.source.detach(self)
        self.owner.source.release()
        if self.owner.running is self:
            self.owner.running = None

    # -- Subscriber of the source stream, in the event loop ----------------------------

    def on_params(self, params: StreamParams) -> None:
        self._passthrough = params.video is None or not params.video.hevc
        if self._passthrough:
            self._stop_thread()
            self.target.on_session_start(params)
            return
        if self._handoff is None:
            self._start_thread()
        assert self._handoff is not None
        self._handoff.put(params)

    def on_packet(self, packet: MediaPacket) -> None:
        if self._passthrough:
            self.target.on_packet(replace(packet))  # the target's timeline moves its own copy
        elif self._handoff is not None:
            self._handoff.put(packet)

    # -- the thread ------------------------------------------------------------------

    def _start_thread(self) -> None:
        self.owner.transcodes += 1
        self._handoff = Handoff()
        self._thread = threading.Thread(
            target=self._work, args=(self._handoff,), name=f"rendition {self.target.label}", daemon=True
        )
        self._thread.start()
        log.info("stream %s: H.264 rendition transcoding", self.target.label)

    def _stop_thread(self) -> None:
        if self._handoff is not None:
            self._handoff.close()
            self._handoff = None
            self._thread = None

    def _emit(self, handoff: Handoff, event: Callable[[Any], None], arg: Any) -> None:
        """Call `event(arg)` in the event loop, unless this thread's run is over by then."""

        def deliver() -> None:
            if handoff is self._handoff and not self.stopped:
                event(arg)

        self.loop.call_soon_threadsafe(deliver)

    def _work(self, handoff: Handoff) -> None:
        """The thread: transcode video, pass audio, until the hand-off closes. New source
        parameters make a new decoder and encoder, and with them a new session."""
        height, kbps = self.owner.height, self.owner.kbps
        params: StreamParams | None = None
        transcoder: H264Transcoder | None = None
        started = False  # the current encoder's first IDR (and session) went out
        try:
            while (item := handoff.get()) is not None:
                if isinstance(item, StreamParams):
                    params, transcoder, started = item, None, False
                elif item.kind != "video":
                    if started:
                        self._emit(handoff, self.target.on_packet, replace(item))
                elif params is not None and params.video is not None:
                    if transcoder is None:
                        transcoder = H264Transcoder(params.video, height, kbps, item.duration)
                    for packet in transcoder.transcode(item):
                        if not started and packet.keyframe and transcoder.params is not None:
                            started = True
                            self._emit(
                                handoff, self.target.on_session_start, rendition_params(params, transcoder.params)
                            )
                        if started:
                            self._emit(handoff, self.target.on_packet, packet)
        except Exception as e:
            log.exception("stream %s: H.264 rendition failed", self.target.label)
            self._emit(handoff, self.target.on_session_end, f"H.264 rendition failed: {e}")
