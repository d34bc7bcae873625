"""hub/stream.py, output.py, streams.py: a stream's lifetime, outputs, subscribers and events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream, StreamNotReady
from gateway.hub.streams import StreamManager
from tests.fixtures.hub import RecordingInput, bare_stream, recorded_stream
from tests.fixtures.media import h264_clip
from tests.fixtures.net import run_async

VIDEO, CLIP = h264_clip(20, gop=10)
PARAMS = StreamParams(VIDEO, None)


def clip() -> list[MediaPacket]:
    """Fresh copies: the stream moves packets onto its timeline in place."""
    return [MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data) for p in CLIP]


class Feed:
    def __init__(self, stream: Stream, name: str = "feed"):
        self.stream, self.name, self.closed = stream, name, False

    def close(self) -> None:
        self.closed = True

    def describe(self) -> dict[str, Any]:
        return {self.name: True, "shared": self.name}


class Segmenter(Feed):
    pass


class Recorder:
    """A subscriber that notes what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    def on_params(self, params: StreamParams) -> None:
        self.heard.append(("params", params))

    def on_packet(self, packet: MediaPacket) -> None:
        self.heard.append(("packet", packet.dts))


def registry() -> OutputRegistry:
    made = OutputRegistry()
    made.register(Feed, Feed)
    made.register(Segmenter, lambda stream: Segmenter(stream, "segmenter"))
    return made


# -- outputs ---------------------------------------------------------------------------


def test_an_output_is_made_once_by_its_class_and_found_without_making():
    stream = bare_stream(registry=registry())
    assert stream.existing(Feed) is None
    feed = stream.output(Feed)
    assert type(feed) is Feed and feed.stream is stream
    assert stream.output(Feed) is feed and stream.existing(Feed) is feed
    assert stream.existing(Segmenter) is None  # a subclass is its own kind
    segmenter = stream.output(Segmenter)
    assert segmenter is not feed and stream.output(Feed) is feed


def test_unregistered_kinds_and_factories_making_the_wrong_thing_are_refused():
    made = OutputRegistry()
    made.register(Segmenter, Feed)
    stream = bare_stream(registry=made)
    with pytest.raises(LookupError, match="no output Feed is registered"):
        stream.output(Feed)
    with pytest.raises(TypeError, match="the factory of Segmenter made a Feed"):
        stream.output(Segmenter)
    assert stream.existing(Feed) is None and stream.existing(Segmenter) is None


def test_describe_merges_the_input_and_the_outputs_made_so_far():
    stream = recorded_stream(RecordingInput({"onvifProfile": "main", "shared": "input"}), registry=registry())
    assert stream.describe() == {"onvifProfile": "main", "shared": "input"}
    stream.output(Feed)
    stream.output(Segmenter)
    assert stream.describe() == {"onvifProfile": "main", "feed": True, "segmenter": True, "shared": "segmenter"}


def test_close_stops_the_input_and_closes_every_output():
    source = RecordingInput()
    stream = recorded_stream(source, registry=registry())
    feed, segmenter = stream.output(Feed), stream.output(Segmenter)
    stream.start()
    stream.close()
    assert feed.closed and segmenter.closed and not source.running and not stream.running


# -- lifetime ----------------------------------------------------------------------------


def test_viewers_start_the_input_once_and_the_last_one_leaves_after_the_linger():
    async def run() -> None:
        source = RecordingInput()
        stream = recorded_stream(source, linger=0.2)
        stream.acquire()
        stream.acquire()
        assert source.starts == 1 and stream.state == "connecting" and stream.viewers == 2
        stream.release()
        stream.release()
        assert source.running  # lingers
        await asyncio.sleep(0.02)
        stream.acquire()  # back within the linger: nothing restarts
        stream.release()
        released = time.monotonic()
        await asyncio.wait_for(source.stopped.wait(), 5)
        assert not source.running and source.starts == 1
        assert source.stopped_at - released >= 0.2 - 0.005  # the linger began again at the last release
        assert stream.state == "idle" and not stream.running
        stream.release()  # an extra release does not go below zero viewers
        stream.acquire()
        assert source.starts == 2 and stream.viewers == 1

    run_async(run)


def test_an_always_on_stream_stays_up_without_viewers():
    async def run() -> None:
        source = RecordingInput()
        stream = recorded_stream(source, linger=0.01, always_on=True)
        stream.acquire()
        stream.release()
        await asyncio.sleep(0.05)
        assert source.running

    run_async(run)


