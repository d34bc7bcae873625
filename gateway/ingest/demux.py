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
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Protocol

import av

from gateway.formats import h264
from gateway.formats.audio_transcode import TRANSCODED_CODECS, AacTranscoder
from gateway.hub.packet import VIDEO_TIMESCALE, AudioParams, MediaPacket, StreamParams, VideoParams
from gateway.ingest.base import InputSpec, Source, SourceError

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 0.5  # a refused connect costs nothing; a camera back is picked up fast
DEFAULT_FRAME_TICKS = 3600  # 25 fps at 90 kHz
G711_RATE = 8000
RESOLVE_TIMEOUT = 15.0
RENEW_FRACTION = 0.75  # of an expiring input's life, when its successor is opened
RENEW_LEAD = 8.0  # but at least this long before it expires
RENEW_TIMEOUT = OPEN_TIMEOUT + 5.0  # for the successor to open and reach a keyframe
RENEW_RETRY = 1.0
LONG_PROBE_US = 3_000_000  # second try at finding an FLV input's video (see _Input)


class SourceSink(Protocol):
    """The hub side; every method runs in the event loop."""

    def on_session_start(self, params: StreamParams) -> None: ...
    def on_session_switch(self, params: StreamParams) -> None: ...
    def on_params(self, params: StreamParams) -> None: ...
    def on_packet(self, packet: MediaPacket) -> None: ...
    def on_session_end(self, error: str | None) -> None: ...


def _ticks(value: int, time_base: Fraction, timescale: int) -> int:
    """`value` in `time_base` units as whole `timescale` units, truncated as int() does.
    (In integers: Fraction arithmetic cost ~10 us a call, several calls per packet.)"""
    scaled = value * time_base.numerator * timescale
    return scaled // time_base.denominator if scaled >= 0 else -(-scaled // time_base.denominator)


