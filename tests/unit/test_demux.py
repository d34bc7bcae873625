"""ingest/demux.py and renewal.py: the demux thread over fake PyAV inputs.

Reconnects with backoff, make-before-break renewal of expiring inputs, and stopping. The
timing constants are shortened; inputs give a frame every 5 ms (tests/fixtures/fake_av.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import pytest

from gateway.hub.packet import MediaPacket, StreamParams
from gateway.ingest import demux, opened
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.demux import DemuxThread, SourceInput
from tests.fixtures.fake_av import FakeAv, FakeCodecContext, FakeContainer, FakeStream, FakeStreams, camera, frame_id
from tests.fixtures.hub import bare_stream
from tests.fixtures.net import run_async

LIFE = 0.4  # seconds an expiring input's URL is valid; renewed 0.1 s before it expires
RENEW_RETRY = 0.1
BACKOFF_FIRST, BACKOFF_CAP = 0.04, 0.1


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opened, "RENEW_LEAD", 0.1)
    monkeypatch.setattr(demux, "RENEW_RETRY", RENEW_RETRY)
    monkeypatch.setattr(demux, "BACKOFF_FIRST", BACKOFF_FIRST)
    monkeypatch.setattr(demux, "BACKOFF_CAP", BACKOFF_CAP)


@pytest.fixture
def fake_av(monkeypatch: pytest.MonkeyPatch) -> FakeAv:
    return FakeAv().install(monkeypatch)


class Source:
    """resolve() gives `plan(n)` for its n-th call (from 1), which may raise."""

    def __init__(self, plan: Callable[[int], InputSpec]):
        self.plan = plan
        self.resolved: list[float] = []  # time.monotonic() of each call

    async def resolve(self) -> InputSpec:
        self.resolved.append(time.monotonic())
        return self.plan(len(self.resolved))

    def describe(self) -> dict[str, Any]:
        return {}


def expiring(n: int) -> InputSpec:
    return InputSpec(f"fake://{n}", label=f"input{n}", expires_at=time.time() + LIFE)


def lasting(n: int) -> InputSpec:
    return InputSpec(f"fake://{n}", label=f"input{n}")


class Sink:
    """The hub side, in the event loop: every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def _note(self, what: str, value: Any) -> None:
        self.calls.append((what, value))

    def on_session_start(self, params: StreamParams) -> None:
        self._note("start", params)

    def on_session_switch(self, params: StreamParams) -> None:
        self._note("switch", params)

    def on_params(self, params: StreamParams) -> None:
        self._note("params", params)

    def on_packet(self, packet: MediaPacket) -> None:
        self._note("packet", (*frame_id(packet.data), packet.keyframe))

    def on_session_end(self, error: str | None) -> None:
        self._note("end", error)

    def story(self) -> list[str]:
        """What happened, each run of packets from one input told once: 'packets from 2'."""
        out: list[str] = []
        for what, value in self.calls:
            if what == "packet":
                line = f"packets from {value[0]}"
                if not out or out[-1] != line:
                    out.append(line)
            else:
                out.append(f"end: {value}" if what == "end" else what)
        return out

    def after(self, what: str) -> list[tuple[int, int, bool]]:
        """The packets (input tag, frame, keyframe) after the first `what` call."""
        index = next(i for i, call in enumerate(self.calls) if call[0] == what)
        return [value for kind, value in self.calls[index:] if kind == "packet"]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for `predicate` while the loop runs (the thread needs it to resolve and deliver)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def hold_the_loop(seconds: float) -> None:
    """Keep the event loop busy (called from a coroutine, it blocks the loop)."""
    time.sleep(seconds)


def threads_of(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in (f"demux-{name}", f"renew-{name}")]


@contextlib.asynccontextmanager
async def demuxing(source: Source, sink: Sink) -> AsyncIterator[DemuxThread]:
    """A running demux thread; stopped, and its renewal threads gone, on leaving."""
    thread = DemuxThread("cam", source, sink, asyncio.get_running_loop(), enable_audio=False)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        await eventually(lambda: not threads_of("cam"))


# -- renewal --------------------------------------------------------------------------------


