"""H.265 to H.264, for the H.264 rendition of an H.265 stream (hub/rendition_input.py).

Decodes the hub's HEVC packets and encodes them with libx264 (ultrafast, zerolatency, no
B-frames) so that each frame leaves as soon as it arrived. The rendition must start and
skip like the camera's own stream (GOP cache, instant start, keyframe skip), so an IDR
is forced exactly where the source has a keyframe and nowhere else. Blocking and CPU
heavy: it runs in the rendition's own thread, never in the event loop.

The encoder's profile and level are fixed (Constrained Baseline, a level from the output
size), so the rendition's RFC 6381 codec string is known before it runs: the LL-HLS
master playlist lists it without starting a transcode.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av

from gateway.formats import h264, nal
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams, VideoParams

# Bits per second per output pixel when no bitrate is set: 2 -> ~4.1 Mbit/s at 1080p,
# ~1.8 Mbit/s at 720p. ultrafast has no CABAC and no B-frames, so it needs about twice
# what a camera's H.264 would for the same picture; these rates keep the smpte bars,
# text and a moving scene clean at 25 fps.
DEFAULT_BITS_PER_PIXEL = 2
DEFAULT_FRAME_TICKS = 3600  # 25 fps
MIN_FRAME_TICKS, MAX_FRAME_TICKS = 750, 90000  # 120 fps to 1 fps
PROFILE = "baseline"  # x264 writes it as Constrained Baseline: profile_idc 66, constraint flags 0xC0
PROFILE_PREFIX = "42C0"
# (macroblocks per frame up to, level): 720p30/60 fit 3.2, 1080p up to 60 fps fits 4.2.
LEVELS = ((1620, "3.1"), (5120, "3.2"), (8704, "4.2"), (36864, "5.2"))


@dataclass(frozen=True, slots=True)
class RenditionShape:
    """What the rendition of a source of a given size is: its size, bitrate and level."""

    width: int
    height: int
    kbps: int
    level: str

    @classmethod
    def of(cls, source_width: int, source_height: int, height: int, kbps: int) -> RenditionShape:
        """`height` 0 keeps the source's size; otherwise the picture is scaled to it
        (never up), keeping the aspect ratio, both sides even. `kbps` 0: from the size."""
        if height and height < source_height:
            width = round(source_width * height / source_height)
        else:
            width, height = source_width, source_height
        width, height = max(2, width - width % 2), max(2, height - height % 2)
        kbps = kbps or width * height * DEFAULT_BITS_PER_PIXEL // 1000
        macroblocks = -(-width // 16) * -(-height // 16)
        level = next((name for most, name in LEVELS if macroblocks <= most), LEVELS[-1][1])
        return cls(width, height, kbps, level)

    @property
    def codec_string(self) -> str:
        major, minor = self.level.split(".")
        return f"avc1.{PROFILE_PREFIX}{int(major) * 10 + int(minor):02X}"


class H264Transcoder:
    """One H.265 source's decoder and its H.264 encoder; `transcode` one packet at a time.

    Made for one set of source parameters: when they change (the camera reconnected with
    another size or codec config), make a new one. `frame_ticks`: the source's frame
    spacing (90 kHz), which x264's rate control needs to share the bitrate out per frame."""

    def __init__(self, source: VideoParams, height: int, kbps: int, frame_ticks: int = DEFAULT_FRAME_TICKS):
        self.shape = RenditionShape.of(source.width, source.height, height, kbps)
        self.parameter_sets = nal.to_annexb(source.parameter_sets)
        self.decoder = av.CodecContext.create("hevc", "r")
        assert isinstance(self.decoder, av.VideoCodecContext)
        # Slice (wavefront) threads, not frame threads: frame threading holds one frame
        # per thread before the first comes out, which is latency added to every frame.
        self.decoder.thread_type = "SLICE"
        self.encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(self.encoder, av.VideoCodecContext)
        self.encoder.width, self.encoder.height = self.shape.width, self.shape.height
        self.encoder.pix_fmt = "yuv420p"
        self.encoder.time_base = Fraction(1, VIDEO_TIMESCALE)
        self.encoder.framerate = Fraction(VIDEO_TIMESCALE, min(max(frame_ticks, MIN_FRAME_TICKS), MAX_FRAME_TICKS))
        self.encoder.bit_rate = self.shape.kbps * 1000
        self.encoder.max_b_frames = 0
        rate = f"{self.shape.kbps}k"
        self.encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": PROFILE,
            "level": self.shape.level,
            "forced-idr": "1",  # a forced I picture is an IDR, where a new client can start
            "x264-params": "keyint=infinite:scenecut=0",  # keyframes only where forced
            "maxrate": rate,
            "bufsize": rate,  # one second of VBV: steady rate without holding frames back
        }
        self.encoder.open()
        self.params: VideoParams | None = None  # known with the first IDR out
        self._waiting_for_keyframe = True

    def transcode(self, packet: MediaPacket) -> list[MediaPacket]:
        """The H.264 packets for one H.265 video packet (usually one; none before the
        first keyframe, or when the decoder holds the frame back). A packet that does not
        decode drops what follows up to the next keyframe."""
        if packet.keyframe:
            self._waiting_for_keyframe = False
        elif self._waiting_for_keyframe:
            return []
        data = nal.to_annexb(nal.split_avcc(packet.data))
        av_packet = av.Packet(self.parameter_sets + data if packet.keyframe else data)
        av_packet.pts, av_packet.dts = packet.pts, packet.dts
        av_packet.time_base = Fraction(1, VIDEO_TIMESCALE)
        try:
            frames = self.decoder.decode(av_packet)
        except av.FFmpegError:
            self._waiting_for_keyframe = True
            return []
        out = []
        for frame in frames:
            if frame.pts is None:
                continue
            keyframe = frame.key_frame
            if (frame.width, frame.height) != (self.shape.width, self.shape.height) or frame.format.name != "yuv420p":
                scaled = frame.reformat(width=self.shape.width, height=self.shape.height, format="yuv420p")
                scaled.pts = frame.pts
                frame = scaled
            frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            for encoded in self.encoder.encode(frame):
                out.append(self._packet(encoded))
        return out

    def _packet(self, encoded: av.Packet) -> MediaPacket:
        """An encoder packet as a hub packet: parameter sets taken out (kept in `params`)."""
        nals = []
        sps = pps = b""
        for unit in nal.split_annexb(bytes(encoded)):
            kind = h264.nal_type(unit)
            if kind == h264.NAL_SPS:
                sps = unit
            elif kind == h264.NAL_PPS:
                pps = unit
            elif kind != h264.NAL_AUD:
                nals.append(unit)
        if sps and pps:
            self.params = VideoParams.from_h264(sps, pps)
        pts = encoded.pts or 0
        dts = encoded.dts if encoded.dts is not None else pts
        return MediaPacket("video", dts, pts, 0, encoded.is_keyframe, nal.to_avcc(nals))


def rendition_params(source: StreamParams, video: VideoParams) -> StreamParams:
    """The rendition's parameters: its H.264 video and the source's audio as it is."""
    return StreamParams(video, source.audio, source.g711)
