"""The HLS segmenter's first segment: where it begins and ends when the first client comes
to a stream that is live (its GOP cached by the hub) or not yet, with a hub Stream fed by
hand (tests/fixtures/hub.py) and the 3 s clip of tests/test_hls.py (a keyframe each
second, 25 fps), with 2 s target segments."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.config.settings import HlsSettings
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.hls.segmenter import HlsSegmenter
from tests.fixtures.hub import RecordingInput, recorded_stream
from tests.fixtures.net import run_async
from tests.test_hls import clip_packets  # noqa: F401  (a fixture: 3 s of H.264 + AAC, a keyframe each second)

pytestmark = pytest.mark.unit

FRAME = 3600  # 25 fps in the 90 kHz video timescale
TARGET = 2  # seconds: two GOPs of the clip


def live_stream() -> Stream:
    """An H5_ALWAYS stream, started: media flows before any HLS client comes."""
    stream = recorded_stream(RecordingInput(), always_on=True)
    stream.start()
    return stream


def camera(stream: Stream, clip: tuple[StreamParams, list[MediaPacket]]) -> Iterator[MediaPacket]:
    """The clip over and over as one camera session (the renewed input of a source goes on
    the same way), one packet per step; yields each packet after the stream has it."""
    params, packets = clip
    switch = False
    while True:
        (stream.on_session_switch if switch else stream.on_session_start)(params)
        switch = True
        for p in packets:
            packet = MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data)
            stream.on_packet(packet)
            yield packet


def until(steps: Iterator[MediaPacket], done) -> MediaPacket:
    """Feed packets until `done(packet)` holds for the one just fed; that packet."""
    for packet in steps:
        if done(packet):
            return packet
    raise AssertionError("unreachable: the camera never ends")


def is_keyframe(packet: MediaPacket) -> bool:
    return packet.kind == "video" and packet.keyframe


def first_client(test) -> None:
    """Run `test` in an event loop (touch() keeps timers on it), the segmenter stopped after."""
    run_async(test, 30)


def test_a_live_streams_first_segment_begins_at_its_cached_keyframe_and_ends_at_the_next(clip_packets):
    async def test() -> None:
        stream = live_stream()
        steps = camera(stream, clip_packets)
        # Live before any HLS client: 1.36 s in, the hub caches the GOP of the keyframe at 1 s.
        until(steps, lambda p: p.kind == "video" and p.dts == 34 * FRAME)
        cached = stream.gop.keyframe
        assert cached is not None and cached.dts == 25 * FRAME
        seg = HlsSegmenter(stream, HlsSettings(4, TARGET))
        asked = time.time()
        seg.touch()  # the first request: attach() replays the cached GOP at once
        try:
            first = seg.segments[0]
            assert first.first_dts == cached.dts and not first.complete
            assert [p.independent for p in first.parts] == [True, False]  # 0.4 s replayed: two 200 ms parts
            assert first.packets[0] is cached
            # A real past segment: its first frame was live 0.36 s before the newest one, which is live now.
            assert first.start == pytest.approx(asked - 9 * FRAME / VIDEO_TIMESCALE, abs=0.05)
            # It ends at the next keyframe (2 s), a GOP, short of the 2 s target.
            keyframe = until(steps, lambda p: seg.has_segments())
            assert is_keyframe(keyframe) and keyframe.dts == 50 * FRAME
            assert first.complete and first.duration == pytest.approx(1.0)
            assert [s.msn for s in seg.segments] == [0, 1] and seg.segments[1].first_dts == keyframe.dts
            # So do the next two (players wait for three), then segments are the target's length.
            until(steps, lambda p: len(seg.complete_segments) == 5)
            assert [s.duration for s in seg.complete_segments] == pytest.approx([1.0, 1.0, 1.0, 2.0, 2.0])
            assert seg.max_duration == TARGET
        finally:
            seg.stop()

    first_client(test)


def test_without_a_cached_gop_the_first_segments_are_the_first_gops(clip_packets):
    async def test() -> None:
        stream = recorded_stream(RecordingInput())  # on demand: the first client starts it
        seg = HlsSegmenter(stream, HlsSettings(4, TARGET))
        seg.touch()  # before the source has sent anything (a cold on-demand source)
        try:
            assert seg.segments == []
            steps = camera(stream, clip_packets)
            until(steps, lambda p: seg.has_segments())
            first = seg.segments[0]
            assert first.first_dts == 0 and first.duration == pytest.approx(1.0)
            until(steps, lambda p: len(seg.complete_segments) == 4)
            assert [s.duration for s in seg.complete_segments] == pytest.approx([1.0, 1.0, 1.0, 2.0])
        finally:
            seg.stop()

    first_client(test)


def test_a_later_first_client_starts_at_the_cached_keyframe_again_and_numbers_go_on(clip_packets):
    async def test() -> None:
        stream = live_stream()
        steps = camera(stream, clip_packets)
        until(steps, lambda p: p.kind == "video" and p.dts == 10 * FRAME)
        seg = HlsSegmenter(stream, HlsSettings(4, TARGET))
        seg.touch()
        until(steps, lambda p: len(seg.complete_segments) == 2)
        numbers = [s.msn for s in seg.segments]
        seg.stop()  # no client for a while: segments forgotten, the stream released
        assert seg.segments == [] and seg not in stream.subscribers
        until(steps, lambda p: p.kind == "video" and p.dts == 85 * FRAME)  # 3.4 s: the GOP of 3 s is cached
        seg.touch()
        try:
            first = seg.segments[0]
            assert first.msn == numbers[-1] + 1 and first.first_dts == stream.gop.keyframe.dts == 75 * FRAME
            until(steps, lambda p: seg.has_segments())
            assert first.duration == pytest.approx(1.0) and not first.discontinuity
        finally:
            seg.stop()

    first_client(test)


def video_run(part: bytes) -> tuple[int, list[int]]:
    """(tfdt, sample durations) of the video track of a part's moof."""
    at, end = 8, int.from_bytes(part[:4], "big")  # inside the moof
    tfdt, durations = None, []
    while at < end:
        size, kind = int.from_bytes(part[at : at + 4], "big"), part[at + 4 : at + 8]
        if kind == b"traf":
            body = part[at + 8 : at + size]
            track = int.from_bytes(body[body.index(b"tfhd") + 8 : body.index(b"tfhd") + 12], "big")
            if track == 1:
                tfdt = int.from_bytes(body[body.index(b"tfdt") + 8 : body.index(b"tfdt") + 16], "big")
                trun = body.index(b"trun") + 4
                count = int.from_bytes(body[trun + 4 : trun + 8], "big")
                durations = [int.from_bytes(body[trun + 12 + 16 * i : trun + 16 + 16 * i], "big") for i in range(count)]
        at += size
    assert tfdt is not None
    return tfdt, durations


