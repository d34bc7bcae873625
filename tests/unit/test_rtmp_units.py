"""The RTMP server's parts without a socket: the chunk stream read and written (every header
format, extended timestamps, interleaving, chunk size changes, bounds), AMF0 round trips,
commands, stream URLs, FLV tag bodies made into hub parameters and packets, and players
of the FLV feed (what they get, shared, and a slow one skipping)."""

from __future__ import annotations

import io
import itertools
import math
import struct

import av
import pytest

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.formats import flv
from gateway.formats.h265 import hvcc_config
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import StreamParams
from gateway.hub.stream import Stream
from gateway.ingest.publish.flv_media import FlvMedia, audio_specific_config
from gateway.ingest.publish.slot import PublishSlot
from gateway.outputs.flv.feed import FlvFeed
from gateway.outputs.rtmp import amf0, commands
from gateway.outputs.rtmp.chunk_reader import MAX_CHUNK_STREAMS, MAX_MESSAGE_SIZE, ChunkError, ChunkReader
from gateway.outputs.rtmp.chunk_writer import OUT_CHUNK_SIZE, chunked, set_chunk_size
from gateway.outputs.rtmp.message import AUDIO, COMMAND_AMF0, VIDEO, Message
from gateway.outputs.rtmp.player import RtmpPlayer
from gateway.outputs.rtmp.stream_url import connect_query, stream_name
from tests.fixtures.hub import PublishedMedia, bare_stream
from tests.fixtures.media import aac_clip, h264_clip, h265_clip
from tests.fixtures.transport import FakeTransport

pytestmark = pytest.mark.unit


def header(fmt: int, csid: int, timestamp: int | None = None, length: int = 0, kind: int = 0, msid: int = 0) -> bytes:
    """A chunk's basic and message header, written by hand (one-, two- and three-byte csids)."""
    if csid < 64:
        basic = bytes([fmt << 6 | csid])
    elif csid < 320:
        basic = bytes([fmt << 6, csid - 64])
    else:
        basic = bytes([fmt << 6 | 1]) + (csid - 64).to_bytes(2, "little")
    if fmt == 3:
        return basic
    ts = timestamp or 0
    field = min(ts, 0xFFFFFF).to_bytes(3, "big")
    ext = ts.to_bytes(4, "big") if ts >= 0xFFFFFF else b""
    if fmt == 2:
        return basic + field + ext
    body = length.to_bytes(3, "big") + bytes([kind])
    if fmt == 1:
        return basic + field + body + ext
    return basic + field + body + struct.pack("<I", msid) + ext


def test_all_four_header_formats_and_three_basic_header_sizes():
    data = header(0, 4, 1000, 3, AUDIO, 1) + b"abc"  # type 0: absolute
    data += header(1, 4, 20, 2, VIDEO) + b"de"  # type 1: delta, new length and type
    data += header(2, 4, 30) + b"fg"  # type 2: delta only
    data += header(3, 4) + b"hi"  # type 3, a new message: the last delta again
    data += header(0, 100, 5, 1, AUDIO, 1) + b"x" + header(0, 1000, 6, 1, AUDIO, 1) + b"y"
    messages = ChunkReader().feed(data)
    assert [(m.type, m.timestamp, m.stream_id, m.payload) for m in messages] == [
        (AUDIO, 1000, 1, b"abc"),
        (VIDEO, 1020, 1, b"de"),
        (VIDEO, 1050, 1, b"fg"),
        (VIDEO, 1080, 1, b"hi"),
        (AUDIO, 5, 1, b"x"),
        (AUDIO, 6, 1, b"y"),
    ]


def test_interleaved_chunk_streams_and_any_split_of_the_bytes():
    video, audio = bytes(range(200)) * 2, b"A" * 150  # 400 and 150 bytes: several 128-byte chunks
    data = header(0, 6, 40, len(video), VIDEO, 1) + video[:128]
    data += header(0, 4, 41, len(audio), AUDIO, 1) + audio[:128]
    data += header(3, 6) + video[128:256] + header(3, 4) + audio[128:]
    data += header(3, 6) + video[256:384] + header(3, 6) + video[384:]
    for step in (1, 7, 128, len(data)):
        reader = ChunkReader()
        messages = [m for i in range(0, len(data), step) for m in reader.feed(data[i : i + step])]
        assert [(m.type, m.timestamp, m.payload) for m in messages] == [(AUDIO, 41, audio), (VIDEO, 40, video)]
        assert reader.bytes_read == len(data)


