"""The RTSP server's parts without sockets: request parsing, URLs, Transport headers, the
SDP, RTP batches and sender reports, and the feed that makes each frame's packets once."""

from __future__ import annotations

import asyncio
import struct
from base64 import b64encode

import pytest

from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams
from gateway.outputs.rtsp.batch import make_batch
from gateway.outputs.rtsp.feed import RtspFeed
from gateway.outputs.rtsp.reader import RtpReader, TrackCounts
from gateway.outputs.rtsp.request import BadRequest, parse_head, read_request
from gateway.outputs.rtsp.rtcp import sender_report
from gateway.outputs.rtsp.sdp import describe
from gateway.outputs.rtsp.target import content_base, parse_target
from gateway.outputs.rtsp.transport import TcpOut
from gateway.outputs.rtsp.transport_header import parse_transport
from tests.fixtures.fake_av import parameter_sets
from tests.fixtures.hub import bare_stream
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit

SPS, PPS = parameter_sets()
H264 = VideoParams.from_h264(SPS, PPS)


# -- requests ------------------------------------------------------------------------


def test_a_request_head_is_parsed():
    request = parse_head(b"SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1")
    assert (request.method, request.url, request.cseq) == ("SETUP", "rtsp://h/cam/trackID=0", "3")
    assert request.header("TRANSPORT") == "RTP/AVP/TCP;interleaved=0-1"


@pytest.mark.parametrize(
    "head, status",
    [
        (b"HELLO", 400),
        (b"GET / HTTP/1.1\r\nHost: x", 400),
        (b"OPTIONS * RTSP/2.0\r\nCSeq: 1", 505),
        (b"OPTIONS * RTSP/1.0\r\nno colon here", 400),
        (b"OPTIONS * RTSP/1.0\r\n Folded: header", 400),
        (b"OPTIONS \xff RTSP/1.0", 400),
    ],
)
def test_malformed_requests_are_refused(head, status):
    with pytest.raises(BadRequest) as refused:
        parse_head(head)
    assert refused.value.status == status


def read(data: bytes, limit: int = 16384):
    async def go():
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_request(reader, 5)

    return run_async(go)


def test_interleaved_frames_between_requests_are_skipped_and_a_body_is_read():
    rtcp = b"$\x01" + struct.pack(">H", 8) + b"12345678"
    request = read(rtcp + b"GET_PARAMETER rtsp://h/cam RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 4\r\n\r\nabcd")
    assert (request.method, request.cseq, request.body) == ("GET_PARAMETER", "9", b"abcd")
    assert read(b"") is None


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS * RTSP/1.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n",  # longer than MAX_HEAD
        b"OPTIONS * RTSP/1.0\r\nX: " + b"a" * 20000 + b"\r\n\r\n",  # longer than the reader's buffer
        b"OPTIONS * RTSP/1.0\r\nContent-Length: 99999\r\n\r\n",
        b"OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n",
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n",  # the connection closed inside it
    ],
)
def test_oversized_or_cut_requests_are_refused(data):
    with pytest.raises(BadRequest):
        read(data)


# -- URLs and Transport ----------------------------------------------------------------


