"""One opened input: PyAV's container, its PacketReader, and the events the hub hears from it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import av

from gateway.hub.packet import VIDEO_TIMESCALE
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.packets import G711_RATE, PacketReader

OPEN_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
RENEW_FRACTION = 0.75  # of an expiring input's life, when its successor is opened
RENEW_LEAD = 8.0  # but at least this long before it expires
LONG_PROBE_US = 3_000_000  # second try at finding an FLV input's video (see OpenInput)

Event = tuple[str, object]  # ("start" | "params", StreamParams) or ("packet", MediaPacket)


class OpenInput:
    """One opened input and the hub events read from it (by one thread at a time)."""

    def __init__(self, spec: InputSpec, enable_audio: bool):
        opening = time.monotonic()
        self.spec = spec
        self.container, self.session = self._open(spec.options, enable_audio)
        probe = int(spec.options.get("analyzeduration", 0))
        if self.session.video_stream is None and 0 < probe < LONG_PROBE_US:
            # FLV announces streams as they come, and an RTMP origin may hold video back
            # until its next keyframe: a short probe then sees audio only. Look longer.
            self.container.close()
            self.container, self.session = self._open(
                spec.options | {"analyzeduration": str(LONG_PROBE_US)}, enable_audio
            )
        if self.session.video_stream is None:
            self.container.close()
            raise SourceError(f"{spec.label}: no H.264 or H.265 video stream")
        self.opened_in = time.monotonic() - opening
        # An expiring input is replaced at three quarters of its life, or RENEW_LEAD before
        # it expires if that is earlier: opening its successor takes a few seconds.
        self.renew_at: float | None = None
        if spec.expires_at is not None:
            life = max(0.0, spec.expires_at - time.time())
            self.renew_at = spec.expires_at - max(RENEW_LEAD, (1 - RENEW_FRACTION) * life)

    def _open(self, options: dict[str, str], enable_audio: bool) -> tuple[av.container.InputContainer, PacketReader]:
        container = av.open(self.spec.url, options=dict(options), timeout=(OPEN_TIMEOUT, READ_TIMEOUT))
        try:
            return container, PacketReader(container, enable_audio)
        except BaseException:
            container.close()
            raise

    def close(self) -> None:
        self.container.close()

    def events(self, halted: Callable[[], bool], wait: Callable[[float], bool]) -> Iterator[Event]:
        """Everything the hub hears from this input, each read-through one session.

        A file plays on in a loop by seeking back to its start, which is gapless and
        keeps memory flat (re-opening it each time leaves FFmpeg's buffers to the allocator).
        `wait(seconds)` paces a file and returns True when reading should stop.
        """
        while True:
            started = False
            for event in self._pass(halted, wait):
                started |= event[0] == "start"
                yield event
            if not (self.spec.realtime and started) or halted():
                return
            try:
                self.container.seek(0)
            except av.error.FFmpegError:
                return  # not seekable: the caller re-opens it
            self.session.untimed = []

    def _pass(self, halted: Callable[[], bool], wait: Callable[[float], bool]) -> Iterator[Event]:
        """One read through the input, as one session of the hub: it starts at a keyframe."""
        session = self.session
        streams = [s for s in (session.video_stream, session.audio_stream) if s is not None]
        rates = {
            "video": VIDEO_TIMESCALE,
            "audio": session.audio.sample_rate if session.audio else 1,
            "g711": G711_RATE,
        }
        started = False
        clock_start = first_seconds = 0.0
        for packet in self.container.demux(streams):
            if halted():
                return
            if packet.size == 0:
                continue
            if packet.stream is session.video_stream:
                items, changed = session.video_packets(packet)
                if not started:
                    # Every session starts at a keyframe with known parameter sets.
                    while items and not (items[0].keyframe and session.video):
                        items.pop(0)
                    if not items:
                        continue
                    started = True
                    yield "start", session.params
                elif changed:
                    yield "params", session.params
            else:
                if not started:
                    continue
                had_audio = session.audio
                items = session.audio_packets(packet)
                if had_audio is None and session.audio is not None:
                    rates["audio"] = session.audio.sample_rate
                    yield "params", session.params
            if self.spec.realtime and items:
                # Files play at their own speed: wait until this packet is due.
                seconds = items[0].dts / rates[items[0].kind]
                if not clock_start:
                    clock_start, first_seconds = time.monotonic(), seconds
                delay = clock_start + (seconds - first_seconds) - time.monotonic()
                if delay > 0 and wait(delay):
                    return
            for item in items:
                yield "packet", item