def test_extended_timestamps_on_every_chunk_of_the_message():
    ts, delta = 0x1234567, 0x1000000
    payload = b"v" * 300
    data = chunked(6, VIDEO, ts, 1, payload, chunk_size=128)
    assert data.count(ts.to_bytes(4, "big")) == 3  # the type 0 header and both type 3 chunks
    ext = delta.to_bytes(4, "big")  # an extended delta, repeated on the type 3 chunks
    data += header(2, 6, delta) + b"x" * 128 + header(3, 6) + ext + b"x" * 128 + header(3, 6) + ext + b"x" * 44
    messages = ChunkReader().feed(data)
    assert [(m.timestamp, m.payload) for m in messages] == [(ts, payload), (ts + delta, b"x" * 300)]


def test_set_chunk_size_applies_to_the_very_next_chunk():
    payload = bytes(range(256)) * 20  # 5120 bytes
    data = set_chunk_size(4096) + chunked(6, VIDEO, 0, 1, payload, chunk_size=4096)
    reader = ChunkReader()
    messages = reader.feed(data)
    assert reader.chunk_size == 4096
    assert messages[-1].payload == payload
    # The writer's chunks read back at the default size too.
    assert ChunkReader().feed(chunked(3, COMMAND_AMF0, 7, 0, payload, chunk_size=128))[0].payload == payload


def test_abort_drops_the_unfinished_message():
    data = header(0, 6, 0, 300, VIDEO, 1) + b"a" * 128
    data += chunked(2, 2, 0, 0, struct.pack(">I", 6))  # Abort chunk stream 6
    data += header(0, 6, 10, 2, VIDEO, 1) + b"ok"
    messages = ChunkReader().feed(data)
    assert [m.payload for m in messages if m.type == VIDEO] == [b"ok"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (header(0, 6, 0, MAX_MESSAGE_SIZE + 1, VIDEO, 1), "message of"),
        (header(1, 6, 0, 1, VIDEO), "without a type 0"),
        (header(0, 6, 0, 300, VIDEO, 1) + b"a" * 128 + header(0, 6, 0, 1, VIDEO, 1), "unfinished"),
        (b"".join(header(0, 2 + i, 0, 1, AUDIO, 1) + b"a" for i in range(MAX_CHUNK_STREAMS + 1)), "chunk streams"),
        (chunked(2, 1, 0, 0, struct.pack(">I", 1 << 30)), "chunk size"),
        (chunked(2, 1, 0, 0, struct.pack(">I", 0)), "chunk size"),
    ],
    ids=["message size", "no type 0", "header inside a message", "chunk streams", "huge chunk size", "chunk size 0"],
)
def test_bounds_and_broken_streams_are_chunk_errors(data, error):
    with pytest.raises(ChunkError, match=error):
        ChunkReader().feed(data)


def test_amf0_round_trips():
    values = [
        "connect",
        1.0,
        {"app": "live?user=a", "tcUrl": "rtmp://h/live", "fpad": False, "nested": {"list": [1.0, "x", None]}},
        None,
        amf0.UNDEFINED,
        amf0.EcmaArray(width=640.0, height=360.0, stereo=True),
        "é" * 40000,  # past 65535 bytes: a long string
        [],
        -2.5,
    ]
    data = amf0.encode(*values)
    assert data[0] == amf0.STRING and amf0.LONG_STRING in data
    decoded = amf0.decode(data)
    assert decoded == values
    assert isinstance(decoded[5], amf0.EcmaArray) and decoded[4] is amf0.UNDEFINED
    assert math.isnan(amf0.decode(amf0.encode(float("nan")))[0])


@pytest.mark.parametrize(
    "data",
    [b"\x02\x00\x05ab", b"\x0b" + bytes(10), b"\x03" * 100, b"\x0a\xff\xff\xff\xff", b"\x02\x00\x02\xff\xfe"],
)
def test_amf0_errors(data):
    with pytest.raises(amf0.Amf0Error):
        amf0.decode(data)


