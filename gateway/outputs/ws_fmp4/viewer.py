"""One WebSocket viewer of a stream's fMP4 feed: its own timeline, written straight into its socket.

The feed makes each message once per stream; the viewer writes it to its transport at
once, with no task switch. Its media starts at decode time 0 at its first keyframe, as a
fresh h5stream connection does (PROTOCOLS.md §2 rule 5: the stock player never seeks).

The transport's buffer is the viewer's bounded queue: a viewer whose unsent bytes pass
the budget skips frames until the next keyframe once it has caught up (the hub's one
back-pressure policy), so it can never slow the others or grow memory. Its timeline then
goes on from the last frame it got, without a gap its player would stall at.
"""

from __future__ import annotations

import asyncio

from gateway.hub.backpressure import KeyframeSkip
from gateway.outputs.ws_fmp4.message import Message, Piece

DEFAULT_BUDGET = 4 * 1024 * 1024  # unsent bytes: a few seconds of a 4-8 Mbps stream

Renders = dict[tuple[int, bool], bytes | None]  # one message's bytes by (video base, video only)


class TransportViewer:
    def __init__(
        self,
        transport: asyncio.WriteTransport,
        budget: int = DEFAULT_BUDGET,
        video_only: bool = False,
    ):
        self.transport = transport
        self.video_only = video_only  # a muted player: audio would only add latency
        self.budget = budget
        self.skip = KeyframeSkip()
        self.ended = asyncio.Event()  # set when the output goes away (source deleted)
        # In the stream's 90 kHz decode time: this viewer's 0, the end of the last video
        # frame sent, and the earliest audio still to send (after what was sent, and not
        # before the first keyframe).
        self.video_base: int | None = None
        self.video_next = 0
        self.audio_floor = 0
        self.bytes_sent = 0

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    @property
    def skips(self) -> int:
        return self.skip.skips

    def send_init(self, data: bytes) -> None:
        """An init segment: always sent."""
        if not self.closed:
            self.transport.write(data)
            self.bytes_sent += len(data)

    def offer(self, message: Message, renders: Renders | None = None) -> None:
        """Send `message` now, on this viewer's timeline, unless the viewer is behind or has
        not reached its first keyframe. `renders` shares the bytes among viewers of one base."""
        if self.closed:
            return
        video = message.video
        if self.video_base is None:
            if video is None or not message.keyframe:
                return
            self.video_base = self.video_next = self.audio_floor = video.start
        skipping = self.skip.skipping
        behind = self.transport.get_write_buffer_size() + message.size(self.video_only) > self.budget
        if not self.skip.admit(message.keyframe, behind):
            return
        if skipping and video is not None:
            self._continue_at(video)
        data = self._render(message, renders)
        if video is not None:
            self.video_next = video.end
        if message.audio and not self.video_only:
            self.audio_floor = max(self.audio_floor, message.audio[-1].start + 1)
        if data is not None:
            self.transport.write(data)
            self.bytes_sent += len(data)

    def _continue_at(self, keyframe: Piece) -> None:
        """Back from skipping: the keyframe goes right after the last frame sent."""
        shift = keyframe.start - self.video_next
        assert self.video_base is not None
        self.video_base += shift
        self.audio_floor += shift

    def _render(self, message: Message, renders: Renders | None) -> bytes | None:
        base = self.video_base
        assert base is not None
        audio_start = message.audio_start
        if renders is None or not (self.video_only or audio_start is None or audio_start >= self.audio_floor):
            return message.render(base, self.video_only, self.audio_floor)
        key = (base, self.video_only)
        if key in renders:
            return renders[key]
        data = renders[key] = message.render(base, self.video_only, self.audio_floor)
        return data