def test_an_expiring_input_is_renewed_make_before_break(fake_av):
    still_open_at_renewal: list[bool] = []

    def renewed(options: dict[str, str]) -> FakeContainer:
        still_open_at_renewal.append(not fake_av.container("fake://1").closed)
        return camera("fake://2", 2, first=3)  # joins mid-GOP: frames 3, 4, then the keyframe 5

    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1)
    fake_av.inputs["fake://2"] = renewed
    fake_av.inputs["fake://3"] = lambda options: camera("fake://3", 3)
    sink = Sink()

    async def run() -> None:
        source = Source(expiring)
        async with demuxing(source, sink):
            await eventually(lambda: "packets from 2" in sink.story())
            assert sink.story()[:4] == ["start", "packets from 1", "switch", "packets from 2"]
        assert still_open_at_renewal == [True]  # made before the break
        assert fake_av.container("fake://1").closed  # and broken
        assert sink.after("switch")[0] == (2, 5, True)  # the switch is at the renewed input's keyframe
        start, switch = [value for what, value in sink.calls if what in ("start", "switch")][:2]
        assert start == switch  # the same camera: the same parameters
        # Renewed RENEW_LEAD (0.1 s) before it expires, the URL's quarter life being shorter.
        assert LIFE - 0.1 - 0.005 <= source.resolved[1] - source.resolved[0] < LIFE

    run_async(run)
    assert not any(line.startswith("end") for line in sink.story())
    assert all(c.closed for c in fake_av.opened)


class DtsRecorder:
    """A subscriber noting the decode time of every packet."""

    def __init__(self) -> None:
        self.dts: list[int] = []

    def on_params(self, params: StreamParams) -> None:
        pass

    def on_packet(self, packet: MediaPacket) -> None:
        self.dts.append(packet.dts)


def test_the_hub_sees_one_session_with_a_continuous_timeline_across_renewals(fake_av):
    for n in range(1, 10):  # each input's clock starts elsewhere
        fake_av.inputs[f"fake://{n}"] = lambda options, n=n: camera(f"fake://{n}", n, first=100 * n)
    recorder = DtsRecorder()

    async def run() -> None:
        stream = bare_stream()
        stream.source = SourceInput("cam", Source(expiring), enable_audio=False)
        stream.attach(recorder)
        stream.start()
        try:
            await eventually(lambda: len(fake_av.opened) >= 3 and len(recorder.dts) > 150)
            assert stream.online and stream.last_error is None
        finally:
            stream.stop()
            await eventually(lambda: not threads_of("cam"))

    run_async(run)
    assert [b - a for a, b in itertools.pairwise(recorder.dts)] == [3600] * (len(recorder.dts) - 1)


@pytest.mark.parametrize("failure", ["resolve", "resolve asks to wait", "open", "no keyframe"])
def test_a_failed_renewal_keeps_the_current_input_a_while_longer(fake_av, failure):
    wait = 0.3 if failure == "resolve asks to wait" else RENEW_RETRY

    def plan(n: int) -> InputSpec:
        if n == 2 and failure.startswith("resolve"):
            raise SourceError("platform down", retry_after=0.3 if failure == "resolve asks to wait" else 0)
        return expiring(n)

    def second(options: dict[str, str]) -> FakeContainer:
        if failure == "open":
            raise av.error.HTTPForbiddenError(-858797304, "Server returned 403 Forbidden (access denied)")
        return camera("fake://2", 2, first=1, count=3)  # three frames and no keyframe

    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1)
    fake_av.inputs["fake://2"] = second
    fake_av.inputs["fake://3"] = lambda options: camera("fake://3", 3)
    sink = Sink()

    async def run() -> None:
        source = Source(plan)
        async with demuxing(source, sink):
            await eventually(lambda: "packets from 3" in sink.story())
        assert sink.story() == ["start", "packets from 1", "switch", "packets from 3"]
        assert source.resolved[2] - source.resolved[1] >= wait - 0.01  # retried after RENEW_RETRY
        assert sink.after("switch")[0] == (3, 0, True)

    run_async(run)
    assert all(c.closed for c in fake_av.opened)


