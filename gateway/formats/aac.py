"""AAC: the AudioSpecificConfig an MP4 or an SDP needs, made from rate and channels."""

from __future__ import annotations

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
