"""Audio a browser's MSE cannot take, made into AAC once per stream.

Hikvision-style cameras send G.711 (PCMA/PCMU, 8 kHz mono), which MP4/MSE cannot carry;
this is the one transcode on the live path. It runs in the source's demux thread.
"""

from __future__ import annotations

from fractions import Fraction

import av

from .packet import AudioParams

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
