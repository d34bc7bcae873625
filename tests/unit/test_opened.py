"""ingest/opened.py: one opened input (a fake PyAV container) and the events read from it."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import pytest

from gateway.formats import nal
from gateway.formats.aac import aac_params
from gateway.formats.mpegts import adts_header
from gateway.ingest import opened
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.opened import LONG_PROBE_US, OpenInput
from tests.fixtures.fake_av import (
    FakeAv,
    FakeCodecContext,
    FakeContainer,
    FakePacket,
    FakeStream,
    FakeStreams,
    camera_frames,
    frame_id,
    parameter_sets,
    video_stream,
)
from tests.fixtures.media import encoded_h264


@pytest.fixture
def fake_av(monkeypatch: pytest.MonkeyPatch) -> FakeAv:
    return FakeAv().install(monkeypatch)


def never() -> bool:
    return False


def no_wait(seconds: float) -> bool:
    return False


def summary(events) -> list:
    """Events as ("start"|"params", None) or ("packet", (kind, tag, frame, keyframe))."""
    out = []
    for kind, value in events:
        if kind == "packet":
            ident = frame_id(value.data) if value.kind == "video" else (None, value.dts)
            out.append((kind, (value.kind, *ident, value.keyframe)))
        else:
            out.append((kind, None))
    return out


def test_an_input_opens_with_its_options_and_closes(fake_av):
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer(
        "fake://cam", FakeStreams([video_stream()]), [], options=options
    )
    spec = InputSpec("fake://cam", {"rtsp_transport": "tcp"}, label="cam")
    source = OpenInput(spec, enable_audio=True)
    assert fake_av.container("fake://cam").options == {"rtsp_transport": "tcp"} and source.opened_in >= 0
    assert source.renew_at is None  # it does not expire
    source.close()
    assert fake_av.container("fake://cam").closed


def test_an_expiring_input_is_renewed_at_three_quarters_of_its_life_or_renew_lead_before(fake_av, monkeypatch):
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer("fake://cam", FakeStreams([video_stream()]), [])
    monkeypatch.setattr(opened, "RENEW_LEAD", 8.0)
    now = time.time()
    long = OpenInput(InputSpec("fake://cam", expires_at=now + 120), enable_audio=False)
    assert long.renew_at == pytest.approx(now + 90, abs=0.5)
    short = OpenInput(InputSpec("fake://cam", expires_at=now + 20), enable_audio=False)
    assert short.renew_at == pytest.approx(now + 12, abs=0.5)
    late = OpenInput(InputSpec("fake://cam", expires_at=now - 1), enable_audio=False)
    assert late.renew_at == pytest.approx(now - 9, abs=0.5)  # already due: renewed at once


def test_an_input_without_h264_or_h265_is_refused_and_closed(fake_av):
    audio = FakeStream("audio", FakeCodecContext("aac", aac_params(16000, 1).config, 16000, 1))
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer("fake://cam", FakeStreams([audio]), [])
    with pytest.raises(SourceError, match=r"^cam: no H\.264 or H\.265 video stream$"):
        OpenInput(InputSpec("fake://cam", label="cam"), enable_audio=True)
    assert fake_av.container("fake://cam").closed


def test_an_flv_input_seen_without_video_is_probed_again_for_longer(fake_av):
    """An RTMP origin may hold video back until its next keyframe."""
    audio = FakeStream("audio", FakeCodecContext("aac", aac_params(16000, 1).config, 16000, 1))

    def flv(options: dict[str, str]) -> FakeContainer:
        late_video = int(options["analyzeduration"]) >= LONG_PROBE_US
        return FakeContainer("fake://flv", FakeStreams([audio, video_stream()] if late_video else [audio]), [])

    fake_av.inputs["fake://flv"] = flv
    source = OpenInput(InputSpec("fake://flv", {"analyzeduration": "500000", "x": "y"}), enable_audio=True)
    first, second = fake_av.opened
    assert first.closed and not second.closed and source.container is second
    assert second.options == {"analyzeduration": str(LONG_PROBE_US), "x": "y"}
    assert source.session.video_stream is not None and source.session.audio_stream is audio


def test_a_container_the_reader_cannot_take_is_closed(fake_av):
    broken = video_stream(b"\x01\x64")  # an avcC record cut short
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer("fake://cam", FakeStreams([broken]), [])
    with pytest.raises(ValueError, match="not an avcC record"):
        OpenInput(InputSpec("fake://cam"), enable_audio=False)
    assert fake_av.container("fake://cam").closed


def test_a_session_starts_at_a_keyframe_with_parameter_sets_and_audio_only_after_it(fake_av):
    video = video_stream()
    audio = FakeStream("audio", FakeCodecContext("aac", aac_params(16000, 1).config, 16000, 1))
    adts = adts_header(aac_params(16000, 1), 2) + b"\x21\x00"

    def sound(n: int) -> FakePacket:
        return FakePacket(audio, adts, n * 640, n * 640, Fraction(1, 16000))

    sps, _ = parameter_sets()
    key_without_sets = FakePacket(video, nal.to_annexb([b"\x65\x07\x00\x00"]), 0, 0, is_keyframe=True)
    frames = list(camera_frames(video, 7, first=3, count=5))  # frames 3, 4 and the keyframe 5, 6, 7
    packets = [key_without_sets, sound(0), frames[0], frames[1], sound(1), frames[2], sound(2), frames[3]]
    packets.append(FakePacket(audio, b"", 3 * 640, 3 * 640, Fraction(1, 16000)))  # empty packets are skipped
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer("fake://cam", FakeStreams([video, audio]), packets)
    source = OpenInput(InputSpec("fake://cam"), enable_audio=True)
    events = list(source.events(never, no_wait))
    assert summary(events) == [
        ("start", None),
        ("packet", ("video", 7, 5, True)),
        ("packet", ("audio", None, 2 * 640, True)),
        ("packet", ("video", 7, 6, False)),
    ]
    assert events[0][1].video.sps == sps and events[0][1].audio == aac_params(16000, 1)
    assert events[0][1] == source.session.params


def test_a_session_starts_at_a_keyframe_though_the_parameter_sets_are_known_before(fake_av):
    sps, pps = parameter_sets()
    video = video_stream(nal.to_annexb([sps, pps]))  # RTSP: the sets came in the SDP
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer(
        "fake://cam", FakeStreams([video]), camera_frames(video, 7, first=3, count=4)
    )
    source = OpenInput(InputSpec("fake://cam"), enable_audio=False)
    events = list(source.events(never, no_wait))
    assert summary(events) == [("start", None), ("packet", ("video", 7, 5, True)), ("packet", ("video", 7, 6, False))]


def test_new_parameters_mid_session_and_audio_parameters_learnt_from_adts(fake_av):
    video = video_stream()
    audio = FakeStream("audio", FakeCodecContext("aac"))  # rate unknown until the first ADTS header
    frames = list(camera_frames(video, 1, count=3))
    sps2, pps2, _ = encoded_h264(1, 320, 240)
    bigger = FakePacket(video, nal.to_annexb([sps2, pps2, b"\x65\x01\x00\x03"]), 3 * 3600, 3 * 3600, is_keyframe=True)
    sound = FakePacket(audio, adts_header(aac_params(8000, 1), 2) + b"\x21\x00", 100, 100, Fraction(1, 8000))
    packets = [frames[0], sound, frames[1], bigger, frames[2]]
    fake_av.inputs["fake://cam"] = lambda options: FakeContainer("fake://cam", FakeStreams([video, audio]), packets)
    source = OpenInput(InputSpec("fake://cam"), enable_audio=True)
    events = list(source.events(never, no_wait))
    assert [kind for kind, _ in events] == [
        "start",
        "packet",
        "params",
        "packet",
        "packet",
        "params",
        "packet",
        "packet",
    ]
    assert events[0][1].audio is None and events[2][1].audio == aac_params(8000, 1)
    assert (events[5][1].video.width, events[5][1].video.height) == (320, 240)


def test_a_file_plays_at_its_own_speed_and_loops_by_seeking(fake_av):
    video = video_stream()
    clip = list(camera_frames(video, 1, count=3, gop=3))  # a list: each pass reads it again
    fake_av.inputs["fake://clip"] = lambda options: FakeContainer("fake://clip", FakeStreams([video]), clip)
    source = OpenInput(InputSpec("fake://clip", realtime=True), enable_audio=False)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    events = source.events(never, wait)
    got = [next(events) for _ in range(8)]  # two passes, each a session: start, 3 frames
    frames = [("packet", (1, n)) for n in range(3)]
    assert [(k, frame_id(v.data) if k == "packet" else None) for k, v in got] == 2 * [("start", None), *frames]
    assert fake_av.container("fake://clip").seeks == 1
    # Each pass's frames wait until their time (40 ms apart) after its first frame.
    assert len(waits) == 4 and all(0.02 < w <= 0.08 for w in waits)


def test_a_file_that_cannot_seek_ends_and_halting_stops_reading(fake_av):
    video = video_stream()
    container = FakeContainer("fake://clip", FakeStreams([video]), camera_frames(video, 1, count=3))

    def refuse_seek(offset: int) -> None:
        raise av.error.ArgumentError(22, "Invalid argument")

    container.seek = refuse_seek
    fake_av.inputs["fake://clip"] = lambda options: container
    source = OpenInput(InputSpec("fake://clip", realtime=True), enable_audio=False)
    assert [k for k, _ in source.events(never, no_wait)] == ["start", "packet", "packet", "packet"]
    stop_after = iter([False, False, True])  # asked before each packet read
    fake_av.inputs["fake://live"] = lambda options: FakeContainer(
        "fake://live", FakeStreams([video]), camera_frames(video, 2)
    )
    live = OpenInput(InputSpec("fake://live"), enable_audio=False)
    assert [k for k, _ in live.events(lambda: next(stop_after), no_wait)] == ["start", "packet", "packet"]
