"""FLV (Adobe FLV 10.1, E.4): the byte stream HTTP-FLV and WS-FLV players (flv.js,
mpegts.js, ffmpeg, VLC) read. H.264 + AAC only: the codecs FLV has without extensions.

A tag is an 11-byte header (type, body size, timestamp in ms with its extended byte,
stream id 0), the body, then the PreviousTagSize of the tag. A tag's body here never
depends on its timestamp, so the body is made once and `tag` dates it per client.
"""

from __future__ import annotations

import struct

from gateway.formats.h264 import avcc_config
from gateway.hub.packet import AudioParams, VideoParams

AUDIO_TAG = 8
VIDEO_TAG = 9
_AVC_KEYFRAME = 0x17  # frame type 1 (key) | codec id 7 (AVC)
_AVC_INTER = 0x27  # frame type 2 (inter) | codec id 7
_AAC = 0xAF  # sound format 10 (AAC), 44 kHz, 16-bit, stereo: fixed for AAC, the ASC says the truth
_SEQUENCE_HEADER = 0
_PAYLOAD = 1


def header(video: bool, audio: bool) -> bytes:
    """The file header and PreviousTagSize0."""
    flags = (0x04 if audio else 0) | (0x01 if video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + b"\x00\x00\x00\x00"


def tag(kind: int, timestamp_ms: int, body: bytes) -> bytes:
    """One tag with its PreviousTagSize; the timestamp wraps at 2^32 ms (~49.7 days)."""
    ts = timestamp_ms & 0xFFFFFFFF
    size = len(body)
    head = bytes([kind]) + size.to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24, 0, 0, 0])
    return head + body + struct.pack(">I", 11 + size)


def avc_sequence_header(video: VideoParams) -> bytes:
    """The video tag body that carries the AVCDecoderConfigurationRecord."""
    return bytes([_AVC_KEYFRAME, _SEQUENCE_HEADER, 0, 0, 0]) + avcc_config(video.sps, video.pps)


def aac_sequence_header(audio: AudioParams) -> bytes:
    """The audio tag body that carries the AudioSpecificConfig."""
    return bytes([_AAC, _SEQUENCE_HEADER]) + audio.config


def avc_frame(keyframe: bool, composition_ms: int, nals: bytes) -> bytes:
    """A video tag body: one access unit's NAL units with 4-byte lengths (as MediaPacket has
    them, and as the sequence header's lengthSizeMinusOne=3 says); composition time = pts - dts."""
    cts = (composition_ms & 0xFFFFFF).to_bytes(3, "big")  # SI24
    return bytes([_AVC_KEYFRAME if keyframe else _AVC_INTER, _PAYLOAD]) + cts + nals


def aac_frame(raw: bytes) -> bytes:
    """An audio tag body: one raw AAC frame (no ADTS header)."""
    return bytes([_AAC, _PAYLOAD]) + raw
