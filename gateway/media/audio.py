"""Audio a browser's MSE cannot take, made into AAC once per stream.

Hikvision-style cameras send G.711 (PCMA/PCMU, 8 kHz mono), which MP4/MSE cannot carry;
this is the one transcode on the live path. It runs in the source's demux thread.
"""

from __future__ import annotations

from fractions import Fraction

import av

from .packet import AudioParams, MediaPacket

TRANSCODED_CODECS = ("pcm_alaw", "pcm_mulaw")
AAC_RATE = 16000  # G.711 is 8 kHz; 16 kHz AAC keeps all of it and every browser decodes it.


class AacTranscoder:
    """Decode G.711 packets and encode AAC frames with a continuous sample clock."""

    def __init__(self, codec_name: str, sample_rate: int, channels: int):
        self.decoder = av.CodecContext.create(codec_name, "r")
        self.decoder.sample_rate = sample_rate
        self.decoder.layout = "mono" if channels == 1 else "stereo"
        self.encoder = av.CodecContext.create("aac", "w")
        self.encoder.sample_rate = AAC_RATE
        self.encoder.layout = "mono"
        self.encoder.format = "fltp"
        self.encoder.bit_rate = 32000
        self.encoder.time_base = Fraction(1, AAC_RATE)
        self.encoder.open()
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_RATE, frame_size=self.encoder.frame_size)
        self.params = AudioParams("aac", AAC_RATE, 1, bytes(self.encoder.extradata or b""))
        self.next_pts: int | None = None

    def transcode(self, packet: av.Packet, pts: int) -> list[tuple[int, bytes]]:
        """AAC frames (pts in AAC_RATE units, data) for one G.711 packet starting at `pts`."""
        if self.next_pts is None:
            self.next_pts = pts
        out = []
        for frame in self.decoder.decode(packet):
            for resampled in self.resampler.resample(frame):
                resampled.pts = self.next_pts
                self.next_pts += resampled.samples
                for encoded in self.encoder.encode(resampled):
                    out.append((int(encoded.pts), bytes(encoded)))
        return out


OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms


class OpusTranscoder:
    """AAC (files, RTMP, AAC cameras) to Opus for WebRTC, which cannot carry AAC.

    Runs once per stream, only while WebRTC peers watch a stream without G.711.
    """

    def __init__(self, params: AudioParams):
        self.decoder = av.CodecContext.create("aac", "r")
        self.decoder.extradata = params.config
        self.decoder.sample_rate = params.sample_rate
        self.decoder.layout = "mono" if params.channels == 1 else "stereo"
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate = OPUS_RATE
        self.encoder.layout = "stereo"
        self.encoder.format = "s16"
        self.encoder.bit_rate = 64000
        self.encoder.time_base = Fraction(1, OPUS_RATE)
        self.encoder.open()
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME)
        self.source_rate = params.sample_rate
        self.next_pts: int | None = None

    def transcode(self, packet: MediaPacket) -> list[tuple[int, bytes]]:
        """Opus packets (pts at 48 kHz, data) for one AAC frame."""
        if self.next_pts is None:
            self.next_pts = packet.pts * OPUS_RATE // self.source_rate
        out = []
        for frame in self.decoder.decode(av.Packet(packet.data)):
            for resampled in self.resampler.resample(frame):
                resampled.pts = self.next_pts
                self.next_pts += resampled.samples
                for encoded in self.encoder.encode(resampled):
                    out.append((int(encoded.pts), bytes(encoded)))
        return out