def test_the_manager_starts_always_on_streams_and_closes_removed_ones():
    manager = StreamManager(SourceSettings(1.0), registry())
    always, on_demand = RecordingInput(), RecordingInput()
    conf = SourceConf.from_json({"strToken": "a", "nConnectType": "H5_ALWAYS"}, "a")
    stream = manager.add(conf, always)
    manager.add(SourceConf.from_json({"strToken": "b"}, "b"), on_demand)
    assert always.running and not on_demand.starts and manager.get("a") is stream
    feed = stream.output(Feed)
    manager.stop_all()
    assert not always.running and feed.closed and manager.get("a") is None and manager.streams == {}


# -- waiting for media ------------------------------------------------------------------


def test_wait_ready_says_what_the_source_last_reported():
    async def run() -> None:
        stream = recorded_stream(RecordingInput())
        stream.start()
        with pytest.raises(StreamNotReady, match="stream t not ready: no video from the source yet"):
            await stream.wait_ready(0.01)
        stream.on_session_end("connection refused")
        assert stream.state == "offline" and stream.last_error == "connection refused"
        with pytest.raises(StreamNotReady, match="stream t not ready: connection refused"):
            await stream.wait_ready(0.01)

    run_async(run)


def test_wait_ready_returns_the_parameters_at_the_first_keyframe():
    async def run() -> None:
        stream = bare_stream()
        waiting = asyncio.ensure_future(stream.wait_ready(1.0))
        stream.on_session_start(PARAMS)
        await asyncio.sleep(0)
        assert not waiting.done()  # parameters alone are not media
        stream.on_packet(clip()[0])
        assert await waiting == PARAMS
        assert stream.online and stream.last_error is None and stream.online_since
        stream.on_session_end(None)  # a clean end: the next client waits for the next session
        with pytest.raises(StreamNotReady):
            await stream.wait_ready(0.01)

    run_async(run)


# -- subscribers and the input's events -----------------------------------------------------


def test_attach_replays_parameters_and_the_cached_gop():
    stream = bare_stream()
    early = Recorder()
    stream.attach(early)
    assert early.heard == []  # nothing to replay yet
    stream.on_session_start(PARAMS)
    for p in clip()[:13]:  # a GOP of 10, then three frames of the next
        stream.on_packet(p)
    late = Recorder()
    stream.attach(late)
    assert late.heard == [("params", PARAMS)] + [("packet", n * 3600) for n in range(10, 13)]
    assert early.heard[0] == ("params", PARAMS) and len(early.heard) == 14
    stream.detach(late)
    stream.detach(late)  # twice is harmless
    stream.on_packet(clip()[13])
    assert len(late.heard) == 4 and len(early.heard) == 15


def test_new_parameters_restart_the_gop_but_the_same_ones_do_not():
    stream = bare_stream()
    recorder = Recorder()
    stream.attach(recorder)
    stream.on_session_start(PARAMS)
    stream.on_packet(clip()[0])
    stream.on_params(StreamParams(VIDEO, None))  # equal: nothing happens
    assert len(stream.gop.packets) == 1 and recorder.heard.count(("params", PARAMS)) == 1
    other = StreamParams(h264_clip(1, width=320, height=240)[0], None)
    stream.on_params(other)
    assert stream.gop.packets == [] and recorder.heard[-1] == ("params", other) and stream.params == other


def test_a_session_switch_continues_the_timeline_as_the_same_session():
    stream = bare_stream()
    recorder = Recorder()
    stream.attach(recorder)
    stream.on_session_start(PARAMS)
    for p in clip()[:15]:
        stream.on_packet(p)
    since = stream.online_since
    stream.on_session_switch(PARAMS)  # a renewed input: its clock starts anywhere
    for p in clip()[:5]:
        stream.on_packet(p)
    dts = [value for what, value in recorder.heard if what == "packet"]
    assert dts == [n * 3600 for n in range(20)]
    assert stream.online and stream.online_since == since and recorder.heard.count(("params", PARAMS)) == 1
    assert stream.gop.keyframe is not None and stream.gop.keyframe.dts == 15 * 3600  # its keyframe began a GOP


def test_a_session_end_forgets_the_gop_and_a_new_session_goes_on_after_it():
    stream = recorded_stream(RecordingInput())
    stream.start()
    recorder = Recorder()
    stream.attach(recorder)
    stream.on_session_start(PARAMS)
    for p in clip()[:12]:
        stream.on_packet(p)
    stream.on_session_end("camera gone")
    assert stream.gop.packets == [] and stream.state == "offline" and stream.last_error == "camera gone"
    stream.on_session_start(PARAMS)
    assert stream.online and stream.last_error is None
    for p in clip()[:2]:
        stream.on_packet(p)
    assert [v for what, v in recorder.heard if what == "packet"][-3:] == [11 * 3600, 12 * 3600, 13 * 3600]
    assert stream.packets_in == 14
    stream.stop()
    stream.on_session_end("late error")  # from an input already stopped: the state stays
    assert stream.state == "idle" and stream.last_error == "late error"