def test_parts_are_one_unbroken_timeline_through_camera_jitter(clip_packets):
    """A loaded camera stamps frames late, early, or drops some: each part starts where the
    last one ended (a gap or step back there is a discontinuity to MSE), frames keep their
    decode times within a part, and a frame after a gap begins a part rather than making
    one longer than the target (PART-TARGET stays 200 ms)."""
    params, packets = clip_packets
    jittered, dropped = [], {12, 13, 37}  # frames the camera dropped (2 in a row: 120 ms without one)
    for p in packets:
        frame = p.dts // FRAME
        if p.kind == "video" and frame in dropped:
            continue
        shift = (-1500, 1700, 0, 400)[frame % 4] if p.kind == "video" and not p.keyframe else 0
        jittered.append(MediaPacket(p.kind, p.dts + shift, p.pts + shift, p.duration, p.keyframe, p.data))

    async def test() -> None:
        stream = live_stream()
        seg = HlsSegmenter(stream, HlsSettings(4, 1))
        seg.touch()
        try:
            steps = camera(stream, (params, jittered))
            fed: list[MediaPacket] = []  # as the hub placed them
            until(steps, lambda p: fed.append(p) or len(seg.complete_segments) == 4)
            parts = [part for s in seg.complete_segments for part in s.parts]
            runs = [video_run(part.data) for part in parts]
            for (start, durations), (next_start, _) in zip(runs, runs[1:]):
                assert next_start == start + sum(durations)
            assert all(d > 0 for _, durations in runs for d in durations)
            assert seg.part_target == pytest.approx(0.2, abs=0.021)  # at most half a frame over
            assert [part.duration for part in parts] == pytest.approx([sum(d) / VIDEO_TIMESCALE for _, d in runs])
            # Within a part, a frame's decode time is the camera's (the first may move to the part's start).
            video = {p.dts for p in fed if p.kind == "video"}
            for start, durations in runs:
                times = [start + sum(durations[:i]) for i in range(1, len(durations))]
                assert set(times) <= video
        finally:
            seg.stop()

    first_client(test)
