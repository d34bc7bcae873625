"""AAC: the AudioSpecificConfig an MP4 or an SDP needs, made from rate and channels, and read
back from a publisher's SDP; silence."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import av

from gateway.hub.packet import AudioParams

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def aac_params(sample_rate: int, channels: int, object_type: int = 2) -> AudioParams:
    """AudioParams with an AudioSpecificConfig made from rate and channels (AAC-LC default)."""
    rate_index = AAC_RATES.index(sample_rate) if sample_rate in AAC_RATES else 15
    config = bytes([(object_type << 3) | (rate_index >> 1), ((rate_index & 1) << 7) | (channels << 3)])
    if rate_index == 15:  # explicit 24-bit rate
        bits = (object_type << 35) | (15 << 31) | (sample_rate << 7) | (channels << 3)
        config = bits.to_bytes(5, "big")
    return AudioParams("aac", sample_rate, channels, config)


def config_params(config: bytes) -> AudioParams:
    """AudioParams of an AudioSpecificConfig (an SDP's config=, ISO 14496-3 §1.6.2.1);
    ValueError if its rate or channels cannot be read."""
    bits = int.from_bytes(config[:5].ljust(5, b"\0"), "big")
    if len(config) < 2:
        raise ValueError("AudioSpecificConfig too short")
    rate_index = (bits >> 31) & 0x0F
    if rate_index == 15:
        if len(config) < 5:
            raise ValueError("AudioSpecificConfig too short")
        sample_rate, channels = (bits >> 7) & 0xFFFFFF, (bits >> 3) & 0x0F
    elif rate_index < len(AAC_RATES):
        sample_rate, channels = AAC_RATES[rate_index], (bits >> 27) & 0x0F
    else:
        raise ValueError(f"AAC sampling index {rate_index} is reserved")
    if not sample_rate or not 1 <= channels <= 2:
        raise ValueError(f"AAC of {channels} channels at {sample_rate} Hz not supported")
    return AudioParams("aac", sample_rate, channels, config)


AAC_LC = 2
FRAME_SAMPLES = 1024


def is_aac_lc(params: AudioParams) -> bool:
    return params.codec == "aac" and bool(params.config) and params.config[0] >> 3 == AAC_LC


@cache
def silent_frame(sample_rate: int, channels: int) -> bytes:
    """One raw AAC-LC frame (1024 samples) of silence, which any AAC-LC decoder of that rate
    and layout takes: FFmpeg's encoder, run once per (rate, channels) in a process."""
    encoder = av.CodecContext.create("aac", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    layout = "mono" if channels == 1 else "stereo"
    encoder.sample_rate, encoder.layout, encoder.format = sample_rate, layout, "fltp"
    encoder.time_base = Fraction(1, sample_rate)
    encoder.open()
    frames = []
    for i in range(4):
        frame = av.AudioFrame(format="fltp", layout=layout, samples=FRAME_SAMPLES)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = sample_rate, i * FRAME_SAMPLES
        frames += encoder.encode(frame)
    frames += encoder.encode(None)
    return bytes(frames[2])  # past the encoder's priming: a frame of silence alone