def test_an_input_ending_before_its_renewal_is_ready_is_a_new_session_on_the_renewed_input(fake_av):
    ended = threading.Event()

    def renewal_opening() -> bool:
        if any(url == "fake://2" for url, _ in fake_av.attempts):
            ended.set()
        return ended.is_set()

    def slow(options: dict[str, str]) -> FakeContainer:
        ended.wait(5)  # still opening when input 1 ends
        time.sleep(0.05)
        return camera("fake://2", 2)

    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1, until=renewal_opening)
    fake_av.inputs["fake://2"] = slow
    fake_av.inputs["fake://3"] = lambda options: camera("fake://3", 3)
    sink = Sink()

    async def run() -> None:
        source = Source(expiring)
        async with demuxing(source, sink):
            await eventually(lambda: "packets from 2" in sink.story())
            assert len(source.resolved) == 2  # the renewal took over: no reconnect
        assert sink.story()[:5] == [
            "start",
            "packets from 1",
            "end: input1 ended before its renewal was ready",
            "start",
            "packets from 2",
        ]

    run_async(run)


def test_an_input_ending_just_after_its_renewal_came_up_is_still_a_switch(fake_av, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=demux.__name__)
    renewals: list[demux.Renewal] = []

    class Tracked(demux.Renewal):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            renewals.append(self)

    monkeypatch.setattr(demux, "Renewal", Tracked)
    # Input 1 ends at the first read after the renewal began, once that renewal is up.
    fake_av.inputs["fake://1"] = lambda options: camera(
        "fake://1", 1, until=lambda: bool(renewals) and renewals[0].done.wait(5)
    )
    fake_av.inputs["fake://2"] = lambda options: camera("fake://2", 2)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(expiring), sink):
            await eventually(lambda: "packets from 2" in sink.story())
        assert sink.story()[:4] == ["start", "packets from 1", "switch", "packets from 2"]
        assert "input1 ended before its renewal; switching" in caplog.text

    run_async(run)


def test_a_renewal_not_up_in_time_is_abandoned_and_the_source_reconnects(fake_av, monkeypatch):
    monkeypatch.setattr(demux, "RENEW_TIMEOUT", 0.1)
    fake_av.inputs["fake://1"] = lambda options: camera(
        "fake://1", 1, until=lambda: any(url == "fake://2" for url, _ in fake_av.attempts)
    )

    def too_slow(options: dict[str, str]) -> FakeContainer:
        time.sleep(0.4)
        return camera("fake://2", 2)

    fake_av.inputs["fake://2"] = too_slow
    fake_av.inputs["fake://3"] = lambda options: camera("fake://3", 3)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(expiring), sink):
            await eventually(lambda: "packets from 3" in sink.story())
            await eventually(lambda: len(fake_av.opened) == 3 and fake_av.container("fake://2").closed)
        story = sink.story()
        assert story[:3] == ["start", "packets from 1", "end: input1 ended before its renewal was ready"]
        assert story[-2:] == ["start", "packets from 3"] and "packets from 2" not in story

    run_async(run)


# -- reconnecting ------------------------------------------------------------------------------


def test_an_input_that_ends_is_opened_again_at_once(fake_av, monkeypatch):
    monkeypatch.setattr(demux, "BACKOFF_FIRST", 30.0)  # a backoff here would time the test out
    monkeypatch.setattr(demux, "BACKOFF_CAP", 30.0)
    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1, count=6)  # then a clean end
    fake_av.inputs["fake://2"] = lambda options: camera("fake://2", 2)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(lasting), sink):
            await eventually(lambda: "packets from 2" in sink.story())
        assert sink.story() == ["start", "packets from 1", "end: None", "start", "packets from 2"]

    run_async(run)
    assert all(c.closed for c in fake_av.opened)


def test_a_read_error_ends_the_session_with_it_and_reconnects_after_a_backoff(fake_av):
    broken = camera("fake://1", 1, count=8)
    broken.end = av.error.InvalidDataError(-1094995529, "Invalid data found when processing input")
    fake_av.inputs["fake://1"] = lambda options: broken
    fake_av.inputs["fake://2"] = lambda options: camera("fake://2", 2)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(lasting), sink):
            await eventually(lambda: "packets from 2" in sink.story())
        story = sink.story()
        assert story == [
            "start",
            "packets from 1",
            "end: Invalid data found when processing input",
            "start",
            "packets from 2",
        ]
        assert fake_av.attempts[1][1] - fake_av.attempts[0][1] >= BACKOFF_FIRST

    run_async(run)
    assert all(c.closed for c in fake_av.opened)


