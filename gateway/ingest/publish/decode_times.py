"""Decode times for video that arrives with presentation times only (RTP), B-frames or not.

Frames come in decode order; with B-frames their presentation times are out of order, and
a decode time may not be later than its frame's presentation time. With a reorder depth
R (how many frames may be shown before one decoded earlier), frame i decodes at the
i-R-th smallest presentation time: known at once, from a heap of the times not given out
yet. R is not in the SDP, so it is learnt: 0 until a frame's presentation time comes
before the last decode time, then one more each time that happens. While it is learnt (the
first frames of a publisher with B-frames) a decode time can come out later than its
presentation time, and the frame is shown then: a few frames late, once.
"""

from __future__ import annotations

import heapq

MAX_REORDER = 16  # frames: H.264's and H.265's largest decoded picture buffer


class DecodeTimes:
    def __init__(self) -> None:
        self.reorder = 0
        self.pending: list[int] = []  # presentation times not given out as decode times yet
        self.last: int | None = None

    def decode_time(self, pts: int) -> int:
        """The decode time of the next frame in decode order, shown at `pts`: later than the
        last one, and not after `pts` once the reorder depth is learnt."""
        heapq.heappush(self.pending, pts)
        if self.last is not None and pts < self.last and self.reorder < MAX_REORDER:
            self.reorder += 1
        dts = heapq.heappop(self.pending) if len(self.pending) > self.reorder else pts
        if self.last is not None:
            dts = max(dts, self.last + 1)
        self.last = dts
        return dts
