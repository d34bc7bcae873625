"""FLV tag bodies (as RTMP audio and video messages carry them) -> hub parameters and packets.

Video: AVC (codec id 7: the avcC sequence header, then length-prefixed NAL units with a
composition time) and enhanced RTMP's HEVC (FourCC `hvc1`: hvcC, then coded frames with or
without one). Audio: AAC (the AudioSpecificConfig, then raw frames). Other audio codecs
(MP3, Speex, G.711 in FLV) are left out with one warning: the stream is video only.

Timestamps: RTMP dates in milliseconds, 32 bits (unwrapped here: they wrap after 49.7
days); video goes to 90 kHz (pts = dts + composition time), AAC to its sample rate,
snapped to the 1024-sample frame grid when within half a frame of it, so the millisecond
rounding does not make every frame's duration differ.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.formats.aac import AAC_RATES, FRAME_SAMPLES
from gateway.formats.nal import split_avcc
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams
from gateway.ingest.packets import VideoCodec
from gateway.ingest.publish.video_track import VideoTrack

log = logging.getLogger(__name__)

_AVC = 7
_AAC = 10
_EX_HEADER = 0x80  # enhanced RTMP: the low nibble is a packet type, a FourCC follows
_EX_SEQUENCE_START, _EX_CODED_FRAMES, _EX_CODED_FRAMES_X = 0, 1, 3
_FOURCCS = {b"hvc1": "h265", b"avc1": "h264"}
_VIDEO_COMMAND_FRAME = 5
_WRAP = 1 << 32


class MediaTarget(Protocol):
    """Where the media goes: a Publisher (ingest/publish/slot.py)."""

    def set_params(self, params: StreamParams) -> None: ...

    def packet(self, packet: MediaPacket) -> None: ...


def audio_specific_config(config: bytes) -> AudioParams:
    """AudioParams of an AudioSpecificConfig (ISO 14496-3 1.6.2.1); ValueError if short."""
    if len(config) < 2:
        raise ValueError("AudioSpecificConfig shorter than 2 bytes")
    bits = int.from_bytes(config[:5].ljust(5, b"\0"), "big")
    rate_index = (bits >> 31) & 0x0F
    if rate_index == 15:
        if len(config) < 5:
            raise ValueError("AudioSpecificConfig with an explicit rate is short")
        rate, channels = (bits >> 7) & 0xFFFFFF, (bits >> 3) & 0x0F
    elif rate_index < len(AAC_RATES):
        rate, channels = AAC_RATES[rate_index], (bits >> 27) & 0x0F
    else:
        raise ValueError(f"AAC sampling frequency index {rate_index}")
    if not rate:
        raise ValueError("AAC sample rate 0")
    return AudioParams("aac", rate, channels or 2, bytes(config))


class FlvMedia:
    def __init__(self, target: MediaTarget, label: str):
        self.target = target
        self.label = label  # for logs: the token
        self.track: VideoTrack | None = None
        self.length_size = 4
        self.aac: AudioParams | None = None
        self.params: StreamParams | None = None  # the latest sequence headers' parameters
        self._sent: StreamParams | None = None  # the last ones given to the target
        self._next_audio: int | None = None  # the frame grid's next tick
        self._last_ms: int | None = None  # the last timestamp, unwrapped
        self._warned = False

    def unwrap(self, ms: int) -> int:
        """A 32-bit message timestamp on a timeline that goes on past 2^32 ms: the one
        nearest the last (audio and video interleave, a little out of order)."""
        last = self._last_ms
        if last is not None:
            ms += (last - ms + _WRAP // 2) // _WRAP * _WRAP
        self._last_ms = ms
        return ms

    def video(self, ms: int, body: bytes) -> None:
        if len(body) < 5:
            return
        ms = self.unwrap(ms)
        first = body[0]
        if first & _EX_HEADER:
            codec = _FOURCCS.get(bytes(body[1:5]))
            packet_type = first & 0x0F
            if codec is None:
                return self._warn(f"video FourCC {bytes(body[1:5])!r}")
            if packet_type == _EX_SEQUENCE_START:
                return self._sequence_header(codec, body[5:])
            if packet_type == _EX_CODED_FRAMES and len(body) >= 8:
                return self._frame(ms, _si24(body[5:8]), body[8:])
            if packet_type == _EX_CODED_FRAMES_X:
                return self._frame(ms, 0, body[5:])
            return None
        if first & 0x0F != _AVC:
            return self._warn(f"video codec id {first & 0x0F}")
        if first >> 4 == _VIDEO_COMMAND_FRAME:
            return None
        if body[1] == 0:
            return self._sequence_header("h264", body[5:])
        if body[1] == 1:
            return self._frame(ms, _si24(body[2:5]), body[5:])
        return None

    def audio(self, ms: int, body: bytes) -> None:
        if len(body) < 2:
            return
        if body[0] >> 4 != _AAC:
            return self._warn(f"audio codec {body[0] >> 4} (AAC is taken)")
        if body[1] == 0:
            try:
                config = audio_specific_config(body[2:])
            except ValueError as e:
                log.warning("publish %s: bad AAC sequence header (%s); video only", self.label, e)
                return None
            if config != self.aac:
                self.aac, self._next_audio = config, None
                self._update()
            return None
        audio = self.aac
        if audio is None:
            return None
        ticks = self.unwrap(ms) * audio.sample_rate // 1000
        expected = self._next_audio
        if expected is not None and abs(ticks - expected) <= FRAME_SAMPLES // 2:
            ticks = expected
        self._next_audio = ticks + FRAME_SAMPLES
        self._emit(MediaPacket("audio", ticks, ticks, FRAME_SAMPLES, False, bytes(body[2:])))
        return None

    def _sequence_header(self, codec: str, record: bytes) -> None:
        try:
            units, length_size = VideoCodec(codec).config_units(bytes(record))
        except (ValueError, IndexError) as e:
            log.warning("publish %s: bad %s sequence header (%s)", self.label, codec, e)
            return
        if self.track is None or self.track.codec.name != codec:
            self.track = VideoTrack(codec)
        self.length_size = length_size
        if self.track.add_parameter_sets(units):
            self._update()

    def _frame(self, ms: int, composition: int, data: bytes) -> None:
        track = self.track
        if track is None:
            return
        units = split_avcc(bytes(data), self.length_size)
        packet, changed = track.access_unit(units, ms * 90, (ms + composition) * 90)
        if changed:
            self._update()
        if packet is not None:
            self._emit(packet)

    def _update(self) -> None:
        video = self.track.params if self.track is not None else None
        self.params = StreamParams(video, self.aac) if video is not None else None

    def _emit(self, packet: MediaPacket) -> None:
        """Give the target the packet, after the parameters if they changed: those of both
        sequence headers, which clients send before their first frame, so the stream starts
        with its audio rather than gaining it a moment later."""
        params = self.params
        if params is None:
            return
        if params != self._sent:
            self._sent = params
            self.target.set_params(params)
        self.target.packet(packet)

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("publish %s: %s is not supported; taking the video (H.264/H.265) alone", self.label, what)


def _si24(data: bytes) -> int:
    value = int.from_bytes(data, "big")
    return value - (1 << 24) if value & 0x800000 else value
