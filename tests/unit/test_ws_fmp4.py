"""outputs/ws_fmp4: one fragmenter per stream, each viewer on its own timeline from 0."""

from __future__ import annotations

import io
import struct

import av
import pytest

from gateway.formats.fmp4 import fragment, split_at_decode_time
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.outputs.ws_fmp4.feed import Fmp4Feed
from gateway.outputs.ws_fmp4.message import Message, Piece
from gateway.outputs.ws_fmp4.viewer import TransportViewer
from tests.fixtures.hub import bare_stream
from tests.fixtures.media import aac_clip, h264_clip
from tests.fixtures.transport import FakeTransport
from tests.fixtures.ws_client import fragment_info, split_fragments

AUDIO_RATE = 16000
VIDEO, FRAMES = h264_clip(100, gop=10)  # 4 s at 25 fps, a keyframe every 0.4 s
AUDIO, SAMPLES = aac_clip(70, AUDIO_RATE)  # 1024 samples each: 4.5 s
LIVE_FOR = 32  # seconds the stream has run when the test starts: its clock is far from 0


class WsTransport(FakeTransport):
    """A WebSocket viewer's socket."""

    def peer_reads(self) -> list[bytes]:
        """What the peer got so far, as WebSocket payloads."""
        return [unframe(m) for m in self.drain()]


def unframe(message: bytes) -> bytes:
    """The payload of a server's binary WebSocket frame."""
    assert message[0] == 0x82
    size = message[1]
    if size == 126:
        return message[4:]
    if size == 127:
        return message[10:]
    return message[2:]


def viewer(budget: int = 1 << 30, video_only: bool = False) -> tuple[TransportViewer, WsTransport]:
    transport = WsTransport()
    return TransportViewer(transport, budget, video_only), transport  # type: ignore[arg-type]


def live_packets() -> list[MediaPacket]:
    """Video and audio in arrival order, on a stream clock that is already 32 s in."""
    video = [MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data) for p in FRAMES]
    audio = [MediaPacket(p.kind, p.dts, p.pts, 1024, p.keyframe, p.data) for p in SAMPLES]
    for p in video:
        p.dts, p.pts = p.dts + LIVE_FOR * 90000, p.pts + LIVE_FOR * 90000
    for p in audio:
        p.dts, p.pts = p.dts + LIVE_FOR * AUDIO_RATE, p.pts + LIVE_FOR * AUDIO_RATE
    return sorted(video + audio, key=lambda p: p.dts / (90000 if p.kind == "video" else AUDIO_RATE))


def timelines(payloads: list[bytes]) -> dict[int, list[int]]:
    """Decode times by track (1 video, 2 audio) of the fragments in the payloads after the init segment."""
    out: dict[int, list[int]] = {1: [], 2: []}
    for payload in payloads[1:]:
        for one in split_fragments(payload):
            track, base, _ = fragment_info(one)
            out[track].append(base)
    return out


def mdats(message: bytes) -> list[bytes]:
    return [one[one.index(b"mdat") :] for one in split_fragments(unframe(message))]


@pytest.fixture
def feed() -> Fmp4Feed:
    stream = bare_stream()
    stream.on_session_start(StreamParams(VIDEO, AUDIO))
    return Fmp4Feed(stream)


def test_a_fragment_takes_any_decode_time_around_its_split():
    packet = FRAMES[3]
    whole = fragment(7, "video", [packet])
    head, tail = split_at_decode_time(whole)
    assert head + struct.pack(">Q", packet.dts) + tail == whole
    assert fragment_info(head + struct.pack(">Q", 123456789) + tail) == (1, 123456789, 1)


def test_viewers_joining_a_running_stream_start_at_0_with_audio_aligned(feed):
    packets = live_packets()
    first, first_out = viewer()
    second, second_out = viewer()
    feed.subscribe(first)
    joined_second = False
    for i, packet in enumerate(packets):
        if i == len(packets) // 2 and not joined_second:  # mid-GOP, 2 s later
            feed.subscribe(second)
            joined_second = True
        feed.stream.on_packet(packet)
    for out in (first_out, second_out):
        times = timelines(out.peer_reads())
        video, audio = times[1], times[2]
        assert video[0] == 0
        assert video == [n * 3600 for n in range(len(video))]  # continuous, no gap
        assert 0 <= audio[0] * 90000 / AUDIO_RATE < 0.2 * 90000  # audio starts with the video
        assert audio == sorted(audio) and len(audio) > 20
    assert len(timelines(second_out.peer_reads())[1]) < 80  # it joined at a cached keyframe mid-way