def test_failures_to_connect_back_off_and_say_why(fake_av):
    def refused(options: dict[str, str]) -> FakeContainer:
        raise av.error.ConnectionRefusedError(111, "Connection refused")

    def bug(options: dict[str, str]) -> FakeContainer:
        raise RuntimeError("a bug")

    audio_only = FakeStream("audio", FakeCodecContext("aac", b"\x14\x08", 16000, 1))
    fake_av.inputs.update({"fake://1": refused, "fake://2": refused, "fake://3": bug})
    fake_av.inputs["fake://4"] = lambda options: FakeContainer("fake://4", FakeStreams([audio_only]), [])
    fake_av.inputs["fake://5"] = lambda options: camera("fake://5", 5)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(lasting), sink):
            await eventually(lambda: "packets from 5" in sink.story())
        assert sink.story() == [
            "end: Connection refused",
            "end: Connection refused",
            "end: internal error: RuntimeError",
            "end: input4: no H.264 or H.265 video stream",
            "start",
            "packets from 5",
        ]

    run_async(run)
    times = [t for _, t in fake_av.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expected = [BACKOFF_FIRST, 2 * BACKOFF_FIRST, BACKOFF_CAP, BACKOFF_CAP]  # doubling, capped
    assert all(gap >= wait - 0.005 for gap, wait in zip(gaps, expected, strict=True)), gaps
    assert fake_av.container("fake://4").closed


def test_a_source_asking_to_be_left_alone_is_waited_for(fake_av):
    def plan(n: int) -> InputSpec:
        if n == 1:
            raise SourceError("platform rate limit", retry_after=0.3)
        return lasting(n)

    fake_av.inputs["fake://2"] = lambda options: camera("fake://2", 2)
    sink = Sink()

    async def run() -> None:
        source = Source(plan)
        async with demuxing(source, sink):
            await eventually(lambda: "packets from 2" in sink.story())
        assert sink.story() == ["end: platform rate limit", "start", "packets from 2"]
        assert source.resolved[1] - source.resolved[0] >= 0.3 - 0.005

    run_async(run)


# -- stopping ----------------------------------------------------------------------------------


def test_stop_ends_the_thread_and_nothing_is_delivered_after_it(fake_av):
    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1)
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(lasting), sink) as thread:
            await eventually(lambda: len(sink.calls) > 10)
            hold_the_loop(0.05)  # the thread's deliveries queue up in it
            thread.stop()
            delivered = len(sink.calls)
            await eventually(lambda: not thread.alive, timeout=1.0)
            await asyncio.sleep(0.01)
            assert len(sink.calls) == delivered  # what was queued was dropped
        assert fake_av.container("fake://1").closed

    run_async(run)


def test_stop_ends_a_long_backoff_at_once(fake_av):
    def plan(n: int) -> InputSpec:
        raise SourceError("platform down", retry_after=60)

    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(plan), sink) as thread:
            await eventually(lambda: sink.story() == ["end: platform down"])
            thread.stop()
            await eventually(lambda: not thread.alive, timeout=1.0)

    run_async(run)


def test_stop_during_a_renewal_closes_what_the_renewal_opened(fake_av):
    def slow(options: dict[str, str]) -> FakeContainer:
        time.sleep(0.2)
        return camera("fake://2", 2)

    fake_av.inputs["fake://1"] = lambda options: camera("fake://1", 1)
    fake_av.inputs["fake://2"] = slow
    sink = Sink()

    async def run() -> None:
        async with demuxing(Source(expiring), sink) as thread:
            await eventually(lambda: any(url == "fake://2" for url, _ in fake_av.attempts))
            thread.stop()
        # demuxing() waited for the renewal's thread too: it closed its input on its way out.
        assert [c.url for c in fake_av.opened] == ["fake://1", "fake://2"]
        assert all(c.closed for c in fake_av.opened)
        assert "switch" not in sink.story()

    run_async(run)
