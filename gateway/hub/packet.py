"""What flows from a source through the hub to the outputs.

Timestamps are integers in the track's MP4 timescale (90 kHz video, the sample rate for
audio), already rebased by the hub onto one continuous timeline per stream, so outputs
never see a camera reconnect as a jump backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.formats import h264, h265

VIDEO_TIMESCALE = 90000


@dataclass(frozen=True, slots=True)
class VideoParams:
    codec: str  # "h264" or "h265"
    sps: bytes
    pps: bytes
    width: int
    height: int
    vps: bytes = b""  # H.265 only

    @classmethod
    def from_h264(cls, sps: bytes, pps: bytes) -> VideoParams:
        info = h264.SpsInfo.parse(sps)
        return cls("h264", sps, pps, info.width, info.height)

    @classmethod
    def from_h265(cls, vps: bytes, sps: bytes, pps: bytes) -> VideoParams:
        info = h265.SpsInfo.parse(sps)
        return cls("h265", sps, pps, info.width, info.height, vps)

    @property
    def hevc(self) -> bool:
        return self.codec == "h265"

    @property
    def codec_string(self) -> str:
        """RFC 6381, e.g. avc1.64001F or hvc1.1.6.L120.90."""
        return h265.codec_string(self.sps) if self.hevc else h264.codec_string(self.sps)

    @property
    def parameter_sets(self) -> list[bytes]:
        """What goes in band in front of a keyframe (TS, RTP): VPS (H.265), SPS, PPS."""
        return [self.vps, self.sps, self.pps] if self.hevc else [self.sps, self.pps]

    @property
    def timescale(self) -> int:
        return VIDEO_TIMESCALE


@dataclass(frozen=True, slots=True)
class AudioParams:
    codec: str  # "aac"
    sample_rate: int
    channels: int
    config: bytes  # AudioSpecificConfig

    @property
    def codec_string(self) -> str:
        object_type = self.config[0] >> 3 if self.config else 2
        return f"mp4a.40.{object_type}"

    @property
    def timescale(self) -> int:
        return self.sample_rate


@dataclass(frozen=True, slots=True)
class StreamParams:
    """Codec parameters of a stream: what an init segment or an SDP is made from."""

    video: VideoParams | None
    audio: AudioParams | None
    # The camera's own G.711 ("PCMA"/"PCMU"), kept beside its AAC transcode for WebRTC,
    # which carries G.711 as it is. Packets of kind "g711" run on an 8 kHz clock.
    g711: str | None = None

    def without_audio(self) -> StreamParams:
        return StreamParams(self.video, None, None)

    @property
    def mime(self) -> str:
        codecs = [t.codec_string for t in (self.video, self.audio) if t is not None]
        return f'video/mp4; codecs="{", ".join(codecs)}"'


@dataclass(slots=True)
class MediaPacket:
    kind: str  # "video", "audio" (AAC) or "g711"
    dts: int
    pts: int
    duration: int
    keyframe: bool
    # Video: NAL units with 4-byte lengths (an MP4 sample), no parameter sets or AUD.
    # Audio: one raw AAC frame. G.711: samples.
    data: bytes
