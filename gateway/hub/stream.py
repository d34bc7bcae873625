"""A Stream: one source token's media, between its input (ingest) and its outputs.

A Stream owns its input's lifetime (on demand with a linger, or always), puts every
connection onto one continuous timeline (timeline.py), keeps the one GOP cache (gop.py)
so a new client starts at a keyframe at once, and hands each packet to its subscribers.
Its outputs are per-stream objects (one fMP4 feed, one HLS segmenter, ...) made through
the output registry (output.py) and keeping their own per-client queues, so the work
here is done once per stream whatever the number of viewers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol, TypeVar

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.hub.gop import GopCache
from gateway.hub.output import OutputRegistry, StreamOutput, Subscriber
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.profile import MAIN
from gateway.hub.timeline import Timeline

log = logging.getLogger(__name__)

READY_TIMEOUT = 15.0  # seconds a client waits for a cold stream's connection and first keyframe

OutputT = TypeVar("OutputT", bound=StreamOutput)


class RunningInput(Protocol):
    def stop(self) -> None:
        """Stop reading; what the input still delivers is dropped."""
        ...


class StreamInput(Protocol):
    """What the hub needs of ingest: an input it can start for a stream, and describe."""

    def start(self, stream: Stream) -> RunningInput:
        """Start reading; events arrive in the event loop as Stream's on_session_* and on_packet calls."""
        ...

    def describe(self) -> dict[str, Any]:
        """What GetSrc adds for the input (an ONVIF profile, a renewed URL's expiry)."""
        ...


class StreamNotReady(Exception):
    """The source gave no media in time; the message says what it last reported."""


