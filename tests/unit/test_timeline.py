"""hub/timeline.py: one continuous timeline per stream, whatever the connections do."""

from __future__ import annotations

from gateway.formats.aac import aac_params
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.timeline import DEFAULT_VIDEO_DURATION, Timeline

PARAMS = StreamParams(None, aac_params(16000, 1), "PCMA")  # only the audio clocks matter here


def video(dts: int, keyframe: bool = False, duration: int = 3600, pts: int | None = None) -> MediaPacket:
    return MediaPacket("video", dts, dts if pts is None else pts, duration, keyframe, b"v")


def audio(pts: int, kind: str = "audio") -> MediaPacket:
    return MediaPacket(kind, pts, pts, 1024, True, b"a")


def connection(timeline: Timeline, packets: list[MediaPacket]) -> list[MediaPacket]:
    """Place one connection's packets; those kept, moved onto the timeline."""
    timeline.new_connection()
    return [p for p in packets if timeline.place(p, PARAMS)]


def test_first_keyframe_starts_at_zero_with_pts_kept_relative():
    placed = connection(Timeline(), [video(900_000, True, pts=907_200), video(903_600, pts=903_600)])
    assert [(p.dts, p.pts) for p in placed] == [(0, 7200), (3600, 3600)]


def test_a_new_connection_continues_right_after_the_last_frame():
    timeline = Timeline()
    first = connection(timeline, [video(5_000_000 + i * 3600, i == 0) for i in range(3)])
    # The camera reconnects with its clock anywhere: backwards, or far ahead.
    second = connection(timeline, [video(10 + i * 3600, i == 0) for i in range(3)])
    third = connection(timeline, [video(9_000_000_000 + i * 3600, i == 0) for i in range(2)])
    assert [p.dts for p in first + second + third] == [i * 3600 for i in range(8)]


def test_new_connection_is_only_connected_after_its_first_packet():
    timeline = Timeline()
    assert not timeline.connected
    timeline.new_connection()
    assert not timeline.connected
    assert timeline.place(video(123, True), PARAMS)
    assert timeline.connected
    timeline.new_connection()
    assert not timeline.connected


def test_decode_time_never_goes_backwards():
    """A camera clock that stutters: a frame no later than the last is moved one tick past it."""
    placed = connection(Timeline(), [video(0, True), video(3600, pts=10800), video(3600), video(1000), video(10800)])
    assert [p.dts for p in placed] == [0, 3600, 3601, 3602, 10800]
    assert placed[1].pts == 10800 and placed[2].pts == 3601  # pts moves with its dts


def test_audio_before_the_keyframe_and_overlapping_audio_are_dropped():
    timeline = Timeline()
    # 16 kHz audio; the keyframe is at 1 s of the camera clock (16000 audio samples).
    packets = [video(90_000, True), audio(15_000), audio(16_000), audio(17_024), audio(17_024), audio(17_000)]
    placed = connection(timeline, packets)
    assert [(p.kind, p.dts) for p in placed] == [("video", 0), ("audio", 0), ("audio", 1024)]
    # After nine more frames, a connection starts at 36000 ticks (6400 samples): audio
    # from just before its keyframe is dropped, though it would not overlap the audio sent.
    connection(timeline, [video(0, True)] + [video(i * 3600) for i in range(1, 9)])
    timeline.new_connection()
    assert timeline.place(video(0, True), PARAMS)
    early, at_key = audio(-1), audio(0)
    assert not timeline.place(early, PARAMS)
    assert timeline.place(at_key, PARAMS) and at_key.dts == 6400


def test_audio_overlapping_the_previous_connection_is_dropped():
    timeline = Timeline()
    connection(timeline, [video(0, True), audio(0), audio(1024), audio(2048)])  # audio runs to 3072
    timeline.new_connection()
    assert timeline.place(video(0, True), PARAMS)  # at 3600 ticks = sample 640
    overlapping, later = audio(0), audio(2048)
    assert not timeline.place(overlapping, PARAMS)  # would be 640, not after the last (2048)
    assert timeline.place(later, PARAMS) and later.dts == 2688


def test_audio_without_its_parameters_is_dropped_and_g711_runs_at_8_khz():
    timeline = Timeline()
    timeline.new_connection()
    assert timeline.place(video(90_000, True), StreamParams(None, None))
    assert not timeline.place(audio(8000), StreamParams(None, None))  # no audio track known
    assert not timeline.place(audio(8000, "g711"), StreamParams(None, aac_params(16000, 1)))  # no G.711
    timeline.new_connection()  # the next keyframe goes at 3600 ticks = 320 samples at 8 kHz
    assert timeline.place(video(0, True), PARAMS)
    g711 = audio(160, "g711")
    assert timeline.place(g711, PARAMS) and g711.dts == 320 + 160


def test_frames_without_a_duration_get_the_spacing_seen():
    timeline = Timeline()
    placed = connection(timeline, [video(0, True, duration=0), video(3000, duration=0), video(6000, duration=0)])
    assert [p.duration for p in placed] == [DEFAULT_VIDEO_DURATION, 3000, 3000]
    # A jump of more than 5 s is a gap, not a frame rate: the spacing learnt stays.
    jump = video(6000 + 90_000 * 6, duration=0)
    assert timeline.place(jump, PARAMS) and jump.duration == 3000
    # A frame with its own duration keeps it, and the next connection starts after it.
    last = video(6000 + 90_000 * 6 + 3000, duration=4500)
    assert timeline.place(last, PARAMS) and last.duration == 4500
    [first] = connection(timeline, [video(0, True)])
    assert first.dts == last.dts + 4500
