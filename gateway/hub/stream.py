"""The stream hub: one Stream per source token, between a demux thread and the outputs.

A Stream owns its source's lifetime (on demand with a linger, or always), rebases every
connection onto one continuous timeline, keeps the current GOP so a new output starts at
a keyframe at once, and hands each packet to its outputs. Outputs are per-stream objects
(one fMP4 fragmenter, one HLS segmenter, ...) that keep their own per-viewer queues, so
the work here is done once per stream whatever the number of viewers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from gateway.config.file import SourceConf
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.ingest import Source
from gateway.ingest.demux import DemuxThread

log = logging.getLogger(__name__)

GOP_CACHE_MAX_PACKETS = 1500  # ~30 s at 25 fps with audio; longer GOPs are not cached
DEFAULT_VIDEO_DURATION = 3600  # 25 fps in 90 kHz ticks, until the real spacing is seen


class StreamOutput(Protocol):
    def on_params(self, params: StreamParams) -> None: ...
    def on_packet(self, packet: MediaPacket) -> None: ...


class StreamNotReady(Exception):
    """The source gave no media in time; the message says what it last reported."""


T = TypeVar("T")


class Stream:
    def __init__(self, conf: SourceConf, source: Source, linger: float):
        self.conf = conf
        self.source = source
        self.linger = linger
        self.params: StreamParams | None = None
        self.gop: list[MediaPacket] = []
        self.state = "idle"  # idle, connecting, online, offline
        self.last_error: str | None = None
        self.online_since: float | None = None
        self.outputs: list[StreamOutput] = []
        self.output_registry: dict[str, object] = {}
        self._demand = 0
        self._thread: DemuxThread | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()
        self._last_dts: dict[str, int] = {}
        self._next_dts = 0  # 90 kHz: where the next session's first frame goes
        self._offset: dict[str, int] | None = None
        self._floor: dict[str, int] = {}
        self._video_delta = DEFAULT_VIDEO_DURATION
        self.packets_in = 0

    # -- identity and status -------------------------------------------------------

    @property
    def token(self) -> str:
        return self.conf.token

    @property
    def always_on(self) -> bool:
        return self.conf["nConnectType"] == "H5_ALWAYS"

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def viewers(self) -> int:
        return self._demand

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
            log.info("stream %s: no viewers for %.0f s, disconnecting", self.token, self.linger)
            self.stop()

    def start(self) -> None:
        if self._thread is not None:
            return
        self.state = "connecting"
        self._thread = DemuxThread(self.token, self.source, self, asyncio.get_running_loop(), self.conf["bEnableAudio"])
        self._thread.start()

    def stop(self) -> None:
        """Stop the source. Viewers stay attached; the timeline continues on restart."""
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self.state in ("connecting", "online"):
            self.state = "idle"
        self._end_session()

    # -- waiting for media -----------------------------------------------------------

    async def wait_ready(self, timeout: float) -> StreamParams:
        """Parameters once the stream has a keyframe; StreamNotReady after `timeout`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            reason = self.last_error or "no video from the source yet"
            raise StreamNotReady(f"stream {self.token} not ready: {reason}") from None
        assert self.params is not None
        return self.params

    # -- outputs -------------------------------------------------------------------

    def output(self, name: str, factory: Callable[[Stream], T]) -> T:
        """The stream's one output of a kind (made on first use), e.g. its fMP4 feed."""
        if name not in self.output_registry:
            self.output_registry[name] = factory(self)
        return self.output_registry[name]  # type: ignore[return-value]

    def attach(self, output: StreamOutput) -> None:
        """Add an output and bring it up to date: parameters, then the cached GOP."""
        self.outputs.append(output)
        if self.params is not None:
            output.on_params(self.params)
            for packet in self.gop:
                output.on_packet(packet)

    def detach(self, output: StreamOutput) -> None:
        if output in self.outputs:
            self.outputs.remove(output)

    # -- SourceSink: called in the loop by the demux thread ------------------------

    def on_session_start(self, params: StreamParams) -> None:
        log.info("stream %s online: %s", self.token, params.mime)
        self.state = "online"
        self.last_error = None
        self.online_since = time.time()
        self._offset = None
        self._set_params(params)

    def on_session_switch(self, params: StreamParams) -> None:
        """The source replaced its input by a renewed one, at a keyframe. To outputs this
        is the same session: the timeline goes on after the last frame, no discontinuity."""
        self._offset = None
        self._set_params(params)

    def on_params(self, params: StreamParams) -> None:
        self._set_params(params)

    def _set_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        self.params = params
        self.gop = []
        for output in list(self.outputs):
            output.on_params(params)

    def on_packet(self, packet: MediaPacket) -> None:
        if not self._rebase(packet):
            return
        self.packets_in += 1
        if packet.kind == "video":
            if packet.keyframe:
                self.gop = []
                self._ready.set()
            if self.gop or packet.keyframe:
                self.gop.append(packet)
        elif self.gop:
            self.gop.append(packet)
        if len(self.gop) > GOP_CACHE_MAX_PACKETS:
            self.gop = []
        for output in list(self.outputs):
            output.on_packet(packet)

    def on_session_end(self, error: str | None) -> None:
        if error:
            self.last_error = error
            if self._thread is not None:
                self.state = "offline"
        self._end_session()

    def _end_session(self) -> None:
        self._ready.clear()
        self.gop = []

    # -- timeline --------------------------------------------------------------------

    def _rates(self) -> dict[str, int]:
        """Clock rate of each packet kind the current session carries."""
        rates = {"video": 90000}
        if self.params and self.params.audio:
            rates["audio"] = self.params.audio.sample_rate
        if self.params and self.params.g711:
            rates["g711"] = 8000
        return rates

    def _rebase(self, packet: MediaPacket) -> bool:
        """Move the packet onto the stream's continuous timeline (in place).

        False for audio that would overlap audio already sent (after a reconnect).
        """
        if self._offset is None:
            # First packet of a session (a video keyframe): continue right after the last one.
            self._offset = {"video": self._next_dts - packet.dts}
            self._floor = {"video": self._next_dts}
        if packet.kind not in self._offset:
            rate = self._rates().get(packet.kind)
            if rate is None:
                return False
            self._offset[packet.kind] = self._offset["video"] * rate // 90000
            self._floor[packet.kind] = self._floor["video"] * rate // 90000
        offset = self._offset[packet.kind]
        packet.dts += offset
        packet.pts += offset
        last = self._last_dts.get(packet.kind)
        if packet.kind != "video" and (
            packet.dts < self._floor[packet.kind] or (last is not None and packet.dts <= last)
        ):
            return False  # audio from before this session's first keyframe, or overlapping
        if last is not None and packet.dts <= last:
            shift = last + 1 - packet.dts  # never let decode time go backwards
            packet.dts += shift
            packet.pts += shift
        if packet.kind == "video":
            if last is not None and 0 < packet.dts - last < 90000 * 5:
                self._video_delta = packet.dts - last
            if not packet.duration:
                packet.duration = self._video_delta
            self._next_dts = packet.dts + packet.duration
        self._last_dts[packet.kind] = packet.dts
        return True


class StreamManager:
    """All streams, by token; made from the config and kept in step with API changes."""

    def __init__(self, linger: float):
        self.linger = linger
        self.streams: dict[str, Stream] = {}

    def add(self, conf: SourceConf, source: Source) -> Stream:
        stream = Stream(conf, source, self.linger)
        self.streams[conf.token] = stream
        if stream.always_on:
            stream.start()
        return stream

    def remove(self, token: str) -> None:
        stream = self.streams.pop(token, None)
        if stream is not None:
            stream.stop()
            for output in list(stream.output_registry.values()):
                close = getattr(output, "close", None)
                if close is not None:
                    close()

    def get(self, token: str) -> Stream | None:
        return self.streams.get(token)

    def stop_all(self) -> None:
        for token in list(self.streams):
            self.remove(token)
