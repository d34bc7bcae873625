"""A received RTP track's timestamps as ticks on the hub's clock for its packets.

RTP timestamps are 32 bits and start anywhere (RFC 3550 §5.1): the wrap is undone by
adding each packet's signed distance from the last one. Each track's first packet is put
where the wall clock says it came, counted from the publisher's start, so that the video
and audio of one publisher line up on the hub's timeline although their RTP clocks have
unrelated starts.
"""

from __future__ import annotations

import time

WRAP = 1 << 32
HALF = 1 << 31


def unwrapped_step(last: int, timestamp: int) -> int:
    """The signed distance from `last` to `timestamp`, both 32-bit, across a wrap."""
    step = (timestamp - last) % WRAP
    return step - WRAP if step >= HALF else step


class RtpClock:
    def __init__(self, clock_rate: int, out_rate: int, started: float):
        self.clock_rate = clock_rate  # the RTP clock (the SDP's rtpmap)
        self.out_rate = out_rate  # the hub's clock for the track: 90 kHz video, the sample rate for audio
        self.started = started  # time.monotonic() when the publisher started recording
        self._last: int | None = None
        self._count = 0  # RTP ticks since the publisher started, wraps undone

    def ticks(self, timestamp: int) -> int:
        """`timestamp` (32-bit RTP) on the hub's clock for the track."""
        if self._last is None:
            self._count = int((time.monotonic() - self.started) * self.clock_rate)
        else:
            self._count += unwrapped_step(self._last, timestamp)
        self._last = timestamp
        return self._count * self.out_rate // self.clock_rate
