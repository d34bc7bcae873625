"""The only audio transcodes on the live path, each done once per stream.

- G.711 (PCMA/PCMU, 8 kHz mono, as Hikvision-style cameras send) to AAC, since MP4/MSE
  cannot carry G.711. Runs in the source's demux thread.
- AAC (files, RTMP, AAC cameras) to Opus for WebRTC, which cannot carry AAC. Runs only
  while WebRTC peers watch a stream without G.711.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import av

from gateway.hub.packet import AudioParams, MediaPacket

TRANSCODED_CODECS = ("pcm_alaw", "pcm_mulaw")
AAC_RATE = 16000  # G.711 is 8 kHz; 16 kHz AAC keeps all of it and every browser decodes it.
# FFmpeg's "fast" AAC coder, not its default "twoloop": on microphone-like audio (noise,
# voice) it costs a third to a half as much and comes closer to the G.711 input; only a
# pure tone costs the same and gets fewer bits (bench/audio_transcode.py).
AAC_CODER = "fast"
OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms


def audio_context(codec: str, mode: Literal["r", "w"]) -> av.AudioCodecContext:
    context = av.CodecContext.create(codec, mode)
    if not isinstance(context, av.AudioCodecContext):
        raise ValueError(f"{codec} is not an audio codec")
    return context


class _Transcoder:
    """Decode, resample to the encoder's frame size, encode, on a continuous sample clock."""

    def __init__(
        self,
        decoder: av.AudioCodecContext,
        codec: str,
        rate: int,
        layout: str,
        fmt: str,
        bit_rate: int,
        frame_size: int | None = None,
        options: dict[str, str] | None = None,
    ):
        self.decoder = decoder
        self.encoder = audio_context(codec, "w")
        self.encoder.sample_rate = rate
        self.encoder.layout = layout
        self.encoder.format = fmt
        self.encoder.bit_rate = bit_rate
        self.encoder.time_base = Fraction(1, rate)
        self.encoder.options = options or {}
        self.encoder.open()
        self.resampler = av.AudioResampler(
            format=fmt, layout=layout, rate=rate, frame_size=frame_size or self.encoder.frame_size
        )
        self.next_pts: int | None = None

    def _run(self, packet: av.Packet, pts: int) -> list[tuple[int, bytes]]:
        """Encoded packets (pts in the encoder's rate, data) for one input packet at `pts`.

        Samples are counted on from the first packet, but when the input's own time drifts
        from the count by more than two encoder frames (audio lost or skipped by the
        camera), the count jumps to it: otherwise audio would trail video for good.
        """
        if self.next_pts is None or abs(pts - self.next_pts) > 2 * self.encoder.frame_size:
            self.next_pts = pts
        out = []
        for frame in self.decoder.decode(packet):
            for resampled in self.resampler.resample(frame):
                resampled.pts = self.next_pts
                self.next_pts += resampled.samples
                for encoded in self.encoder.encode(resampled):
                    if encoded.pts is not None:  # an encoder's packets always have one
                        out.append((encoded.pts, bytes(encoded)))
        return out


def _decoder(codec: str, sample_rate: int, channels: int, extradata: bytes | None = None) -> av.AudioCodecContext:
    decoder = audio_context(codec, "r")
    decoder.sample_rate = sample_rate
    decoder.layout = "mono" if channels == 1 else "stereo"
    if extradata:
        decoder.extradata = extradata
    return decoder


class AacTranscoder(_Transcoder):
    """G.711 to AAC 16 kHz mono."""

    def __init__(self, codec_name: str, sample_rate: int, channels: int):
        super().__init__(
            _decoder(codec_name, sample_rate, channels),
            "aac",
            AAC_RATE,
            "mono",
            "fltp",
            32000,
            options={"aac_coder": AAC_CODER},
        )
        self.params = AudioParams("aac", AAC_RATE, 1, bytes(self.encoder.extradata or b""))

    def transcode(self, packet: av.Packet, pts: int) -> list[tuple[int, bytes]]:
        """AAC frames (pts in AAC_RATE units, data) for one G.711 packet starting at `pts`."""
        return self._run(packet, pts)


class OpusTranscoder(_Transcoder):
    """AAC to Opus 48 kHz stereo, 20 ms packets."""

    def __init__(self, params: AudioParams):
        decoder = _decoder("aac", params.sample_rate, params.channels, params.config)
        super().__init__(decoder, "libopus", OPUS_RATE, "stereo", "s16", 64000, frame_size=OPUS_FRAME)
        self.source_rate = params.sample_rate

    def transcode(self, packet: MediaPacket) -> list[tuple[int, bytes]]:
        """Opus packets (pts at 48 kHz, data) for one AAC frame."""
        return self._run(av.Packet(packet.data), packet.pts * OPUS_RATE // self.source_rate)
