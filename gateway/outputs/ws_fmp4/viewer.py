"""Per-viewer delivery of ready-made bytes, straight into each viewer's socket.

An output makes its bytes once per stream and hands the same object to every viewer,
which writes it to its transport at once: no task switch and no copy per viewer. The
transport's buffer is the viewer's bounded queue: a viewer whose unsent bytes pass the
budget skips frames until the next keyframe once it has caught up (the hub's one
back-pressure policy), so it can never slow the others or grow memory.
"""

from __future__ import annotations

import asyncio

from gateway.hub.backpressure import KeyframeSkip

DEFAULT_BUDGET = 4 * 1024 * 1024  # unsent bytes: a few seconds of a 4-8 Mbps stream


class TransportViewer:
    def __init__(self, transport: asyncio.WriteTransport, budget: int = DEFAULT_BUDGET, video_only: bool = False):
        self.transport = transport
        self.video_only = video_only  # a muted player: audio would only add latency
        self.budget = budget
        self.skip = KeyframeSkip()
        self.ended = asyncio.Event()  # set when the output goes away (source deleted)

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    def put(self, data: bytes, keyframe: bool, essential: bool = False) -> None:
        """Send `data` now, unless the viewer is behind. `essential` data is always sent."""
        if self.closed:
            return
        if not essential and not self.skip.admit(
            keyframe, behind=self.transport.get_write_buffer_size() + len(data) > self.budget
        ):
            return
        self.transport.write(data)

    @property
    def skips(self) -> int:
        return self.skip.skips