def test_viewers_of_one_keyframe_share_bytes_and_mdat_is_shared_by_all(feed):
    packets = live_packets()
    a, a_out = viewer()
    b, b_out = viewer()
    c, c_out = viewer()
    feed.subscribe(a)
    feed.subscribe(b)
    for packet in packets[:60]:
        feed.stream.on_packet(packet)
    feed.subscribe(c)  # a later GOP: another base
    for packet in packets[60:]:
        feed.stream.on_packet(packet)
    a_out.peer_reads(), b_out.peer_reads(), c_out.peer_reads()
    assert len(a_out.sent) == len(b_out.sent)
    assert all(x is y for x, y in zip(a_out.sent[1:], b_out.sent[1:], strict=True))  # one copy for both
    assert a_out.sent[-1] != c_out.sent[-1]  # its own moof ...
    assert mdats(a_out.sent[-1]) == mdats(c_out.sent[-1])  # ... and the same media


def test_a_viewer_behind_skips_to_a_keyframe_and_its_timeline_goes_on_without_a_gap(feed):
    keyframe = max(len(p.data) for p in FRAMES)
    slow, transport = viewer(budget=3 * keyframe, video_only=True)
    feed.subscribe(slow)
    packets = [p for p in live_packets() if p.kind == "video"]
    for packet in packets[:15]:
        feed.stream.on_packet(packet)
    # the peer has not read: frames past the budget are skipped, up to a keyframe it can take
    transport.peer_reads()
    for packet in packets[15:]:
        feed.stream.on_packet(packet)
        transport.peer_reads()
    assert slow.skips >= 1
    video = timelines(transport.peer_reads())[1]
    assert video == [n * 3600 for n in range(len(video))]
    assert len(video) < len(packets)  # frames were skipped, but not time in the viewer's media


def test_skip_policy_with_the_budget_and_init_always_sent():
    out, transport = viewer(budget=100, video_only=True)
    out.send_init(b"\x82\x08" + b"I" * 8)

    def message(keyframe: bool, n: int) -> Message:
        return Message((), Piece(b"h" * 30, b"t", n * 3600, 90000, n * 3600, (n + 1) * 3600), keyframe)

    for n, key in enumerate([True, False, False, True]):  # the third would pass the budget: skip from there
        out.offer(message(key, n))
    transport.peer_reads()
    out.offer(message(False, 4))  # caught up, but must wait for a keyframe
    out.offer(message(True, 5))
    out.offer(message(False, 6))
    sent = transport.peer_reads()
    assert [len(s) for s in sent] == [8, 39, 39, 39, 39]
    times = [struct.unpack(">Q", payload[30:38])[0] for payload in sent[1:]]
    assert times == [0, 3600, 7200, 10800]  # the keyframe after the skip goes right after the last frame sent
    assert out.skips == 1


def test_what_a_viewer_gets_is_a_playable_fmp4_from_0(feed):
    packets = live_packets()
    for packet in packets[:33]:
        feed.stream.on_packet(packet)
    late, transport = viewer()
    feed.subscribe(late)
    for packet in packets[33:]:
        feed.stream.on_packet(packet)
    with av.open(io.BytesIO(b"".join(transport.peer_reads())), format="mp4") as container:
        video = container.streams.video[0]
        decoded = [f for f in container.decode(video)]
    assert decoded and decoded[0].pts == 0 and decoded[0].key_frame
    assert len(decoded) >= 60


def test_an_audio_gap_is_filled_with_silence_that_decodes(feed):
    packets = live_packets()
    audio = [p for p in packets if p.kind == "audio"]
    lost = {id(p) for p in audio[20:26]}  # 6 frames, 0.384 s: a camera reconnect's late audio
    out, transport = viewer()
    feed.subscribe(out)
    for packet in packets:
        if id(packet) not in lost:
            feed.stream.on_packet(packet)
    payloads = transport.peer_reads()
    times = timelines(payloads)[2]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [1024] * (len(times) - 1)
    with av.open(io.BytesIO(b"".join(payloads)), format="mp4") as container:
        decoded = list(container.decode(container.streams.audio[0]))
    assert len(decoded) == len(times)  # the filler frames decode with the stream's own config


def test_a_gop_too_long_to_replay_makes_a_new_viewer_wait_for_the_next_keyframe():
    """A no-seek player stays as far behind live as the GOP it was given: past 4 s, the
    stock player's 5 s watchdog would reconnect it again and again."""
    video, frames = h264_clip(300, gop=150)  # 6 s GOPs
    stream = bare_stream()
    stream.on_session_start(StreamParams(video, None))
    feed = Fmp4Feed(stream)
    early, early_out = viewer()
    feed.subscribe(early)
    for packet in frames[:110]:  # 4.4 s into the first GOP
        stream.on_packet(packet)
    late, late_out = viewer()
    feed.subscribe(late)
    assert len(late_out.peer_reads()) == 1  # the init segment only
    for packet in frames[110:]:
        stream.on_packet(packet)
    assert len(timelines(early_out.peer_reads())[1]) == 300
    late_times = timelines(late_out.peer_reads())[1]
    assert late_times == [n * 3600 for n in range(150)]  # from the next keyframe, at 0