def test_commands_parse_and_answer():
    message = Message(COMMAND_AMF0, 0, 0, amf0.encode("publish", 5.0, None, "cam?user=op&password=o", "live"))
    command = commands.parse(message)
    assert (command.name, command.transaction, command.object, command.text(0), command.text(3)) == (
        "publish",
        5.0,
        {},
        "cam?user=op&password=o",
        "",
    )
    (status,) = ChunkReader().feed(commands.on_status(1, "error", "NetStream.Publish.BadName", "no"))
    assert status.stream_id == 1
    assert amf0.decode(status.payload) == [
        "onStatus",
        0.0,
        None,
        {"level": "error", "code": "NetStream.Publish.BadName", "description": "no"},
    ]
    with pytest.raises(amf0.Amf0Error):
        commands.parse(Message(COMMAND_AMF0, 0, 0, amf0.encode(1.0, "x")))


def test_the_query_on_the_stream_name_or_on_the_app():
    assert connect_query("live", "rtmp://h:8935/live") == ("live", {})
    app, query = connect_query("live?user=op&password=o", "rtmp://h:8935/live?user=op&password=o")
    assert (app, query) == ("live", {"user": "op", "password": "o"})
    assert connect_query("live", "rtmp://h/live?session=s")[1] == {"session": "s"}
    name = stream_name("cam?password=p%26q", {"user": "op", "password": "old"})
    assert (name.token, name.query) == ("cam", {"user": "op", "password": "p&q"})


