"""formats/mpegts.py: HLS v1 segments, read back byte by byte and by FFmpeg's demuxer in-process."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import av
import pytest

from gateway.formats import h265, nal
from gateway.formats.aac import aac_params
from gateway.formats.mpegts import (
    AUDIO_PID,
    PAT_PID,
    PCR_LEAD,
    PMT_PID,
    STREAM_TYPE_AAC_ADTS,
    STREAM_TYPE_H264,
    STREAM_TYPE_H265,
    TS_OFFSET,
    VIDEO_PID,
    WRAP,
    TsWriter,
    adts_header,
    crc32_mpeg2,
)
from gateway.hub.packet import MediaPacket, StreamParams
from tests.fixtures.media import aac_clip, h264_clip, h265_clip

AUDIO_RATE = 16000


@dataclass
class TsPacket:
    pid: int
    start: bool  # payload_unit_start_indicator
    counter: int
    has_payload: bool
    random_access: bool
    pcr: int | None
    payload: bytes


@dataclass
class Pes:
    pid: int
    pts: int
    dts: int | None
    random_access: bool
    pcr: int | None
    data: bytes = field(repr=False)


def ts_packets(data: bytes) -> list[TsPacket]:
    assert len(data) % 188 == 0
    out = []
    for i in range(0, len(data), 188):
        p = data[i : i + 188]
        assert p[0] == 0x47
        control = p[3] >> 4
        pos, random_access, pcr = 4, False, None
        if control & 2:  # adaptation field
            length = p[4]
            if length:
                flags = p[5]
                random_access = bool(flags & 0x40)
                if flags & 0x10:
                    base = int.from_bytes(p[6:11], "big") >> 7
                    pcr = base
            pos = 5 + length
        out.append(
            TsPacket(
                (p[1] & 0x1F) << 8 | p[2],
                bool(p[1] & 0x40),
                p[3] & 0x0F,
                bool(control & 1),
                random_access,
                pcr,
                p[pos:] if control & 1 else b"",
            )
        )
    return out


def pmt_streams(section: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(PCR PID, [(stream type, PID)]) of a PMT packet's payload."""
    length = (section[2] & 0x0F) << 8 | section[3]
    pos, end, streams = 13, 4 + length - 4, []
    while pos < end:
        streams.append((section[pos], int.from_bytes(section[pos + 1 : pos + 3], "big") & 0x1FFF))
        pos += 5 + (int.from_bytes(section[pos + 3 : pos + 5], "big") & 0x0FFF)
    return int.from_bytes(section[9:11], "big") & 0x1FFF, streams


def timestamp(b: bytes) -> int:
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def pes_list(packets: list[TsPacket], pid: int) -> list[Pes]:
    out: list[Pes] = []
    for p in packets:
        if p.pid != pid:
            continue
        if p.start:
            assert p.payload[:3] == b"\x00\x00\x01"
            flags, header_length = p.payload[7], p.payload[8]
            pts = timestamp(p.payload[9:14])
            dts = timestamp(p.payload[14:19]) if flags & 0x40 else None
            out.append(Pes(pid, pts, dts, p.random_access, p.pcr, p.payload[9 + header_length :]))
        else:
            assert not p.random_access and p.pcr is None
            out[-1].data += p.payload
    return out


