"""PyAV packets of one opened input as the hub's MediaPackets: no decoding, only re-framing.

H.264 and H.265 arrive Annex-B (RTSP, TS) or length-prefixed (FLV, MP4) and leave
length-prefixed without parameter sets or access unit delimiters, which are kept as the
stream's VideoParams instead; AAC
leaves raw (ADTS headers stripped); G.711 is transcoded to AAC here, and kept as it is
beside it for WebRTC. Timestamps become integers on each track's clock. Used by the
demux thread for live inputs and by playback for recordings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction

import av

from gateway.formats import h264, h265, nal
from gateway.formats.aac import AAC_RATES, aac_params
from gateway.formats.audio_transcode import TRANSCODED_CODECS, AacTranscoder
from gateway.hub.packet import VIDEO_TIMESCALE, AudioParams, MediaPacket, StreamParams, VideoParams

log = logging.getLogger(__name__)

DEFAULT_FRAME_TICKS = 3600  # 25 fps at 90 kHz
G711_RATE = 8000


def _ticks(value: int, time_base: Fraction, timescale: int) -> int:
    """`value` in `time_base` units as whole `timescale` units, truncated as int() does.
    (In integers: Fraction arithmetic cost ~10 us a call, several calls per packet.)"""
    scaled = value * time_base.numerator * timescale
    return scaled // time_base.denominator if scaled >= 0 else -(-scaled // time_base.denominator)


class VideoCodec:
    """What the reader needs to tell apart in one codec's NAL units."""

    def __init__(self, name: str):
        self.name = name  # "h264" or "h265"
        self.hevc = name == "h265"
        self.nal_type: Callable[[bytes], int] = h265.nal_type if self.hevc else h264.nal_type
        self.parameter_set_types: tuple[int, ...] = (
            (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS) if self.hevc else (h264.NAL_SPS, h264.NAL_PPS)
        )
        self.aud = h265.NAL_AUD if self.hevc else h264.NAL_AUD

    def is_random_access(self, kind: int) -> bool:
        return h265.is_irap(kind) if self.hevc else kind == h264.NAL_IDR

    def config_units(self, extradata: bytes) -> tuple[list[bytes], int]:
        """Parameter sets and NAL length size of an avcC/hvcC record."""
        if self.hevc:
            return h265.parse_hvcc_config(extradata)
        sps, pps, length_size = h264.parse_avcc_config(extradata)
        return sps[:1] + pps[:1], length_size

    def params(self, sets: dict[int, bytes]) -> VideoParams | None:
        if any(kind not in sets for kind in self.parameter_set_types):
            return None
        if self.hevc:
            return VideoParams.from_h265(sets[h265.NAL_VPS], sets[h265.NAL_SPS], sets[h265.NAL_PPS])
        return VideoParams.from_h264(sets[h264.NAL_SPS], sets[h264.NAL_PPS])


CODECS = {"h264": "h264", "hevc": "h265"}  # PyAV's decoder names -> ours


class PacketReader:
    """State of one open input: parameter sets seen so far and audio conversion."""

    def __init__(self, container: av.container.InputContainer, enable_audio: bool):
        self.video_stream = next((s for s in container.streams.video if s.codec_context.name in CODECS), None)
        self.codec = VideoCodec(CODECS[self.video_stream.codec_context.name] if self.video_stream else "h264")
        self.audio_stream = None
        self.transcoder: AacTranscoder | None = None
        self.g711: str | None = None
        self.audio: AudioParams | None = None
        self.length_size = 4
        # Packets framed as the avcC/hvcC extradata says (FLV, MP4). Sniffing for a start
        # code would take a length-prefixed frame whose first NAL is 256-511 bytes long
        # (00 00 01 xx) for Annex-B, so it is done only without such a record.
        self.length_prefixed = False
        self.sets: dict[int, bytes] = {}  # the latest parameter set of each type
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
            units, self.length_size = self.codec.config_units(extradata)
            self.length_prefixed = True
        else:
            units = nal.split_annexb(extradata)
            self.length_size = 0  # packets will be Annex-B too
        for unit in units:
            self._take_parameter_set(unit)

    def _take_parameter_set(self, unit: bytes) -> bool:
        kind = self.codec.nal_type(unit)
        if kind in self.codec.parameter_set_types and self.sets.get(kind) != unit:
            self.sets[kind] = unit
            return True
        return False

    def _update_video(self) -> bool:
        """Rebuild VideoParams from the current parameter sets; True if they changed."""
        try:
            params = self.codec.params(self.sets)
        except (ValueError, IndexError):
            log.warning("ignoring a %s parameter set that does not parse", self.codec.name)
            return False
        if params is None:
            return False
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
        if not self.length_prefixed and nal.is_annexb(data):
            units = nal.split_annexb(data)
        else:
            units = nal.split_avcc(data, self.length_size or 4)
        codec = self.codec
        kept = []
        changed_sets = False
        random_access = False
        for unit in units:
            kind = codec.nal_type(unit)
            if kind in codec.parameter_set_types:
                changed_sets |= self._take_parameter_set(unit)
            elif kind != codec.aud:
                random_access |= codec.is_random_access(kind)
                kept.append(unit)
        changed = self._update_video() if changed_sets else False
        if not kept:
            return [], changed
        keyframe = bool(packet.is_keyframe or random_access)
        media = MediaPacket("video", 0, 0, 0, keyframe, nal.to_avcc(kept))
        if packet.dts is None and packet.pts is None:
            self.untimed.append(media)
            return [], changed
        tb = packet.time_base
        dts = packet.dts if packet.dts is not None else packet.pts
        assert dts is not None  # one of them is set: checked above
        media.dts = _ticks(dts, tb, VIDEO_TIMESCALE)
        media.pts = _ticks(packet.pts, tb, VIDEO_TIMESCALE) if packet.pts is not None else media.dts
        media.duration = _ticks(packet.duration, tb, VIDEO_TIMESCALE) if packet.duration else 0
        ready = [*self.untimed, media]
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
