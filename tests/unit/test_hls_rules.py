"""The LL-HLS request rules (outputs/hls/rules.py) through the HTTP side's answers, with a
real HlsSegmenter fed packet by packet in one event loop: no gateway process, no socket.

Every request goes through http.answer as the lean front's fast route calls it, so
"at once" means the answer is returned, and "when the part appears" means the reply comes
inside the on_packet call that made the part.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.auth import Auth
from gateway.config.file import SourceConf
from gateway.config.settings import HlsSettings, SourceSettings
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.hls import rules
from gateway.outputs.hls.grants import HlsGrants
from gateway.outputs.hls.http import Ask, answer, json_errors
from gateway.outputs.hls.responses import HlsAnswers
from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.outputs.hls.signer import HlsSigner
from gateway.web.errors import ApiError
from gateway.web.front import LATER, LeanResponse
from tests.fixtures.net import run_async
from tests.test_hls import clip_packets  # noqa: F401  (a fixture: 3 s of H.264 + AAC, a keyframe each second)

pytestmark = pytest.mark.unit

PARTS_PER_SEGMENT = 5  # 1 s segments of 200 ms parts at 25 fps


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the segmenter's waits and timers need one),
    in a thread of its own: in a whole run, Playwright's sync API holds this thread's loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        run_async(lambda: test(*args, **kwargs), 30)

    return run


class StillInput:
    """An input that starts and stops but delivers nothing: the test feeds the stream."""

    def start(self, stream: Stream) -> StillInput:
        return self

    def stop(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {}


class Camera:
    """The stream and its HLS answers, fed by hand: one packet per step, the clip over and
    over as one continuous session (as a renewed input goes on)."""

    def __init__(self, clip: tuple[StreamParams, list[MediaPacket]], segment_count: int = 4, target: int = 1):
        registry = OutputRegistry()  # as app.py's output_registry
        registry.register(HlsSegmenter, lambda stream: HlsSegmenter(stream, HlsSettings(segment_count, target)))
        registry.register(HlsAnswers, HlsAnswers.of)
        self.stream = Stream(SourceConf.from_json({"strToken": "t"}, "t"), StillInput(), SourceSettings(1.0), registry)
        self.params, self.packets = clip
        self._steps = self._play()
        # What http.py reads of a Gateway: the token's source, its stream, logins off.
        self.gw = SimpleNamespace(
            config=SimpleNamespace(sources={"t": self.stream.conf}),
            streams={"t": self.stream},
            settings=SimpleNamespace(http=SimpleNamespace(auth=False)),
        )
        self.signer = HlsSigner(b"k" * 32, Auth([], 600, 5, 300))
        self.grants = HlsGrants(b"k" * 32)
        self.replies: list[LeanResponse] = []  # answers given LATER, in order

    @property
    def seg(self) -> HlsSegmenter:
        return self.stream.output(HlsSegmenter)

    def get(self, name: str, variant: str = "ll", **query: object) -> LeanResponse | object:
        """The answer to GET /t/{name}?{query} (or /hls/{variant}/t/{name}?{query}), or LATER
        (then it comes in self.replies)."""
        params = {k: str(v) for k, v in query.items()}
        ask = Ask(self.gw, self.signer, self.grants, variant, "t", name, params, b"", self.replies.append)
        return json_errors(answer, ask)

    def _play(self) -> Iterator[None]:
        switch = False
        while True:
            (self.stream.on_session_switch if switch else self.stream.on_session_start)(self.params)
            switch = True
            for p in self.packets:
                self.stream.on_packet(MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data))
                yield

    def step(self) -> None:
        next(self._steps)

    def until(self, done: Callable[[], bool], limit: int = 1000) -> None:
        """Feed packets until `done()`."""
        for _ in range(limit):
            if done():
                return
            self.step()
        raise AssertionError("the condition never held")

    def parts_now(self, msn: int) -> int:
        s = self.seg.segment(msn)
        return 0 if s is None else len(s.parts)

    def complete(self, msn: int) -> bool:
        s = self.seg.segment(msn)
        return s is not None and s.complete

    def started(self) -> None:
        """The first request has started the segmenter; three segments are made and one is open."""
        assert self.get("stream.m3u8") is LATER
        self.until(lambda: len(self.seg.complete_segments) == 3 and self.parts_now(3) == 2)
        assert len(self.replies) == 1 and self.replies.pop().status == 200


def now(response: LeanResponse | object) -> LeanResponse:
    """An answer given at once."""
    assert isinstance(response, LeanResponse), response
    return response


def error(response: LeanResponse | object) -> tuple[int, str]:
    response = now(response)
    return response.status, json.loads(response.body)["strCode"]


def answered_when(camera: Camera, appeared: Callable[[], bool]) -> LeanResponse:
    """Feed packet by packet: no reply before `appeared()` holds, one in the packet it does."""
    while not appeared():
        assert camera.replies == []
        camera.step()
    assert len(camera.replies) == 1
    return camera.replies.pop()


@in_loop
async def test_blocking_reload_for_a_part_is_answered_when_it_appears(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    assert camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=3) is LATER
    response = answered_when(camera, lambda: camera.parts_now(3) == 4)
    assert response.status == 200 and b'URI="part3.3.m4s"' in response.body
    # The last part of a segment: its segment may end without it, then part 0 of the next one answers.
    assert camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=5) is LATER
    response = answered_when(camera, lambda: camera.parts_now(4) == 1)
    assert camera.parts_now(3) == PARTS_PER_SEGMENT and b'URI="part4.0.m4s"' in response.body


@in_loop
async def test_blocking_reload_for_a_segment_is_answered_when_it_is_complete(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    assert camera.get("stream.m3u8", _HLS_msn=3) is LATER
    response = answered_when(camera, lambda: camera.complete(3))
    assert response.status == 200 and b"\nseg3.m4s\n" in response.body
    # What exists already is answered at once, and so is a segment older than the window.
    assert now(camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=1)).status == 200
    camera.until(lambda: camera.seg.segments[0].msn > 0)
    assert now(camera.get("stream.m3u8", _HLS_msn=0)).status == 200


@in_loop
async def test_first_playlist_waits_for_a_complete_segment(clip_packets):
    camera = Camera(clip_packets)
    assert camera.get("index.m3u8") is LATER
    response = answered_when(camera, lambda: len(camera.seg.complete_segments) == 1)
    assert response.status == 200 and b"stream.m3u8" in response.body


@in_loop
async def test_first_playlists_of_a_live_stream_start_from_its_cached_gop(clip_packets):
    camera = Camera(clip_packets, target=2)
    camera.stream.start()  # H5_ALWAYS: live before any HLS client
    camera.until(lambda: camera.stream.gop.packets and camera.stream.gop.keyframe.dts == 25 * 3600
                 and sum(p.kind == "video" for p in camera.stream.gop.packets) == 10)  # 1.36 s in
    asks = (("index.m3u8", "ll"), ("stream.m3u8", "ll"), ("hls.m3u8", "v1"), ("hls.m3u8", "v2"))
    assert [camera.get(name, variant) for name, variant in asks] == [LATER] * 4
    assert camera.seg.segments[0].first_dts == 25 * 3600  # the cached GOP, replayed: 2 parts already
    # The LL-HLS master: once the cached GOP's segment is complete, at the next keyframe (2 s).
    master = answered_when(camera, lambda: camera.complete(0))
    assert master.status == 200 and b"stream.m3u8" in master.body
    # The LL-HLS media playlist: once PART-HOLD-BACK (3 parts) from its end is in the open
    # segment, where an LL-HLS player starts: at its 4th part (2.8 s).
    ll = answered_when(camera, lambda: camera.parts_now(1) == 4)
    assert b"#EXTINF:1.000,\nseg0.m4s\n" in ll.body and b'URI="part0.0.m4s",INDEPENDENT=YES' in ll.body
    assert b'URI="part1.3.m4s"' in ll.body and b'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part1.4.m4s"' in ll.body
    # v1 and v2: three complete segments (Chromium's own HLS starts with no fewer), a GOP
    # each rather than the 2 s target, so at the third keyframe (4 s).
    while not camera.complete(2):
        assert camera.replies == []
        camera.step()
    v1, v2 = camera.replies
    assert [v1.status, v2.status] == [200, 200]
    assert v1.body.count(b"#EXTINF:1.000,") == 3 and b"\nseg2.ts\n" in v1.body and b"seg3" not in v1.body
    assert v2.body.count(b"#EXTINF:1.000,") == 3 and b"#EXT-X-TARGETDURATION:2\n" in v2.body
    # Then they are answered at once, and the segments are there to fetch.
    assert now(camera.get("hls.m3u8", "v1")).status == 200 and now(camera.get("index.m3u8")).status == 200
    assert now(camera.get("seg0.m4s", "v2")).body == camera.seg.segment(0).data


@in_loop
async def test_a_later_ll_playlist_is_answered_at_once(clip_packets):
    camera = Camera(clip_packets)
    camera.started()  # 3 segments and 2 parts
    camera.until(lambda: camera.parts_now(4) == 1)  # the 5th second begins: a part in the open segment
    assert now(camera.get("stream.m3u8")).status == 200  # the start is in a complete segment, not the first
    assert now(camera.get("hls.m3u8", "v2")).status == 200


@in_loop
async def test_a_request_too_far_ahead_is_refused_at_once(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    seg = camera.seg
    assert error(camera.get("stream.m3u8", _HLS_msn=seg.next_msn + 1))[0] == 400
    advance = 15  # 3 s of 200 ms parts (rules.ADVANCE_SECONDS)
    status, reason = error(camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=2 + advance))
    assert status == 400 and "too far ahead" in reason
    assert camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=2 + advance - 1) is LATER  # just within reach
    assert camera.get("stream.m3u8", _HLS_msn=seg.next_msn) is LATER  # the next segment may be asked
    with pytest.raises(ApiError, match="too far ahead"):
        rules.playlist_wait(seg, seg.next_msn + 1, None, True)


@in_loop
async def test_hls_part_needs_hls_msn(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    assert error(camera.get("stream.m3u8", _HLS_part=1)) == (400, "_HLS_part needs _HLS_msn")
    status, reason = error(camera.get("stream.m3u8", _HLS_msn="-1"))
    assert status == 400 and "whole number" in reason
    with pytest.raises(ApiError, match="needs _HLS_msn"):
        rules.playlist_wait(camera.seg, None, 1, True)


@in_loop
async def test_preload_hint_part_is_waited_for_and_made_once(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    assert rules.upcoming_parts(camera.seg) == [(4, 0), (3, 2)]
    assert camera.get("part3.2.m4s") is LATER
    response = answered_when(camera, lambda: camera.parts_now(3) == 3)
    assert response.status == 200 and response.body == camera.seg.segment(3).parts[2].data
    assert camera.get("part3.2.m4s") is response  # one answer for every client
    # Part 0 of the next segment is waited for too (a player asks it once the open one ends).
    assert camera.get("part4.0.m4s") is LATER
    response = answered_when(camera, lambda: camera.parts_now(4) == 1)
    assert response.status == 200 and response.body[4:8] == b"moof"


@in_loop
async def test_a_part_that_will_never_exist_is_404(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    # Not a part the segmenter makes next: answered at once.
    for name in ("part3.4.m4s", "part2.5.m4s", "part9.0.m4s"):
        status, reason = error(camera.get(name))
        assert status == 404 and reason == f"{name} is not available (segments 0-3 are)"
    # A hinted part whose segment ends before it: answered as soon as it has.
    camera.until(lambda: camera.parts_now(3) == PARTS_PER_SEGMENT)
    assert camera.get("part3.5.m4s") is LATER
    response = answered_when(camera, lambda: camera.complete(3))
    assert error(response)[0] == 404


@in_loop
async def test_a_blocking_request_not_answered_in_time_is_503(clip_packets, monkeypatch):
    monkeypatch.setattr(rules, "BLOCK_TIMEOUT", 0.1)  # target durations
    camera = Camera(clip_packets)
    camera.started()
    assert camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=3) is LATER
    assert camera.get("part3.2.m4s") is LATER
    await asyncio.sleep(0.6)  # no packet comes; waits are checked every 0.25 s
    late, hinted = camera.replies
    assert error(late) == (503, "segment 3 part 3 did not come in time")
    assert error(hinted)[0] == 404  # a hinted part that did not come is just not there


@in_loop
async def test_waiting_requests_are_answered_when_the_source_goes(clip_packets):
    camera = Camera(clip_packets)
    camera.started()
    assert camera.get("stream.m3u8", _HLS_msn=3, _HLS_part=4) is LATER
    camera.stream.close()
    assert [error(r) for r in camera.replies] == [(404, "source t was removed")]


@in_loop
async def test_part_answers_go_with_their_segments(clip_packets):
    camera = Camera(clip_packets, segment_count=1)
    camera.started()
    answers = camera.stream.output(HlsAnswers)
    for msn in range(4):
        assert now(camera.get(f"part{msn}.0.m4s")).status == 200
    camera.until(lambda: camera.seg.segments[0].msn >= 3)
    kept = {s.msn for s in camera.seg.segments}
    assert set(answers._parts) <= kept  # the dropped segments' answers are gone with them
    assert error(camera.get("part0.0.m4s"))[0] == 404