def demuxed(data: bytes) -> tuple[dict[str, list[av.Packet]], int]:
    """Packets by stream type, and how many video frames decode."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        packets: dict[str, list[av.Packet]] = {"video": [], "audio": []}
        decoder = av.CodecContext.create("h264", "r")
        frames = 0
        for packet in container.demux():
            if packet.size:
                packets[packet.stream.type].append(packet)
                if packet.stream.type == "video":
                    frames += len(decoder.decode(packet))
        frames += len(decoder.decode(None))
    return packets, frames


def interleaved(*tracks: list[MediaPacket]) -> list[MediaPacket]:
    return sorted(
        (p for track in tracks for p in track), key=lambda p: p.dts / (90000 if p.kind == "video" else AUDIO_RATE)
    )


@pytest.fixture(scope="module")
def segments() -> tuple[StreamParams, list[list[MediaPacket]], list[bytes]]:
    """Three one-GOP segments (10 frames with B-frames, and the audio beside them), written in order."""
    video, frames = h264_clip(30, width=176, height=144, gop=10, bframes=2)
    audio, samples = aac_clip(45, AUDIO_RATE)  # 45 * 1024 samples ~ 2.9 s
    params = StreamParams(video, audio)
    per_segment = [
        interleaved(frames[i * 10 : i * 10 + 10], [s for s in samples if i * 0.4 <= s.pts / AUDIO_RATE < i * 0.4 + 0.4])
        for i in range(3)
    ]
    writer = TsWriter()
    return params, per_segment, [writer.segment(params, packets) for packets in per_segment]


def test_every_segment_starts_with_pat_and_pmt_and_decodes_on_its_own(segments):
    _, per_segment, data = segments
    for packets, segment in zip(per_segment, data, strict=True):
        ts = ts_packets(segment)
        assert [p.pid for p in ts[:2]] == [PAT_PID, PMT_PID]
        pat, pmt = ts[0].payload, ts[1].payload
        for section in (pat, pmt):
            length = (section[2] & 0x0F) << 8 | section[3]
            body = section[1 : 4 + length]  # after the pointer field, the CRC included
            assert crc32_mpeg2(body[:-4]) == int.from_bytes(body[-4:], "big")
        assert int.from_bytes(pat[11:13], "big") & 0x1FFF == PMT_PID  # program 1's PMT
        assert pmt_streams(pmt) == (VIDEO_PID, [(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC_ADTS, AUDIO_PID)])
        got, frames = demuxed(segment)
        assert frames == sum(p.kind == "video" for p in packets)  # in-band SPS/PPS at the keyframe
        assert len(got["audio"]) == sum(p.kind == "audio" for p in packets)
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value


def test_continuity_counters_run_on_across_segments(segments):
    _, _, data = segments
    last: dict[int, int] = {}
    for p in ts_packets(b"".join(data)):
        assert p.has_payload
        assert p.counter == (last[p.pid] + 1) % 16 if p.pid in last else p.counter == 0, p.pid
        last[p.pid] = p.counter
    assert set(last) == {PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID}


def test_pes_timestamps_pcr_and_random_access_marks(segments):
    params, per_segment, data = segments
    ts = ts_packets(b"".join(data))
    frames = [p for packets in per_segment for p in packets if p.kind == "video"]
    samples = [p for packets in per_segment for p in packets if p.kind == "audio"]
    video = pes_list(ts, VIDEO_PID)
    assert [(v.pts, v.dts) for v in video] == [(f.pts + TS_OFFSET, f.dts + TS_OFFSET) for f in frames]
    assert [v.pcr for v in video] == [f.dts + TS_OFFSET - PCR_LEAD for f in frames]
    assert [v.random_access for v in video] == [f.keyframe for f in frames]
    for v, f in zip(video, frames, strict=True):
        nals = nal.split_annexb(v.data)
        assert nals[0] == b"\x09\xf0"  # an access unit delimiter first
        sets = [params.video.sps, params.video.pps] if f.keyframe else []
        assert nals[1:] == sets + nal.split_avcc(f.data)
    audio = pes_list(ts, AUDIO_PID)
    assert [(a.pts, a.dts) for a in audio] == [(s.pts * 90000 // AUDIO_RATE + TS_OFFSET, None) for s in samples]
    assert [a.data for a in audio] == [adts_header(params.audio, len(s.data)) + s.data for s in samples]
    assert not any(a.pcr is not None or a.random_access for a in audio)


def test_ffmpeg_reads_the_segments_as_one_stream_with_the_same_times(segments):
    _, per_segment, data = segments
    got, frames = demuxed(b"".join(data))
    sent = [p for packets in per_segment for p in packets]
    video = [p for p in sent if p.kind == "video"]
    assert frames == len(video) == len(got["video"])
    assert [(p.dts, p.pts) for p in got["video"]] == [(f.dts + TS_OFFSET, f.pts + TS_OFFSET) for f in video]
    assert [p.is_keyframe for p in got["video"]] == [f.keyframe for f in video]
    audio = [p for p in sent if p.kind == "audio"]
    assert [p.pts for p in got["audio"]] == [s.pts * 90000 // AUDIO_RATE + TS_OFFSET for s in audio]
    decoder = av.CodecContext.create("aac", "r")
    assert sum(f.samples for p in got["audio"] for f in decoder.decode(p)) == 1024 * len(audio)


def test_timestamps_and_the_pcr_wrap_at_33_bits():
    video, frames = h264_clip(4, gop=10)
    # Decode times that reach 2^33 just as the PCR (0.7 s behind) does.
    first = WRAP - TS_OFFSET + PCR_LEAD - 2 * 3600
    late = [
        MediaPacket("video", first + n * 3600, first + n * 3600, 3600, f.keyframe, f.data) for n, f in enumerate(frames)
    ]
    ts = ts_packets(TsWriter().segment(StreamParams(video, None), late))
    assert pmt_streams(ts[1].payload) == (VIDEO_PID, [(STREAM_TYPE_H264, VIDEO_PID)])
    pes = pes_list(ts, VIDEO_PID)
    assert [v.dts for v in pes] == [(p.dts + TS_OFFSET) % WRAP for p in late]
    assert [v.dts for v in pes][2:] == [PCR_LEAD, PCR_LEAD + 3600]
    assert [v.pcr for v in pes] == [WRAP - 7200, WRAP - 3600, 0, 3600]


@pytest.mark.parametrize("payload", range(158, 166))
def test_a_pes_ending_in_any_packet_size_is_stuffed_to_188_bytes(payload):
    """Audio PES packets one or two bytes short of a full TS packet take the short forms of
    adaptation-field stuffing (a lone length byte of 0; a length and a flags byte)."""
    audio = aac_params(AUDIO_RATE, 1)
    sample = MediaPacket("audio", 1024, 1024, 1024, True, bytes(range(payload)))
    data = TsWriter().segment(StreamParams(None, audio), [sample])
    ts = ts_packets(data)  # 188-byte packets, each starting with its sync byte
    [pes] = pes_list(ts, AUDIO_PID)
    assert pes.data == adts_header(audio, payload) + sample.data and pes.pts == 1024 * 90000 // AUDIO_RATE + TS_OFFSET


def test_h265_is_stream_type_0x24_with_aud_and_parameter_sets_in_band():
    """HEVC in TS (ISO/IEC 13818-1 Amd 3): an AUD starts every access unit, VPS/SPS/PPS go
    before every IRAP picture (a TS reader has no other place to find them)."""
    video, frames = h265_clip(20, width=176, height=144, gop=10)
    params = StreamParams(video, None)
    segment = TsWriter().segment(params, frames)
    ts = ts_packets(segment)
    assert pmt_streams(ts[1].payload) == (VIDEO_PID, [(STREAM_TYPE_H265, VIDEO_PID)])
    pes = pes_list(ts, VIDEO_PID)
    assert len(pes) == len(frames)
    for p, frame in zip(pes, frames, strict=True):
        kinds = [h265.nal_type(unit) for unit in nal.split_annexb(p.data)]
        sets = [h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS] if frame.keyframe else []
        assert kinds[: 1 + len(sets)] == [h265.NAL_AUD, *sets]
        assert nal.to_avcc(nal.split_annexb(p.data)[1 + len(sets) :]) == frame.data
        assert p.random_access == frame.keyframe
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width) == ("hevc", 176)
        frames_decoded = [f for packet in container.demux(stream) for f in packet.decode()]
    assert len(frames_decoded) == len(frames)
