"""The fMP4 feed's WebSocket messages: made once per stream, given each viewer's decode times.

A message is one video frame's moof+mdat with the audio fragments that came before it
(or audio alone when video stops). Every viewer's media starts at decode time 0
(PROTOCOLS.md §2, rule 5), so viewers differ in the 8-byte baseMediaDecodeTime of each
moof: a message keeps each fragment split around it, and a viewer's bytes are the shared
pieces joined around its own decode times. Viewers that joined at the same keyframe have
the same times and share one joined copy (the feed's render cache).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.formats.fmp4 import fragment, split_at_decode_time
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket

_DECODE_TIME = struct.Struct(">Q")


def ws_binary_header(size: int) -> bytes:
    """The header of an unmasked, final WebSocket binary frame (RFC 6455 §5.2), as a server sends it."""
    if size < 126:
        return struct.pack(">BB", 0x82, size)
    if size < 65536:
        return struct.pack(">BBH", 0x82, 126, size)
    return struct.pack(">BBQ", 0x82, 127, size)


def ws_binary_message(payload: bytes) -> bytes:
    return ws_binary_header(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class Piece:
    """One packet's moof+mdat, split around its decode time."""

    head: bytes
    tail: bytes
    dts: int  # the stream's decode time, in the track's timescale
    rate: int  # the track's timescale
    start: int  # dts and end of the packet in 90 kHz ticks, to compare audio with video
    end: int

    @classmethod
    def of(cls, sequence: int, packet: MediaPacket, rate: int) -> Piece:
        head, tail = split_at_decode_time(fragment(sequence, packet.kind, [packet]))
        start = packet.dts * VIDEO_TIMESCALE // rate
        end = (packet.dts + packet.duration) * VIDEO_TIMESCALE // rate
        return cls(head, tail, packet.dts, rate, start, end)

    @property
    def size(self) -> int:
        return len(self.head) + 8 + len(self.tail)


@dataclass(frozen=True, slots=True)
class Message:
    audio: tuple[Piece, ...]  # audio before the video frame, in decode order
    video: Piece | None
    keyframe: bool

    @property
    def audio_start(self) -> int | None:
        return self.audio[0].start if self.audio else None

    def size(self, video_only: bool) -> int:
        return (0 if video_only else sum(p.size for p in self.audio)) + (self.video.size if self.video else 0)

    def render(self, video_base: int, video_only: bool, audio_floor: int) -> bytes | None:
        """This message as one WebSocket frame for a viewer whose time 0 is the stream's
        `video_base` (90 kHz), without audio before `audio_floor` (90 kHz; audio the viewer
        already has, or from before its first keyframe). None if nothing is left."""
        parts: list[bytes] = []
        if not video_only:
            for piece in self.audio:
                if piece.start >= audio_floor:
                    base = video_base * piece.rate // VIDEO_TIMESCALE
                    parts += (piece.head, _DECODE_TIME.pack(piece.dts - base), piece.tail)
        if self.video is not None:
            parts += (self.video.head, _DECODE_TIME.pack(self.video.dts - video_base), self.video.tail)
        if not parts:
            return None
        return b"".join([ws_binary_header(sum(map(len, parts))), *parts])
