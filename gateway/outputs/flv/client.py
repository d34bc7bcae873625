"""One HTTP-FLV or WS-FLV client of a stream's FLV feed: its own timeline, written straight
into its socket.

The feed makes each tag's body once per stream; the client dates it on its own timeline
(0 at its first keyframe, as a fresh FLV file starts, so ffmpeg, VLC and flv.js see what
they see from any FLV server) and writes it, framed for its transport (an HTTP chunk or a
WebSocket binary frame), with no task switch. Clients that started at the same keyframe
share one copy of each tag.

The transport's buffer is the client's bounded queue: past the budget it skips frames to
the next keyframe it can take (the hub's one back-pressure policy, hub/backpressure.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from gateway.formats import flv
from gateway.hub.backpressure import KeyframeSkip
from gateway.outputs.ws_fmp4.message import ws_binary_message

DEFAULT_BUDGET = 4 * 1024 * 1024  # unsent bytes: a few seconds of a 4-8 Mbps stream


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
        self.bytes_sent = 0

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    @property
    def skips(self) -> int:
        return self.skip.skips

    def send_start(self, video: bool, audio: bool, sequence_headers: list[Tag]) -> None:
        """The FLV header and the sequence headers, before any frame; always sent."""
        self._write(flv.header(video, audio) + self._dated(sequence_headers, 0))

    def send_sequence_headers(self, sequence_headers: list[Tag]) -> None:
        """New codec parameters mid-stream, dated at the last tag sent."""
        if self.base is not None:
            self._write(self._dated(sequence_headers, self.last_ms))

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
            data = FRAMINGS[self.framing](flv.tag(tag.kind, tag.ms - self.base, tag.body))
            if renders is not None:
                renders[key] = data
        self.last_ms = max(self.last_ms, tag.ms - self.base)
        self.transport.write(data)
        self.bytes_sent += len(data)

    def _dated(self, tags: list[Tag], ms: int) -> bytes:
        return b"".join(flv.tag(t.kind, ms, t.body) for t in tags)

    def _write(self, data: bytes) -> None:
        if not self.closed:
            data = FRAMINGS[self.framing](data)
            self.transport.write(data)
            self.bytes_sent += len(data)