class Stream:
    def __init__(
        self,
        conf: SourceConf,
        source: StreamInput,
        settings: SourceSettings,
        registry: OutputRegistry,
        profile: str = MAIN,
        rendition_of: Stream | None = None,
    ):
        self.conf = conf
        self.profile = profile  # main, or sub: the source's sub stream (hub/profile.py)
        self.source = source
        self.linger = settings.linger
        self.registry = registry
        self.params: StreamParams | None = None
        self.gop = GopCache()
        self.timeline = Timeline()
        self.state = "idle"  # idle, connecting, online, offline
        self.last_error: str | None = None
        self.online_since: float | None = None
        self.subscribers: list[Subscriber] = []
        self.rendition: Stream | None = None  # its H.264 rendition, for clients without H.265 (rendition.py)
        self.rendition_of = rendition_of  # for a rendition: the stream it transcodes
        self._outputs: dict[type, StreamOutput] = {}
        self._demand = 0
        self._input: RunningInput | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()
        # Counters for /metrics (gateway/metrics/), read when it is scraped.
        self.packets_in = 0
        self.bytes_in = 0
        self.connects = 0  # sessions the input started (came online)
        self.reconnects = 0  # of those, after the input had failed or been lost
        self.errors = 0  # the input failed to connect, or its connection was lost
        self.switches = 0  # the input replaced by its renewal without a gap (a signed URL renewed)

    # -- identity and status -------------------------------------------------------

    @property
    def token(self) -> str:
        return self.conf.token

    @property
    def label(self) -> str:
        """The token, with `/sub` for a sub stream and `/h264` for a rendition: for logs and messages."""
        label = self.token if self.profile == MAIN else f"{self.token}/{self.profile}"
        return label if self.rendition_of is None else f"{label}/h264"

    @property
    def always_on(self) -> bool:
        """H5_ALWAYS keeps the main stream up; a sub stream and a rendition are always on demand."""
        return self.profile == MAIN and self.rendition_of is None and self.conf.always_on

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def running(self) -> bool:
        return self._input is not None

    @property
    def viewers(self) -> int:
        return self._demand

    def describe(self) -> dict[str, Any]:
        """What the input and the outputs made so far add to GetSrc."""
        info = dict(self.source.describe())
        for output in self._outputs.values():
            info.update(output.describe())
        return info

    # -- lifetime ------------------------------------------------------------------

    def acquire(self) -> None:
        """A viewer (of any output) wants this stream: start it if it is not running."""
        self._demand += 1
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        self.start()

    def release(self) -> None:
        self._demand = max(0, self._demand - 1)
        if self._demand == 0 and not self.always_on and self.running:
            loop = asyncio.get_running_loop()
            self._linger_handle = loop.call_later(self.linger, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger_handle = None
        if self._demand == 0 and not self.always_on:
            log.info("stream %s: no viewers for %.0f s, disconnecting", self.label, self.linger)
            self.stop()

    def start(self) -> None:
        if self._input is not None:
            return
        self.state = "connecting"
        self._input = self.source.start(self)

    def stop(self) -> None:
        """Stop the input. Viewers stay attached; the timeline continues on restart."""
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        if self._input is not None:
            self._input.stop()
            self._input = None
        if self.state in ("connecting", "online"):
            self.state = "idle"
        self._end_session()

    def close(self) -> None:
        """The source is deleted: stop it and end every output's clients (its rendition's too)."""
        if self.rendition is not None:
            self.rendition.close()
        self.stop()
        for output in list(self._outputs.values()):
            output.close()

    # -- waiting for media -----------------------------------------------------------

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> StreamParams:
        """Parameters once the stream has a keyframe; StreamNotReady after `timeout`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            reason = self.last_error or "no video from the source yet"
            raise StreamNotReady(f"stream {self.label} not ready: {reason}") from None
        assert self.params is not None
        return self.params

    # -- outputs and subscribers -----------------------------------------------------

    def output(self, kind: type[OutputT]) -> OutputT:
        """The stream's one output of a kind, made on first use (e.g. its fMP4 feed)."""
        output = self._outputs.get(kind)
        if output is None:
            output = self._outputs[kind] = self.registry.make(kind, self)
        assert isinstance(output, kind)
        return output

    def outputs(self) -> list[StreamOutput]:
        """The outputs made so far."""
        return list(self._outputs.values())

    def existing(self, kind: type[OutputT]) -> OutputT | None:
        """The stream's output of a kind if one was made."""
        output = self._outputs.get(kind)
        return output if isinstance(output, kind) else None

    def attach(self, subscriber: Subscriber) -> None:
        """Add a subscriber and bring it up to date: parameters, then the cached GOP."""
        self.subscribers.append(subscriber)
        if self.params is not None:
            subscriber.on_params(self.params)
            for packet in self.gop.packets:
                subscriber.on_packet(packet)

    def detach(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    # -- the input's events (ingest's SourceSink), in the event loop -------------------

    def on_session_start(self, params: StreamParams) -> None:
        log.info("stream %s online: %s", self.label, params.mime)
        self.connects += 1
        self.reconnects += self.state == "offline"
        self.state = "online"
        self.last_error = None
        self.online_since = time.time()
        self.timeline.new_connection()
        self._set_params(params)

    def on_session_switch(self, params: StreamParams) -> None:
        """The source replaced its input by a renewed one, at a keyframe. To outputs this
        is the same session: the timeline goes on after the last frame, no discontinuity."""
        self.switches += 1
        self.timeline.new_connection()
        self._set_params(params)

    def on_params(self, params: StreamParams) -> None:
        self._set_params(params)

    def _set_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        self.params = params
        self.gop.clear()
        for subscriber in list(self.subscribers):
            subscriber.on_params(params)

    def on_packet(self, packet: MediaPacket) -> None:
        if not self.timeline.place(packet, self.params):
            return
        self.packets_in += 1
        self.bytes_in += len(packet.data)
        if packet.kind == "video" and packet.keyframe:
            self._ready.set()
        self.gop.add(packet)
        for subscriber in list(self.subscribers):
            subscriber.on_packet(packet)

    def on_session_end(self, error: str | None) -> None:
        if error:
            self.errors += 1
            self.last_error = error
            if self._input is not None:
                self.state = "offline"
        self._end_session()

    def _end_session(self) -> None:
        self._ready.clear()
        self.gop.clear()
