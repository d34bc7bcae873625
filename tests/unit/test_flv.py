"""formats/flv.py read back by FFmpeg's FLV demuxer (PyAV), and outputs/flv: one feed per
stream, each client's FLV from its keyframe with its times from 0, a slow one skipping."""

from __future__ import annotations

import io
import itertools

import av
import pytest

from gateway.formats import flv
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams
from gateway.outputs.flv.client import FlvClient
from gateway.outputs.flv.feed import FlvFeed
from tests.fixtures.hub import bare_stream
from tests.fixtures.media import aac_clip, h264_clip
from tests.fixtures.transport import FakeTransport

AUDIO_RATE = 16000
VIDEO, FRAMES = h264_clip(50, gop=10, bframes=2)  # 2 s at 25 fps, a keyframe every 0.4 s, B-frames
AUDIO, SAMPLES = aac_clip(32, AUDIO_RATE)  # 1024 samples each: ~2 s

pytestmark = pytest.mark.unit


def mux(
    video: VideoParams, audio: AudioParams, frames: list[MediaPacket], samples: list[MediaPacket], base_ms: int = 0
) -> bytes:
    """A whole FLV file made with formats/flv.py, the tags in decode-time order."""
    tags = [
        (base_ms + p.dts // 90, flv.VIDEO_TAG, flv.avc_frame(p.keyframe, p.pts // 90 - p.dts // 90, p.data))
        for p in frames
    ]
    tags += [(base_ms + p.dts * 1000 // AUDIO_RATE, flv.AUDIO_TAG, flv.aac_frame(p.data)) for p in samples]
    tags.sort(key=lambda t: t[0])
    out = flv.header(True, True) + flv.tag(flv.VIDEO_TAG, base_ms, flv.avc_sequence_header(video))
    out += flv.tag(flv.AUDIO_TAG, base_ms, flv.aac_sequence_header(audio))
    return out + b"".join(flv.tag(kind, ms, body) for ms, kind, body in tags)


def demux(data: bytes) -> tuple[dict[str, object], list[tuple[str, int, int, bool]], int]:
    """(codecs and size, packets as (kind, dts ms, pts ms, keyframe), video frames decoded)."""
    with av.open(io.BytesIO(data), format="flv") as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        info = {
            "video": v.codec_context.name,
            "audio": a.codec_context.name,
            "size": (v.codec_context.width, v.codec_context.height),
            "rate": a.codec_context.sample_rate,
        }
        packets, decoded = [], 0
        for packet in container.demux(v, a):
            if packet.size == 0:
                continue
            kind = packet.stream.type
            packets.append((kind, packet.dts, packet.pts, packet.is_keyframe))
            if kind == "video":
                decoded += len(packet.decode())
        decoded += len(v.codec_context.decode(None))  # the frames the B-frames held back
        return info, packets, decoded


def test_ffmpeg_reads_h264_and_aac_with_their_times_and_keyframes():
    info, packets, decoded = demux(mux(VIDEO, AUDIO, FRAMES, SAMPLES))
    assert info == {"video": "h264", "audio": "aac", "size": (160, 120), "rate": AUDIO_RATE}
    video = [p for p in packets if p[0] == "video"]
    assert [(d, p, k) for _, d, p, k in video] == [(f.dts // 90, f.pts // 90, f.keyframe) for f in FRAMES]
    assert any(p != d for _, d, p, _ in video)  # B-frames: the composition time is carried
    assert sum(1 for p in video if p[3]) == 5
    assert [d for kind, d, _, _ in packets if kind == "audio"] == [s.dts * 1000 // AUDIO_RATE for s in SAMPLES]
    assert decoded == len(FRAMES)


def test_times_past_24_bits_use_the_extended_byte():
    base = (1 << 24) + 12345  # 4.7 hours in ms
    _, packets, decoded = demux(mux(VIDEO, AUDIO, FRAMES, SAMPLES, base))
    assert packets[0][1] == base
    assert [d for kind, d, _, _ in packets if kind == "video"] == [base + f.dts // 90 for f in FRAMES]
    assert decoded == len(FRAMES)


def test_a_tag_is_header_body_and_its_size():
    one = flv.tag(flv.AUDIO_TAG, 0x12345678, b"abc")
    assert one == bytes([8, 0, 0, 3, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]) + b"abc" + (14).to_bytes(4, "big")


class FlvTransport(FakeTransport):
    """An HTTP-FLV client's socket."""

    def peer_reads(self) -> bytes:
        """The FLV byte stream the peer got so far, out of its HTTP chunks."""
        stream, out = b"".join(self.drain()), b""
        while stream:
            size, _, stream = stream.partition(b"\r\n")
            n = int(size, 16)
            assert stream[n : n + 2] == b"\r\n"
            out, stream = out + stream[:n], stream[n + 2 :]
        return out


def client(budget: int = 1 << 30) -> tuple[FlvClient, FlvTransport]:
    transport = FlvTransport()
    return FlvClient(transport, "http", budget), transport  # type: ignore[arg-type]


def live_packets() -> list[MediaPacket]:
    """Video and audio in arrival order."""
    video = [MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data) for p in FRAMES]
    audio = [MediaPacket(p.kind, p.dts, p.pts, 1024, p.keyframe, p.data) for p in SAMPLES]
    return sorted(video + audio, key=lambda p: p.dts / (90000 if p.kind == "video" else AUDIO_RATE))


@pytest.fixture
def feed() -> FlvFeed:
    stream = bare_stream()
    stream.on_session_start(StreamParams(VIDEO, AUDIO))
    return FlvFeed(stream)


def test_a_client_joining_mid_gop_starts_at_the_cached_keyframe_at_0(feed):
    packets = live_packets()
    first, first_out = client()
    second, second_out = client()
    feed.subscribe(first)
    keyframe_before_join = 0
    for i, packet in enumerate(packets):
        if i == 45:  # mid-GOP
            feed.subscribe(second)
        elif i < 45 and packet.kind == "video" and packet.keyframe:
            keyframe_before_join = packet.dts // 90
        feed.stream.on_packet(packet)
    info, _, decoded = demux(first_out.peer_reads())
    assert info["video"] == "h264" and info["audio"] == "aac"
    assert decoded == len(FRAMES)
    _, joined, joined_decoded = demux(second_out.peer_reads())
    video = [p for p in joined if p[0] == "video"]
    assert video[0][1] == 0 and video[0][3]  # from a keyframe, at 0
    assert [p[1] for p in video] == [
        f.dts // 90 - keyframe_before_join for f in FRAMES if f.dts // 90 >= keyframe_before_join
    ]
    assert joined_decoded == len(video)
    assert keyframe_before_join > 0
    assert min(p[1] for p in joined) >= 0  # no audio from before its keyframe
    assert feed.counts().clients == 2


def test_a_slow_client_skips_to_the_next_keyframe_and_others_get_everything(feed):
    packets = live_packets()
    slow, slow_out = client(budget=1200)
    fast, fast_out = client()
    feed.subscribe(slow)
    feed.subscribe(fast)
    for i, packet in enumerate(packets):
        feed.stream.on_packet(packet)
        if i % 15 == 0:
            slow_out.peer_reads()  # reads now and then
        fast_out.peer_reads()
    _, _, fast_decoded = demux(fast_out.peer_reads())
    assert fast_decoded == len(FRAMES)
    _, slow_packets, slow_decoded = demux(slow_out.peer_reads())
    slow_video = [p for p in slow_packets if p[0] == "video"]
    assert slow.skips > 0 and len(slow_video) < len(FRAMES)
    resumed = [now for before, now in itertools.pairwise(slow_video) if now[1] - before[1] > 40]
    assert resumed and all(keyframe for _, _, _, keyframe in resumed)  # after each gap, a keyframe
    assert slow_decoded == len(slow_video)
    assert feed.counts().skips == slow.skips


def test_an_h264_feed_shares_one_copy_of_a_tag_between_clients_of_one_keyframe(feed):
    a, a_out = client()
    b, b_out = client()
    feed.subscribe(a)
    feed.subscribe(b)
    for packet in live_packets():
        feed.stream.on_packet(packet)
    a_out.peer_reads(), b_out.peer_reads()
    assert len(a_out.sent) == len(b_out.sent) > 50
    assert all(x is y for x, y in zip(a_out.sent[1:], b_out.sent[1:], strict=True))


def test_the_last_client_leaving_detaches_the_feed(feed):
    a, _ = client()
    feed.subscribe(a)
    assert feed in feed.stream.subscribers
    feed.unsubscribe(a)
    assert feed not in feed.stream.subscribers and feed.gop.items == []


def test_audio_that_starts_late_is_led_by_silence_from_the_clients_0(feed):
    late = [MediaPacket("audio", p.dts + AUDIO_RATE, p.pts + AUDIO_RATE, 1024, True, p.data) for p in SAMPLES[:10]]
    packets = [p for p in live_packets() if p.kind == "video"] + late
    packets.sort(key=lambda p: p.dts / (90000 if p.kind == "video" else AUDIO_RATE))
    one, out = client()
    feed.subscribe(one)
    for packet in packets:
        feed.stream.on_packet(packet)
    with av.open(io.BytesIO(out.peer_reads()), format="flv") as container:
        audio = container.streams.audio[0]
        times = [p.dts for p in container.demux(audio) if p.size]
    assert 0 <= times[0] < 64 and times[-1] == late[-1].dts * 1000 // AUDIO_RATE
    assert all(b - a == 64 for a, b in itertools.pairwise(times))  # no gap: 1024 samples are 64 ms
    assert len(times) == AUDIO_RATE // 1024 + 10