class _Session:
    """State of one open input: parameter sets seen so far and audio conversion."""

    def __init__(self, container: av.container.InputContainer, enable_audio: bool):
        self.video_stream = next((s for s in container.streams.video if s.codec_context.name == "h264"), None)
        self.audio_stream = None
        self.transcoder: AacTranscoder | None = None
        self.g711: str | None = None
        self.audio: AudioParams | None = None
        self.length_size = 4
        # Packets framed as the avcC extradata says (FLV, MP4). Sniffing for a start code
        # would take an AVCC frame whose first NAL is 256-511 bytes long (00 00 01 xx) for
        # Annex-B, so it is done only without avcC.
        self.avcc = False
        self.sps = self.pps = b""
        if self.video_stream is not None:
            self._read_video_extradata(bytes(self.video_stream.codec_context.extradata or b""))
        if enable_audio:
            for stream in container.streams.audio:
                ctx = stream.codec_context
                if ctx.name == "aac" and ctx.extradata:
                    self.audio = AudioParams("aac", ctx.sample_rate, ctx.channels, bytes(ctx.extradata))
                elif ctx.name == "aac":
                    # ADTS (TS files): no extradata; the demuxer knows rate and channels.
                    self.audio = aac_params(ctx.sample_rate, ctx.channels) if ctx.sample_rate else None
                elif ctx.name in TRANSCODED_CODECS:
                    self.transcoder = AacTranscoder(ctx.name, ctx.sample_rate or 8000, ctx.channels or 1)
                    self.audio = self.transcoder.params
                    if (ctx.sample_rate or 8000) == G711_RATE and (ctx.channels or 1) == 1:
                        self.g711 = "PCMA" if ctx.name == "pcm_alaw" else "PCMU"
                else:
                    log.warning("audio codec %s is not supported; streaming video only", ctx.name)
                    continue
                self.audio_stream = stream
                break
        self.video: VideoParams | None = None
        self._update_video()
        self.untimed: list[MediaPacket] = []

    def _read_video_extradata(self, extradata: bytes) -> None:
        if not extradata:
            return
        if extradata[0] == 1:
            sps, pps, self.length_size = h264.parse_avcc_config(extradata)
            self.avcc = True
            nals = sps[:1] + pps[:1]
        else:
            nals = h264.split_annexb(extradata)
            self.length_size = 0  # packets will be Annex-B too
        for nal in nals:
            self._take_parameter_set(nal)

    def _take_parameter_set(self, nal: bytes) -> bool:
        kind = h264.nal_type(nal)
        if kind == h264.NAL_SPS and nal != self.sps:
            self.sps = nal
            return True
        if kind == h264.NAL_PPS and nal != self.pps:
            self.pps = nal
            return True
        return False

    def _update_video(self) -> bool:
        """Rebuild VideoParams from the current parameter sets; True if they changed."""
        if not (self.sps and self.pps):
            return False
        params = VideoParams.from_h264(self.sps, self.pps)
        changed = params != self.video
        self.video = params
        return changed

    @property
    def params(self) -> StreamParams:
        return StreamParams(self.video, self.audio, self.g711)

    def video_packets(self, packet: av.Packet) -> tuple[list[MediaPacket], bool]:
        """(normalised packets now ready, whether parameter sets changed).

        RTSP gives the very first frame (the keyframe we want to start on) no timestamp;
        such frames wait for the next timed one and are placed one frame before it.
        """
        data = bytes(packet)
        if not self.avcc and h264.is_annexb(data):
            nals = h264.split_annexb(data)
        else:
            nals = h264.split_avcc(data, self.length_size or 4)
        kept = []
        changed_sets = False
        idr = False
        for nal in nals:
            kind = h264.nal_type(nal)
            if kind in (h264.NAL_SPS, h264.NAL_PPS):
                changed_sets |= self._take_parameter_set(nal)
            elif kind != h264.NAL_AUD:
                idr |= kind == h264.NAL_IDR
                kept.append(nal)
        changed = self._update_video() if changed_sets else False
        if not kept:
            return [], changed
        keyframe = bool(packet.is_keyframe or idr)
        media = MediaPacket("video", 0, 0, 0, keyframe, h264.to_avcc(kept))
        if packet.dts is None and packet.pts is None:
            self.untimed.append(media)
            return [], changed
        tb = packet.time_base
        media.dts = _ticks(packet.dts if packet.dts is not None else packet.pts, tb, VIDEO_TIMESCALE)
        media.pts = _ticks(packet.pts, tb, VIDEO_TIMESCALE) if packet.pts is not None else media.dts
        media.duration = _ticks(packet.duration, tb, VIDEO_TIMESCALE) if packet.duration else 0
        ready = self.untimed + [media]
        for back, held in enumerate(reversed(self.untimed), start=1):
            held.dts = held.pts = media.dts - back * DEFAULT_FRAME_TICKS
        self.untimed = []
        return ready, changed

    def audio_packets(self, packet: av.Packet) -> list[MediaPacket]:
        if packet.pts is None:
            return []
        tb = packet.time_base
        if self.transcoder is not None:
            rate = self.transcoder.params.sample_rate
            frames = self.transcoder.transcode(packet, _ticks(packet.pts, tb, rate))
            out = [MediaPacket("audio", pts, pts, 1024, True, data) for pts, data in frames]
            if self.g711:
                raw = bytes(packet)
                pts = _ticks(packet.pts, tb, G711_RATE)
                out.append(MediaPacket("g711", pts, pts, len(raw), True, raw))
            return out
        data = bytes(packet)
        if len(data) > 7 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
            data = self._strip_adts(data)
        if self.audio is None:
            return []
        pts = _ticks(packet.pts, tb, self.audio.sample_rate)
        return [MediaPacket("audio", pts, pts, 1024, True, data)]

    def _strip_adts(self, data: bytes) -> bytes:
        header = 7 if data[1] & 1 else 9
        if self.audio is None:
            rate_index = (data[2] >> 2) & 0x0F
            channels = ((data[2] & 1) << 2) | (data[3] >> 6)
            self.audio = aac_params(AAC_RATES[rate_index], channels, object_type=(data[2] >> 6) + 1)
        return data[header:]


AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def aac_params(sample_rate: int, channels: int, object_type: int = 2) -> AudioParams:
    """AudioParams with an AudioSpecificConfig made from rate and channels (AAC-LC default)."""
    rate_index = AAC_RATES.index(sample_rate) if sample_rate in AAC_RATES else 15
    config = bytes([(object_type << 3) | (rate_index >> 1), ((rate_index & 1) << 7) | (channels << 3)])
    if rate_index == 15:  # explicit 24-bit rate
        bits = (object_type << 35) | (15 << 31) | (sample_rate << 7) | (channels << 3)
        config = bits.to_bytes(5, "big")
    return AudioParams("aac", sample_rate, channels, config)


Event = tuple[str, object]  # ("start" | "params", StreamParams) or ("packet", MediaPacket)


class _Input:
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
            raise SourceError(f"{spec.label}: no H.264 video stream")
        self.opened_in = time.monotonic() - opening
        # An expiring input is replaced at three quarters of its life, or RENEW_LEAD before
        # it expires if that is earlier: opening its successor takes a few seconds.
        self.renew_at: float | None = None
        if spec.expires_at is not None:
            life = max(0.0, spec.expires_at - time.time())
            self.renew_at = spec.expires_at - max(RENEW_LEAD, (1 - RENEW_FRACTION) * life)

    def _open(self, options: dict[str, str], enable_audio: bool) -> tuple[av.container.InputContainer, _Session]:
        container = av.open(self.spec.url, options=dict(options), timeout=(OPEN_TIMEOUT, READ_TIMEOUT))
        try:
            return container, _Session(container, enable_audio)
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


class _Renewal:
    """A fresh input opened beside the current one, in its own thread, and read up to
    its first keyframe; the demux thread then switches over to it (make-before-break)."""

    def __init__(self, owner: DemuxThread):
        self.owner = owner
        self.input: _Input | None = None
        self.events: Iterator[Event] | None = None
        self.params: StreamParams | None = None
        self.error: str | None = None
        self.retry_after = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._deadline = float("inf")  # for opening it and reaching a keyframe, once resolved
        threading.Thread(target=self._run, name=f"renew-{owner.name}", daemon=True).start()

    def _halted(self) -> bool:
        if self.owner._stop.is_set() or self._abandoned:
            return True
        return not self.done.is_set() and time.monotonic() > self._deadline

    def _run(self) -> None:
        opened: _Input | None = None
        try:
            spec = self.owner._resolve()
            self._deadline = time.monotonic() + RENEW_TIMEOUT
            opened = _Input(spec, self.owner.enable_audio)
            events = opened.events(self._halted, self.owner._stop.wait)
            for kind, value in events:
                if kind == "start":
                    self.params = value  # type: ignore[assignment]
                    break
            else:
                raise SourceError("no keyframe from the renewed input")
        except SourceError as e:
            self.error, self.retry_after = str(e), e.retry_after
        except av.error.FFmpegError as e:
            self.error = e.strerror or type(e).__name__
        except Exception as e:  # a bug must not kill the thread silently
            log.exception("source %s: unexpected error while renewing", self.owner.name)
            self.error = f"internal error: {type(e).__name__}"
        with self._lock:
            if self._abandoned or self.error:
                if opened is not None:
                    opened.close()
            else:
                self.input, self.events = opened, events
            self.done.set()

    def ready(self, timeout: float = 0.0) -> bool:
        return self.done.wait(timeout) and self.input is not None

    def abandon(self) -> None:
        """Not needed after all: close what it opened (now, or when it is done)."""
        with self._lock:
            self._abandoned = True
            if self.input is not None:
                self.input.close()
                self.input = None


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
        self._deliver_to = {"start": sink.on_session_start, "params": sink.on_params, "packet": sink.on_packet}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it notices between packets or at the read timeout."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _emit(self, method, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(self._deliver, method, args)
        except RuntimeError:  # loop closed during shutdown
            self._stop.set()

    def _deliver(self, method, args) -> None:
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
        opened beside it (_Renewal) and, at that
        input's first keyframe, the hub is switched over and the old one closed. The hub
        continues its timeline across the switch, so viewers see neither a gap nor a
        reconnect. Should the old input end first, the renewal under way takes over.
        """
        current = _Input(spec, self.enable_audio)
        log.debug("source %s: opened %s in %.3f s", self.name, spec.label, current.opened_in)
        events = current.events(self._stop.is_set, self._stop.wait)
        renewal: _Renewal | None = None
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
                        renewal = _Renewal(self)
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
