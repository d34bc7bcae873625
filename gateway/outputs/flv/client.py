"""One HTTP-FLV or WS-FLV client of a stream's FLV feed: its own timeline, written straight
into its socket.

The feed makes each tag's body once per stream; the client dates it on its own timeline
(0 at its first keyframe, as a fresh FLV file starts, so ffmpeg, VLC and flv.js see what
they see from any FLV server) and writes it, framed for its transport (an HTTP chunk or a
WebSocket binary frame), with no task switch. Clients that started at the same keyframe
share one copy of each tag.

A client's audio starts with its video: when the stream's first audio comes later than the
client's keyframe (audio that a camera starts after its first keyframe, as RTSP sources often
do), the client first gets silent AAC from its 0 up to it. MSE plays only where every track
has media, and mpegts.js fills gaps between audio frames but not one before the first, so
without it playback would wait at 0 until the audio came.

The transport's buffer is the client's bounded queue: past the budget it skips frames to
the next keyframe it can take (the hub's one back-pressure policy, hub/backpressure.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.formats import flv
from gateway.formats.aac import FRAME_SAMPLES, is_aac_lc, silent_frame
from gateway.hub.backpressure import KeyframeSkip
from gateway.hub.packet import AudioParams
from gateway.outputs.ws_fmp4.message import ws_binary_message

DEFAULT_BUDGET = 4 * 1024 * 1024  # unsent bytes: a few seconds of a 4-8 Mbps stream
SILENCE_MAX_SECONDS = 10  # a later first audio frame gets no silence before it


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag's body, made once per stream, and its decode time on the stream's timeline."""

    kind: int  # flv.AUDIO_TAG or flv.VIDEO_TAG
    ms: int
    keyframe: bool  # a video keyframe (audio tags: False)
    body: bytes


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


Framing = Callable[[bytes], bytes]
FRAMINGS: dict[str, Framing] = {"http": http_chunk, "ws": ws_binary_message}
Renders = dict[tuple[int, str], bytes]  # one tag's framed bytes by (client's base, framing)


class FlvClient:
    def __init__(self, transport: asyncio.WriteTransport, framing: str, budget: int = DEFAULT_BUDGET):
        self.transport = transport
        self.framing = framing
        self.budget = budget
        self.skip = KeyframeSkip()
        self.ended = asyncio.Event()  # set when the output goes away (source deleted)
        self.base: int | None = None  # the stream's ms at this client's 0: its first keyframe
        self.last_ms = 0  # the client's time of the last tag sent
        self.audio: AudioParams | None = None  # AAC-LC: silence can lead the client's first audio
        self.audio_sent = False
        self.bytes_sent = 0

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    @property
    def skips(self) -> int:
        return self.skip.skips

    def send_start(self, video: bool, audio: AudioParams | None, sequence_headers: list[Tag]) -> None:
        """The FLV header and the sequence headers, before any frame; always sent."""
        self.audio = audio if audio is not None and is_aac_lc(audio) else None
        self._write(self._start(video, audio is not None, sequence_headers))

    def send_sequence_headers(self, sequence_headers: list[Tag]) -> None:
        """New codec parameters mid-stream, dated at the last tag sent."""
        if self.base is not None:
            self._write(self._framed((t.kind, self.last_ms, t.body) for t in sequence_headers))

    def offer(self, tag: Tag, renders: Renders | None = None) -> None:
        """Send `tag` now, unless the client is behind or has not reached its first keyframe
        (audio from before it too: it would have a negative time)."""
        if self.closed:
            return
        if self.base is None:
            if not tag.keyframe:
                return
            self.base = tag.ms
        if tag.ms < self.base:
            return
        behind = self.transport.get_write_buffer_size() + len(tag.body) > self.budget
        if not self.skip.admit(tag.keyframe, behind):
            return
        key = (self.base, self.framing)
        data = renders.get(key) if renders is not None else None
        if data is None:
            data = self._framed(((tag.kind, tag.ms - self.base, tag.body),))
            if renders is not None:
                renders[key] = data
        self.last_ms = max(self.last_ms, tag.ms - self.base)
        if tag.kind == flv.AUDIO_TAG and not self.audio_sent:
            self.audio_sent = True
            data = self._silence_until(tag.ms - self.base) + data
        self.transport.write(data)
        self.bytes_sent += len(data)

    def _silence_until(self, ms: int) -> bytes:
        """Silent AAC frames that end at `ms` (the first audio frame's time) and start less
        than a frame after this client's 0, framed."""
        audio = self.audio
        if audio is None or ms > SILENCE_MAX_SECONDS * 1000:
            return b""
        rate = audio.sample_rate
        frames = ms * rate // (1000 * FRAME_SAMPLES)
        if not frames:
            return b""
        body = flv.aac_frame(silent_frame(rate, audio.channels))
        back = range(frames, 0, -1)
        return self._framed((flv.AUDIO_TAG, ms - n * FRAME_SAMPLES * 1000 // rate, body) for n in back)

    def _start(self, video: bool, audio: bool, sequence_headers: list[Tag]) -> bytes:
        """What a client gets first: the FLV header and the sequence headers at 0, framed."""
        tags = b"".join(flv.tag(t.kind, 0, t.body) for t in sequence_headers)
        return FRAMINGS[self.framing](flv.header(video, audio) + tags)

    def _framed(self, tags: Iterable[tuple[int, int, bytes]]) -> bytes:
        """(kind, client ms, body) tags as the client's transport carries them (an RTMP
        player, outputs/rtmp/player.py, makes them RTMP messages instead)."""
        return FRAMINGS[self.framing](b"".join(flv.tag(kind, ms, body) for kind, ms, body in tags))

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)
            self.bytes_sent += len(data)
