"""formats/fmp4.py: init segments and fragments, read back by FFmpeg's own demuxer in-process."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest

from gateway.formats import h264, h265
from gateway.formats.fmp4 import (
    SAMPLE_FLAGS_NON_SYNC,
    SAMPLE_FLAGS_SYNC,
    duration_field_offsets,
    fragment,
    fragment_tracks,
    init_segment,
)
from gateway.hub.packet import MediaPacket, StreamParams
from tests.fixtures.media import aac_clip, h264_clip, h265_clip

AUDIO_RATE = 16000


def children(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of the boxes one after the other in `data`."""
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + size]))
        pos += size
    return out


def boxes(data: bytes, *path: bytes) -> list[bytes]:
    """Payloads of every box at `path` (b"moov", b"trak", ...)."""
    level = [data]
    for kind in path:
        level = [payload for d in level for k, payload in children(d) if k == kind]
    return level


def sample_entries(init: bytes) -> dict[bytes, bytes]:
    """The stsd sample entries (avc1, mp4a) by type."""
    stsds = boxes(init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
    return dict(entry for stsd in stsds for entry in children(stsd[8:]))  # after version, flags and count


def read_back(data: bytes) -> tuple[av.container.InputContainer, dict[str, list[av.Packet]]]:
    container = av.open(io.BytesIO(data))
    packets: dict[str, list[av.Packet]] = {"video": [], "audio": []}
    for packet in container.demux():
        if packet.size:
            packets[packet.stream.type].append(packet)
    return container, packets


def decoded_frames(params: StreamParams, packets: list[av.Packet]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = h264.avcc_config(params.video.sps, params.video.pps)
    frames = [frame for p in packets for frame in decoder.decode(p)]
    return frames + list(decoder.decode(None))


@pytest.fixture(scope="module")
def media() -> tuple[StreamParams, list[MediaPacket], list[MediaPacket]]:
    """25 fps H.264 with B-frames (so pts runs ahead of dts) and 16 kHz AAC."""
    video, frames = h264_clip(30, width=176, height=144, gop=10, bframes=2)
    audio, samples = aac_clip(20, AUDIO_RATE)
    return StreamParams(video, audio), frames, samples


def test_one_fragment_per_frame_reads_back_as_the_same_samples(media):
    params, frames, samples = media
    data = init_segment(params)
    for sequence, packet in enumerate(frames + samples, start=1):
        data += fragment(sequence, packet.kind, [packet])
    container, packets = read_back(data)
    with container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.width, video.codec_context.height) == ("h264", 176, 144)
        assert video.time_base == Fraction(1, 90000) and audio.time_base == Fraction(1, AUDIO_RATE)
        assert (audio.codec_context.name, audio.codec_context.sample_rate, audio.codec_context.channels) == (
            "aac",
            AUDIO_RATE,
            1,
        )
        assert bytes(video.codec_context.extradata) == h264.avcc_config(params.video.sps, params.video.pps)
        assert bytes(audio.codec_context.extradata) == params.audio.config
    got = [(p.dts, p.pts, p.duration, p.is_keyframe, bytes(p)) for p in packets["video"]]
    assert got == [(f.dts, f.pts, f.duration, f.keyframe, f.data) for f in frames]
    assert any(f.pts != f.dts for f in frames)  # composition offsets were exercised
    assert [(p.pts, p.duration, bytes(p)) for p in packets["audio"]] == [(s.pts, 1024, s.data) for s in samples]
    pictures = decoded_frames(params, packets["video"])
    assert len(pictures) == len(frames)
    assert [f.pts for f in pictures] == sorted(f.pts for f in frames)  # presentation order
    assert (pictures[0].width, pictures[0].height) == (176, 144)


def test_a_fragment_of_several_tracks_and_frames(media):
    """As an HLS part or a recording writes them: one moof, one traf per track, one mdat."""
    params, frames, samples = media
    data = init_segment(params, with_duration=True)
    data += fragment_tracks(1, [("video", frames[:10]), ("audio", samples[:8])])
    data += fragment_tracks(2, [("video", []), ("audio", samples[8:])])  # an empty track is left out
    data += fragment_tracks(3, [("video", frames[10:])])
    assert data.count(b"moof") == 3 and data.count(b"traf") == 4
    container, packets = read_back(data)
    container.close()
    assert [(p.dts, p.pts, p.is_keyframe) for p in packets["video"]] == [(f.dts, f.pts, f.keyframe) for f in frames]
    assert [p.pts for p in packets["audio"]] == [s.pts for s in samples]
    assert [bytes(p) for p in packets["video"]] == [f.data for f in frames]
    assert [bytes(p) for p in packets["audio"]] == [s.data for s in samples]
    assert len(decoded_frames(params, packets["video"])) == len(frames)


def test_trun_sample_flags_and_data_offsets(media):
    """What MSE reads without FFmpeg's help: which samples are sync samples, and where each
    track's data starts (from the moof's first byte)."""
    _, frames, samples = media
    data = fragment_tracks(7, [("video", frames), ("audio", samples)])
    [moof] = boxes(data, b"moof")
    assert int.from_bytes(boxes(moof, b"mfhd")[0][4:8], "big") == 7
    for traf, packets in zip(boxes(moof, b"traf"), (frames, samples), strict=True):
        [trun] = boxes(traf, b"trun")
        count, offset = int.from_bytes(trun[4:8], "big"), int.from_bytes(trun[8:12], "big")
        rows = [trun[12 + 16 * i : 28 + 16 * i] for i in range(count)]
        flags = [int.from_bytes(row[8:12], "big") for row in rows]
        sync = [p.keyframe or p.kind == "audio" for p in packets]
        assert flags == [SAMPLE_FLAGS_SYNC if s else SAMPLE_FLAGS_NON_SYNC for s in sync]
        assert [int.from_bytes(row[4:8], "big") for row in rows] == [len(p.data) for p in packets]
        assert data[offset : offset + sum(len(p.data) for p in packets)] == b"".join(p.data for p in packets)


def test_sample_entries_carry_the_picture_size_and_the_audio_layout(media):
    params, _, _ = media
    init = init_segment(params)
    entries = sample_entries(init)
    avc1, mp4a = entries[b"avc1"], entries[b"mp4a"]
    assert (int.from_bytes(avc1[24:26], "big"), int.from_bytes(avc1[26:28], "big")) == (176, 144)
    assert boxes(avc1[78:], b"avcC") == [h264.avcc_config(params.video.sps, params.video.pps)]
    assert int.from_bytes(mp4a[16:18], "big") == 1 and int.from_bytes(mp4a[24:28], "big") >> 16 == AUDIO_RATE
    tkhds = boxes(init, b"moov", b"trak", b"tkhd")
    assert [(int.from_bytes(t[76:80], "big") >> 16, int.from_bytes(t[80:84], "big") >> 16) for t in tkhds] == [
        (176, 144),
        (0, 0),
    ]
    stereo, _ = aac_clip(1, 48000, channels=2)
    mp4a = sample_entries(init_segment(StreamParams(None, stereo)))[b"mp4a"]
    assert int.from_bytes(mp4a[16:18], "big") == 2 and int.from_bytes(mp4a[24:28], "big") >> 16 == 48000


def test_a_video_only_stream_has_one_track_and_the_duration_fields_are_found():
    video, frames = h264_clip(10, gop=10)
    params = StreamParams(video, None)
    init = init_segment(params, with_duration=True)
    container, packets = read_back(init + fragment(1, "video", frames))
    with container:
        assert [s.type for s in container.streams] == ["video"]
    assert len(packets["video"]) == 10 and packets["video"][0].is_keyframe
    assert not any(p.is_keyframe for p in packets["video"][1:])
    mvhd, mehd = duration_field_offsets(init)
    assert init[mvhd - 4 : mvhd] == (1000).to_bytes(4, "big")  # the movie timescale just before
    assert init[mehd - 8 : mehd - 4] == b"mehd" and init[mvhd : mvhd + 4] == init[mehd : mehd + 4] == bytes(4)
    patched = bytearray(init)
    for offset in (mvhd, mehd):
        patched[offset : offset + 4] = (400).to_bytes(4, "big")  # 0.4 s, as a finished recording
    with av.open(io.BytesIO(bytes(patched) + fragment(1, "video", frames))) as container:
        assert container.duration == 400_000  # microseconds


def test_an_audio_only_stream_and_audio_parameters_in_the_sample_entry():
    audio, samples = aac_clip(5, 48000, channels=2)
    container, packets = read_back(init_segment(StreamParams(None, audio)) + fragment(1, "audio", samples))
    with container:
        [stream] = container.streams
        assert (stream.type, stream.codec_context.sample_rate, stream.codec_context.channels) == ("audio", 48000, 2)
        assert stream.time_base == Fraction(1, 48000)
    assert [p.pts for p in packets["audio"]] == [s.pts for s in samples]
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = audio.config
    assert sum(frame.samples for p in packets["audio"] for frame in decoder.decode(p)) == 5 * 1024


def test_h265_init_is_hvc1_with_our_hvcc_and_ffmpeg_decodes_the_fragments():
    """hvc1 (not hev1): the parameter sets live in hvcC only, as the hub's samples lack them."""
    video, frames = h265_clip(12, width=176, height=144, gop=10)
    audio, samples = aac_clip(5, AUDIO_RATE)
    params = StreamParams(video, audio)
    init = init_segment(params)
    hvc1 = sample_entries(init)[b"hvc1"]
    assert (int.from_bytes(hvc1[24:26], "big"), int.from_bytes(hvc1[26:28], "big")) == (176, 144)
    assert boxes(hvc1[78:], b"hvcC") == [h265.hvcc_config(video.vps, video.sps, video.pps)]
    data = init + b"".join(fragment(i, "video", [f]) for i, f in enumerate(frames, start=1))
    data += fragment(len(frames) + 1, "audio", samples)
    container, packets = read_back(data)
    with container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_tag) == ("hevc", "hvc1")
        decoder = av.CodecContext.create("hevc", "r")
        decoder.extradata = bytes(stream.codec_context.extradata)
        pictures = [f for p in packets["video"] for f in decoder.decode(p)] + list(decoder.decode(None))
    assert len(pictures) == len(frames) and (pictures[0].width, pictures[0].height) == (176, 144)
    assert [p.is_keyframe for p in packets["video"]] == [f.keyframe for f in frames]
    assert params.mime == f'video/mp4; codecs="{h265.codec_string(video.sps)}, mp4a.40.2"'
