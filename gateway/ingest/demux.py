"""The demux thread: open a source's input with PyAV, normalise packets, hand them over.

PyAV blocks, so each live source gets one thread. No video is decoded here; H.264 is
only re-framed (Annex-B or AVCC in, AVCC out) and G.711 audio is transcoded to AAC.
Events cross into asyncio with loop.call_soon_threadsafe. The thread reconnects by
itself with a short capped backoff, so a camera that comes back is picked up within a
second or so. An input that expires (a signed URL) is replaced before it does, without a
gap: see DemuxThread._play.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import av

from gateway.hub.packet import MediaPacket, StreamParams
from gateway.ingest.base import InputSpec, Source, SourceError
from gateway.ingest.opened import OpenInput
from gateway.ingest.renewal import RENEW_TIMEOUT, Renewal

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.25
BACKOFF_CAP = 0.5  # a refused connect costs nothing; a camera back is picked up fast
RESOLVE_TIMEOUT = 15.0
RENEW_RETRY = 1.0


class SourceSink(Protocol):
    """The hub side; every method runs in the event loop."""

    def on_session_start(self, params: StreamParams) -> None: ...
    def on_session_switch(self, params: StreamParams) -> None: ...
    def on_params(self, params: StreamParams) -> None: ...
    def on_packet(self, packet: MediaPacket) -> None: ...
    def on_session_end(self, error: str | None) -> None: ...


class DemuxThread:
    """Runs one source until stopped: resolve, open, demux, renew, reconnect."""

    def __init__(
        self, name: str, source: Source, sink: SourceSink, loop: asyncio.AbstractEventLoop, enable_audio: bool
    ):
        self.name = name
        self.source = source
        self.sink = sink
        self.loop = loop
        self.enable_audio = enable_audio
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"demux-{name}", daemon=True)
        self._deliver_to: dict[str, Callable[..., None]] = {
            "start": sink.on_session_start,
            "params": sink.on_params,
            "packet": sink.on_packet,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it notices between packets or at the read timeout."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _emit(self, method: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._deliver, method, args)
        except RuntimeError:  # loop closed during shutdown
            self._stop.set()

    def _deliver(self, method: Callable[..., None], args: tuple[Any, ...]) -> None:
        """In the loop: drop what a stopped thread still sends, so a restarted stream
        never mixes packets of its old and new connections."""
        if not self._stop.is_set():
            method(*args)

    def _resolve(self) -> InputSpec:
        """The source's input to open now (its resolve() runs in the event loop)."""
        future = asyncio.run_coroutine_threadsafe(self.source.resolve(), self.loop)
        try:
            return future.result(RESOLVE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SourceError(f"the source gave no input within {RESOLVE_TIMEOUT:.0f} s") from None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            error, retry_after = None, 0.0
            try:
                got_media = self._play(self._resolve())
            except SourceError as e:
                error, got_media, retry_after = str(e), False, e.retry_after
            except av.error.FFmpegError as e:
                error, got_media = f"{e.strerror or type(e).__name__}", False
            except Exception as e:  # a bug or an odd stream must not kill the thread
                if self._stop.is_set():  # e.g. a slow resolve() cancelled by shutdown
                    break
                log.exception("source %s: unexpected error", self.name)
                error, got_media = f"internal error: {type(e).__name__}", False
            if self._stop.is_set():
                break
            self._emit(self.sink.on_session_end, error)
            failures = 0 if got_media else failures + 1
            if failures:
                log.info("source %s: %s; retrying", self.name, error or "ended")
                self._stop.wait(max(retry_after, min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))))

    def _play(self, spec: InputSpec) -> bool:
        """Demux an input until it ends, replacing it before it expires; True if any
        media came through.

        An input that says when it expires is renewed make-before-break: at three
        quarters of its life (at least RENEW_LEAD before it expires) a second input is
        opened beside it (Renewal) and, at that
        input's first keyframe, the hub is switched over and the old one closed. The hub
        continues its timeline across the switch, so viewers see neither a gap nor a
        reconnect. Should the old input end first, the renewal under way takes over.
        """
        current = OpenInput(spec, self.enable_audio)
        log.debug("source %s: opened %s in %.3f s", self.name, spec.label, current.opened_in)
        events = current.events(self._stop.is_set, self._stop.wait)
        renewal: Renewal | None = None
        got_media = False
        try:
            while not self._stop.is_set():
                start = self.sink.on_session_switch
                try:
                    kind, value = next(events)
                except (StopIteration, av.error.FFmpegError) as e:
                    # The input ended (or failed) first: a renewal under way takes over if it
                    # comes up, as a new session after a gap (the hub is told the truth).
                    gap = renewal is not None and not renewal.ready()
                    if gap:
                        self._emit(self.sink.on_session_end, f"{current.spec.label} ended before its renewal was ready")
                    if renewal is None or not renewal.ready(RENEW_TIMEOUT):
                        if isinstance(e, av.error.FFmpegError):
                            raise
                        return got_media
                    log.info("source %s: %s ended before its renewal; switching", self.name, current.spec.label)
                    if gap:
                        start = self.sink.on_session_start
                else:
                    self._emit(self._deliver_to[kind], value)
                    got_media |= kind == "start"
                    if current.renew_at is None or time.time() < current.renew_at:
                        continue
                    if renewal is None:
                        log.debug("source %s: renewing %s", self.name, current.spec.label)
                        renewal = Renewal(self.name, self._resolve, self.enable_audio, self._stop)
                        continue
                    if not renewal.done.is_set():
                        continue
                    if renewal.input is None:
                        log.info(
                            "source %s: renewal failed (%s); using %s a while longer",
                            self.name,
                            renewal.error,
                            current.spec.label,
                        )
                        current.renew_at = time.time() + max(RENEW_RETRY, renewal.retry_after)
                        renewal = None
                        continue
                assert renewal is not None and renewal.input is not None and renewal.events is not None
                current.close()
                current, events, params, renewal = renewal.input, renewal.events, renewal.params, None
                log.info(
                    "source %s: switched to %s (opened in %.3f s)", self.name, current.spec.label, current.opened_in
                )
                self._emit(start, params)
            return got_media
        finally:
            current.close()
            if renewal is not None:
                renewal.abandon()


class SourceInput:
    """A source as the hub starts it (the hub's StreamInput): one demux thread per start."""

    def __init__(self, name: str, source: Source, enable_audio: bool):
        self.name = name
        self.source = source
        self.enable_audio = enable_audio

    def start(self, sink: SourceSink) -> DemuxThread:
        thread = DemuxThread(self.name, self.source, sink, asyncio.get_running_loop(), self.enable_audio)
        thread.start()
        return thread

    def describe(self) -> dict[str, Any]:
        return self.source.describe()