def test_urls_name_a_token_a_track_and_a_profile():
    assert parse_target("rtsp://h:8554/cam") == parse_target("rtsp://h:8554/cam/")
    target = parse_target("rtsp://h:8554/cam?profile=sub/trackID=1")
    assert (target.token, target.profile, target.track) == ("cam", "sub", 1)
    assert parse_target("rtsp://h/cam/trackID=0").track == 0
    assert content_base("rtsp://h/cam?profile=sub") == "rtsp://h/cam?profile=sub/"
    for bad in ("rtsp://h/", "rtsp://h/a/b", "http://h/cam", "rtsp://h/cam?profile=third"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_transport_headers():
    tcp = parse_transport("RTP/AVP/TCP;unicast;interleaved=4-5")
    assert tcp is not None and tcp.tcp and tcp.ports == (4, 5)
    udp = parse_transport("RTP/AVP;unicast;client_port=5000-5001")
    assert udp is not None and not udp.tcp and udp.ports == (5000, 5001)
    first_served = parse_transport("RTP/AVP;multicast,RTP/AVP/TCP;unicast")
    assert first_served is not None and first_served.tcp and first_served.ports is None
    for refused in ("RTP/AVP;multicast", "RTP/AVP;unicast", "RTP/AVP/TCP;interleaved=300-301", "RAW/RAW/UDP;x",
                    "RTP/AVP/TCP;interleaved=0-1;mode=receive"):  # fmt: skip
        assert parse_transport(refused) is None, refused
    record = parse_transport("RTP/AVP/UDP;unicast;client_port=6000-6001;mode=record")
    assert record is not None and record.record and not record.tcp and record.ports == (6000, 6001)
    assert tcp.record is False


# -- SDP -------------------------------------------------------------------------------


def test_sdp_of_h264_with_the_cameras_pcma():
    sdp = describe(StreamParams(H264, AudioParams("aac", 8000, 1, b"\x15\x88"), "PCMA"), "h5ss cam", 1)
    sps64, pps64 = b64encode(SPS).decode(), b64encode(PPS).decode()
    assert "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" in sdp
    assert f"packetization-mode=1;profile-level-id={SPS[1:4].hex().upper()};sprop-parameter-sets={sps64},{pps64}" in sdp
    assert "a=control:trackID=0" in sdp and "a=control:trackID=1" in sdp
    assert "m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n" in sdp and "mpeg4-generic" not in sdp
    assert "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000" in describe(StreamParams(H264, None, "PCMU"), "x", 1)


def test_sdp_of_aac_and_of_video_alone():
    sdp = describe(StreamParams(H264, AudioParams("aac", 48000, 2, b"\x11\x90")), "h5ss cam", 1)
    assert "a=rtpmap:97 mpeg4-generic/48000/2" in sdp
    assert "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190" in sdp
    assert "m=audio" not in describe(StreamParams(H264, None), "x", 1)


def test_sdp_of_h265():
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1"
    video = VideoParams("h265", sps, pps, 640, 360, vps)
    sdp = describe(StreamParams(video, None), "x", 1)
    b64 = lambda data: b64encode(data).decode()  # noqa: E731
    assert "a=rtpmap:96 H265/90000" in sdp
    assert f"a=fmtp:96 sprop-vps={b64(vps)};sprop-sps={b64(sps)};sprop-pps={b64(pps)}" in sdp


# -- RTP and RTCP ----------------------------------------------------------------------


def test_a_batch_holds_interleaved_rtp_packets_with_the_marker_on_the_last():
    batch = make_batch(1, 8, 0xCAFE, 0xFFFF, 2**32 + 5, [b"aa", b"bbb"], False)
    assert batch.count == 2 and batch.octets == 5 and batch.timestamp == 5
    first, second = (bytes(p) for p in batch.rtp_packets())
    assert batch.data[:4] == b"$\x02\x00\x0e" and batch.data[4:].startswith(first)
    assert struct.unpack(">BBHII", first[:12]) == (0x80, 8, 0xFFFF, 5, 0xCAFE) and first[12:] == b"aa"
    assert struct.unpack(">BBHII", second[:12]) == (0x80, 0x88, 0, 5, 0xCAFE) and second[12:] == b"bbb"
    moved = batch.on_channel(6)
    assert moved[1] == 6 and moved[batch.offsets[1] + 1] == 6 and moved[4:] == batch.data[4:16] + moved[16:]


def test_a_sender_report():
    report = sender_report(0x1234, 0.5, 90000, 10, 1000)
    assert struct.unpack(">BBHIIIIII", report) == (0x80, 200, 6, 0x1234, 2208988800, 1 << 31, 90000, 10, 1000)


# -- the feed --------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def frame(n: int, keyframe: bool, size: int = 3000) -> MediaPacket:
    unit = bytes([0x65 if keyframe else 0x41]) + bytes([n % 256]) * size
    return MediaPacket("video", n * 3600, n * 3600, 3600, keyframe, struct.pack(">I", len(unit)) + unit)


def reader_on(feed: RtspFeed) -> tuple[RtpReader, FakeTransport]:
    transport = FakeTransport()
    out = TcpOut(transport, budget=100_000)  # type: ignore[arg-type]
    out.add_track(0, 0)
    return RtpReader(out, {0: TrackCounts(1, 90000)}, lambda reason: None), transport


def test_many_readers_share_each_frames_packets_made_once():
    stream = bare_stream()
    feed = RtspFeed(stream)
    stream.on_session_start(StreamParams(H264, None))
    for n in range(3):  # a cached GOP before the first reader
        stream.on_packet(frame(n, n == 0))
    feed.join()
    readers = [reader_on(feed) for _ in range(50)]
    for reader, _ in readers:
        feed.add_reader(reader)
    for n in range(3, 10):
        stream.on_packet(frame(n, False))
    assert feed.frames_packetized == 10  # each frame once, for all 50
    first = readers[0][1].writes
    assert len(first) == 10 and first[0].count(b"$\x00") >= 3  # the GOP from its keyframe, then live
    for _, transport in readers[1:]:
        assert all(a is b for a, b in zip(transport.writes, first, strict=True))  # the very same bytes
    feed.leave()
    assert feed not in stream.subscribers


def test_a_reader_over_its_budget_skips_to_the_next_keyframe():
    stream = bare_stream()
    feed = RtspFeed(stream)
    stream.on_session_start(StreamParams(H264, None))
    stream.on_packet(frame(0, True))
    feed.join()
    (slow, transport), (fast, fast_transport) = reader_on(feed), reader_on(feed)
    feed.add_reader(slow)
    feed.add_reader(fast)
    transport.buffered = 200_000  # over budget
    stream.on_packet(frame(1, False))
    transport.buffered = 0  # drained, but it must not resume mid-GOP
    stream.on_packet(frame(2, False))
    stream.on_packet(frame(3, True))
    assert len(transport.writes) == 2 and slow.skip.skips == 1  # the first keyframe, then the next
    assert transport.writes[1] is fast_transport.writes[3]
    assert feed.counts().skips == 1 and feed.counts().clients == 2


def test_audio_rides_with_the_next_frame_and_a_video_only_reader_gets_no_audio():
    stream = bare_stream()
    feed = RtspFeed(stream)
    stream.on_session_start(StreamParams(H264, None, "PCMA"))
    stream.on_packet(frame(0, True))
    feed.join()
    both, both_transport = reader_on(feed)
    both.out.add_track(1, 2)  # type: ignore[union-attr]
    both.tracks[1] = TrackCounts(2, 8000)
    video_only, video_transport = reader_on(feed)
    feed.add_reader(both)
    feed.add_reader(video_only)
    assert both.plain and not video_only.plain
    stream.on_packet(MediaPacket("g711", 320, 320, 320, False, b"\xd5" * 320))
    assert len(both_transport.writes) == 1  # the audio waits for the next frame
    stream.on_packet(frame(1, False))
    audio_and_frame = both_transport.writes[1]
    assert audio_and_frame.startswith(b"$\x02\x01\x4c") and audio_and_frame[4 + 12 : 4 + 12 + 320] == b"\xd5" * 320
    assert all(write[:2] == b"$\x00" for write in video_transport.writes) and len(video_transport.writes) == 2
    assert both.tracks[1].packets == 1 and both.tracks[1].octets == 320
