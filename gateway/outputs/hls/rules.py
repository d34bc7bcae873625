"""The LL-HLS request rules (RFC 8216bis §6.2.5.2 and §6.2.6): what a playlist or part
request waits for before it is answered, how far ahead it may ask, and what it is told
when the wait runs out.

Pure over a segmenter, no HTTP: a rule is a Wait, or an ApiError for a request it refuses.
The HTTP side answers once the Wait's `ready()` holds (HlsSegmenter.when checks it on every
change, so a new part answers exactly the requests that waited for it), or with `late()`
when it does not in time. A Wait is one object with methods rather than closures: it is
made per request, at hundreds of requests a second.
"""

from __future__ import annotations

import math

from gateway.hub.stream import READY_TIMEOUT
from gateway.outputs.hls.playlist import HOLD_BACK_PARTS
from gateway.outputs.hls.segmenter import START_SEGMENTS, HlsSegmenter
from gateway.web.errors import ApiError

BLOCK_TIMEOUT = 3  # target durations a blocking request may wait before a 503
ADVANCE_SECONDS = 3.0  # how far ahead a blocking request may ask, in parts (LL-HLS §6.2.5.2)


class Wait:
    """What an answer waits for: `ready()` to hold, for at most `timeout` seconds. When it
    runs out, `late()` is the error to answer with (None: the answer as things are then).
    (Each kind sets every field in its own __init__: no super() call per request.)"""

    __slots__ = ("seg", "timeout")
    seg: HlsSegmenter
    timeout: float

    def ready(self) -> bool:
        raise NotImplementedError

    def late(self) -> ApiError | None:
        return None


class FirstSegment(Wait):
    """A first playlist (the LL-HLS master's): until there is a complete segment, the least
    a player starts from (hls.js takes a playlist without one for an error and asks again a
    second later). On a live stream that is the segment of its cached GOP, complete at the
    next keyframe."""

    def __init__(self, seg: HlsSegmenter):
        self.seg = seg
        self.timeout = READY_TIMEOUT + BLOCK_TIMEOUT * seg.target

    def ready(self) -> bool:
        return self.seg.has_segments()

    def late(self) -> ApiError:
        return not_ready(self.seg)


class FirstSegments(FirstSegment):
    """A first HLS v1/v2 media playlist: START_SEGMENTS complete segments. Chromium's own
    HLS (which the stock h5s player's <video src> gets there) does not start on a live
    playlist of fewer; the first ones are a GOP each (segmenter), so on a live stream this
    is three GOPs, less what was cached, after the first request."""

    def ready(self) -> bool:
        return self.seg.has_segments(min(START_SEGMENTS, self.seg.segment_count))


class LiveStart(FirstSegment):
    """A first LL-HLS media playlist: a complete segment and, while it is the only one, more
    than PART-HOLD-BACK of parts in the open one. An LL-HLS player starts PART-HOLD-BACK
    from the end, at the independent part before that point; hls.js 1.7 starting in the
    parts of a playlist's first segment loads them again and again, stalls at its end and
    plays on a second later than it should (bench/hls_js.py), so with one complete segment
    the start has to fall in the open one. A segment too short to hold that much (a low
    frame rate's long parts) is enough once it is about done."""

    def ready(self) -> bool:
        seg = self.seg
        if seg.has_segments(2):
            return True
        open_seg = seg.open_segment
        if open_seg is None or not seg.has_segments():
            return False
        parts = sum(p.duration for p in open_seg.parts)
        return parts > HOLD_BACK_PARTS * seg.part_target or parts + seg.part_target >= seg.target


class BlockingReload(Wait):
    """A blocking playlist reload: until segment `msn` is complete (`_HLS_msn`), or until
    its part `part` exists (`_HLS_msn` and `_HLS_part`)."""

    __slots__ = ("msn", "part")

    def __init__(self, seg: HlsSegmenter, msn: int, part: int | None):
        self.seg = seg
        self.timeout = BLOCK_TIMEOUT * seg.target + (0 if seg.has_segments() else READY_TIMEOUT)
        self.msn = msn
        self.part = part

    def ready(self) -> bool:
        seg = self.seg
        if not seg.has_segments():
            return False
        if self.part is not None:
            return seg.has_part(self.msn, self.part)
        s = seg.segment(self.msn)
        return s.complete if s is not None else self.msn < seg.segments[0].msn

    def late(self) -> ApiError:
        seg = self.seg
        if seg.active and seg.has_segments():
            return ApiError(503, f"segment {self.msn} part {self.part} did not come in time")
        return not_ready(seg)


class HintedPart(Wait):
    """A part not made yet that a playlist names next (its preload hint): until it exists
    or never will (the segment ended before it); then it is answered as it is."""

    __slots__ = ("index", "msn")

    def __init__(self, seg: HlsSegmenter, msn: int, index: int):
        self.seg = seg
        self.timeout = BLOCK_TIMEOUT * seg.target
        self.msn = msn
        self.index = index

    def ready(self) -> bool:
        s = self.seg.segment(self.msn)
        return (s is not None and self.index < len(s.parts)) or self.seg.part_gone(self.msn, self.index)


def playlist_wait(seg: HlsSegmenter, msn: int | None, part: int | None, ll: bool) -> Wait:
    """What a media playlist request (`ll`: LL-HLS's) waits for: with `_HLS_msn` (and
    `_HLS_part`), that segment (or part); without, what a player starts from. ApiError 400
    for `_HLS_part` alone or for a segment or part too far ahead of the live edge."""
    if msn is None:
        if part is not None:
            raise ApiError(400, "_HLS_part needs _HLS_msn")
        return LiveStart(seg) if ll else FirstSegments(seg)
    advance = math.ceil(ADVANCE_SECONDS / seg.part_target)
    open_seg = seg.open_segment
    parts_now = len(open_seg.parts) if open_seg is not None and open_seg.msn == msn else 0
    if msn > seg.next_msn or (part is not None and part >= parts_now + advance):
        raise ApiError(
            400, f"_HLS_msn={msn} _HLS_part={part} is too far ahead of the live edge (next segment {seg.next_msn})"
        )
    return BlockingReload(seg, msn, part)


def part_wait(seg: HlsSegmenter, msn: int, index: int) -> Wait | None:
    """What a request for a part that does not exist waits for: a part the segmenter makes
    next is waited for; any other is answered at once (it is gone, or never will be)."""
    return HintedPart(seg, msn, index) if (msn, index) in upcoming_parts(seg) else None


def upcoming_parts(seg: HlsSegmenter) -> list[tuple[int, int]]:
    """The part the open segment makes next, and the first part of the segment after it."""
    open_seg = seg.open_segment
    return [(seg.next_msn, 0)] + ([(open_seg.msn, len(open_seg.parts))] if open_seg is not None else [])


def not_ready(seg: HlsSegmenter) -> ApiError:
    """The error for a stream without media in time (or no longer segmented)."""
    if not seg.active:
        return ApiError(404, f"source {seg.stream.token} was removed")
    reason = seg.stream.last_error or "no video from the source yet"
    return ApiError(503, f"stream {seg.stream.token} not ready: {reason}")


def window(seg: HlsSegmenter) -> str:
    """The segments a client can have, for the reason of a 404."""
    if not seg.segments:
        return ""
    return f" (segments {seg.segments[0].msn}-{seg.segments[-1].msn} are)"