def test_avc_and_aac_tag_bodies_become_hub_params_and_packets():
    video, frames = h264_clip(10, bframes=2)
    audio, samples = aac_clip(5, 44100, 2)
    target = PublishedMedia()
    media = FlvMedia(target, "t")
    media.video(0, flv.avc_sequence_header(video))
    media.audio(0, flv.aac_sequence_header(audio))
    assert target.params == []  # given with the first frame, once both sequence headers are in
    for p in frames:
        media.video(p.dts // 90, flv.avc_frame(p.keyframe, (p.pts - p.dts) // 90, p.data))
    for i, p in enumerate(samples):
        media.audio(i * 1024 * 1000 // 44100, flv.aac_frame(p.data))  # 23 ms steps, as RTMP rounds them
    assert target.params == [StreamParams(video, audio)]
    got_video = [p for p in target.packets if p.kind == "video"]
    assert [(p.dts, p.pts, p.keyframe, p.data) for p in got_video] == [
        (p.dts, p.pts, p.keyframe, p.data) for p in frames
    ]
    got_audio = [p for p in target.packets if p.kind == "audio"]
    assert [p.dts for p in got_audio] == [i * 1024 for i in range(5)]  # on the frame grid, not ms * 44.1
    assert [p.data for p in got_audio] == [p.data for p in samples]


def test_enhanced_rtmp_hevc_and_unsupported_audio(caplog):
    video, frames = h265_clip(3)
    target = PublishedMedia()
    media = FlvMedia(target, "t")
    record = hvcc_config(video.vps, video.sps, video.pps)
    media.video(0, bytes([0x90]) + b"hvc1" + record)  # keyframe, SequenceStart
    for i, p in enumerate(frames):
        first = (0x90 if p.keyframe else 0xA0) | 1  # CodedFrames: with a composition time
        media.video(i * 40, bytes([first]) + b"hvc1" + (0).to_bytes(3, "big") + p.data)
    for _ in range(3):
        media.audio(0, bytes([0x2F, 0x00]))  # MP3: left out, one warning
    assert target.params == [StreamParams(video, None)]
    assert [(p.dts, p.data) for p in target.packets] == [(i * 40 * 90, p.data) for i, p in enumerate(frames)]
    assert target.packets[0].keyframe
    assert sum("audio codec 2" in r.message for r in caplog.records) == 1


def test_audio_specific_config():
    assert audio_specific_config(bytes([0x12, 0x10])) == audio_specific_config(bytes([0x12, 0x10]))
    params = audio_specific_config(bytes([0x12, 0x10]))  # AAC-LC, 44.1 kHz, 2 channels
    assert (params.sample_rate, params.channels) == (44100, 2)
    explicit = audio_specific_config((2 << 35 | 15 << 31 | 22000 << 7 | 1 << 3).to_bytes(5, "big"))
    assert (explicit.sample_rate, explicit.channels) == (22000, 1)
    with pytest.raises(ValueError):
        audio_specific_config(b"\x12")


def flv_of(reader: ChunkReader, data: bytes) -> tuple[list[Message], bytes]:
    """(the data messages, an FLV file of the audio and video messages) of what a player got."""
    messages = reader.feed(data)
    media = [m for m in messages if m.type in (AUDIO, VIDEO)]
    body = b"".join(flv.tag(m.type, m.timestamp, m.payload) for m in media)
    return [m for m in messages if m.type not in (AUDIO, VIDEO)], flv.header(True, True) + body


def player_reader() -> ChunkReader:
    reader = ChunkReader()
    reader.chunk_size = OUT_CHUNK_SIZE  # as the connection's Set Chunk Size told the client
    return reader


def test_rtmp_players_get_metadata_sequence_headers_and_frames_shared_and_a_slow_one_skips():
    video, frames = h264_clip(50, gop=10, bframes=2)
    audio, samples = aac_clip(80, 16000)
    stream = bare_stream()
    params = StreamParams(video, audio)
    stream.on_session_start(params)
    feed = FlvFeed(stream)
    ports = [FakeTransport() for _ in range(3)]
    fast, twin, slow = (RtmpPlayer(t, params) for t in ports)  # type: ignore[arg-type]
    slow.budget = 1200
    for player in (fast, twin, slow):
        feed.subscribe(player)
    packets = sorted(frames + samples, key=lambda p: p.dts / (90000 if p.kind == "video" else 16000))
    readers = [player_reader() for _ in ports]
    got: list[bytes] = [b"", b"", b""]
    data_messages = []
    for i, packet in enumerate(packets):
        stream.on_packet(packet)
        for n, transport in enumerate(ports):
            if n < 2 or i % 15 == 0:  # the slow one reads now and then
                data, transport.sent = b"".join(transport.drain()), []
                messages, tags = flv_of(readers[n], data)
                got[n] += tags[13:]
                data_messages += messages
    assert got[0] == got[1]  # one rendering of each message for both
    metadata = amf0.decode(data_messages[0].payload)
    assert metadata[0] == "onMetaData" and metadata[1]["width"] == 160 and metadata[1]["videocodecid"] == 7
    with av.open(io.BytesIO(flv.header(True, True) + got[0]), format="flv") as container:
        assert {s.codec_context.name for s in container.streams} == {"h264", "aac"}
        decoded = sum(len(p.decode()) for p in container.demux(video=0))  # its last, empty packet flushes
    assert decoded == len(frames)
    assert slow.skips > 0
    with av.open(io.BytesIO(flv.header(True, True) + got[2]), format="flv") as container:
        kept = [p for p in container.demux(video=0) if p.size]
    assert len(kept) < len(frames) and kept[0].is_keyframe
    gaps = [b for a, b in itertools.pairwise(kept) if b.dts - a.dts > 40]
    assert gaps and all(p.is_keyframe for p in gaps)


def test_a_publisher_that_closes_leaves_its_stream_offline_and_the_slot_free():
    video, frames = h264_clip(3)
    slot = PublishSlot("p")
    stream = Stream(SourceConf.from_json({"strToken": "p"}, "p"), slot, SourceSettings(1.0), OutputRegistry())
    stream.start()
    publisher = slot.claim("rtmp from test")
    publisher.set_params(StreamParams(video, None))
    publisher.packet(frames[0])
    assert stream.online
    publisher.close("gone")
    assert not stream.online and slot.publisher is None
    slot.claim("the next one")  # a new publisher is let in


def test_timestamps_go_on_past_the_32_bit_wrap():
    media = FlvMedia(PublishedMedia(), "t")
    wrap = 1 << 32
    stamps = [wrap - 40, wrap - 20, 0, wrap - 10, 20, 2_000_000_000, 4_000_000_000, 100]
    assert [media.unwrap(ms) for ms in stamps] == [
        wrap - 40,
        wrap - 20,
        wrap,
        wrap - 10,  # a little out of order across the wrap
        wrap + 20,
        wrap + 2_000_000_000,
        wrap + 4_000_000_000,
        2 * wrap + 100,
    ]
