"""ingest/packets.py: PyAV packets as the hub's MediaPackets (re-framed, never decoded)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import av
import pytest

from gateway.formats import h264, h265, nal
from gateway.formats.aac import aac_params
from gateway.formats.audio_transcode import AAC_RATE
from gateway.formats.mpegts import adts_header
from gateway.hub.packet import AudioParams, VideoParams
from gateway.ingest.packets import PacketReader
from tests.fixtures.fake_av import (
    FakeCodecContext,
    FakeContainer,
    FakePacket,
    FakeStream,
    FakeStreams,
    parameter_sets,
    video_stream,
)
from tests.fixtures.media import encoded_h264, encoded_h265

SPS, PPS = parameter_sets()
IDR = b"\x65\x88\x84" + bytes(30)
SLICE = b"\x41\x9a\x02" + bytes(20)
SEI = b"\x06\x05\x01\x00\x80"
AUD = b"\x09\xf0"
MS = Fraction(1, 1000)


def reader(*streams: FakeStream, enable_audio: bool = True) -> PacketReader:
    return PacketReader(FakeContainer("fake://", FakeStreams(list(streams)), []), enable_audio)


def audio_stream(name: str, extradata: bytes | None = None, sample_rate: int = 0, channels: int = 0) -> FakeStream:
    return FakeStream("audio", FakeCodecContext(name, extradata, sample_rate, channels))


def frame(data: bytes, dts: int | None, pts: int | None = None, keyframe: bool = False, **kw: Any) -> FakePacket:
    return FakePacket(None, data, dts, dts if pts is None and dts is not None else pts, is_keyframe=keyframe, **kw)


# -- video ----------------------------------------------------------------------------------


def test_annexb_frames_leave_as_avcc_with_their_parameter_sets_taken_out():
    session = reader(video_stream())  # an RTSP camera whose SDP had no sets
    assert session.video is None
    key = b"\x00\x00\x00\x01" + AUD + b"\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01" + IDR
    items, changed = session.video_packets(frame(key, 0, keyframe=True))
    assert changed and session.video == VideoParams.from_h264(SPS, PPS)
    assert [(p.kind, p.keyframe, p.data) for p in items] == [("video", True, nal.to_avcc([IDR]))]
    items, changed = session.video_packets(frame(nal.to_annexb([SEI, SLICE]), 3600))
    assert not changed and [(p.keyframe, p.data) for p in items] == [(False, nal.to_avcc([SEI, SLICE]))]
    # The same sets again change nothing; new ones (the camera's resolution changed) do.
    assert not session.video_packets(frame(nal.to_annexb([SPS, PPS, IDR]), 7200, keyframe=True))[1]
    sps2, pps2, _ = encoded_h264(1, 320, 240)
    items, changed = session.video_packets(frame(nal.to_annexb([sps2, pps2, IDR]), 10800, keyframe=True))
    assert changed and (session.video.width, session.video.height) == (320, 240) and len(items) == 1
    assert session.params.video == session.video


def test_parameter_sets_in_annexb_extradata_are_known_before_any_frame():
    session = reader(video_stream(nal.to_annexb([SPS, PPS])))
    assert session.video == VideoParams.from_h264(SPS, PPS)
    items, changed = session.video_packets(frame(nal.to_annexb([IDR]), 0))
    assert not changed and items[0].data == nal.to_avcc([IDR])
    assert items[0].keyframe  # an IDR slice is a keyframe, whatever the demuxer says


@pytest.mark.parametrize("length_size", [4, 2])
def test_avcc_frames_are_read_by_the_avcc_length_size(length_size):
    """FLV and MP4: avcC extradata says the framing; no start-code sniffing, since a 4-byte
    length of a 256-511 byte NAL (00 00 01 xx) looks like a start code."""
    config = bytearray(h264.avcc_config(SPS, PPS))
    config[4] = 0xFC | (length_size - 1)
    session = reader(video_stream(bytes(config)))
    assert session.video == VideoParams.from_h264(SPS, PPS)
    long_nal = b"\x41" + bytes(range(256)) + bytes(44)  # 301 bytes
    framed = b"".join(len(n).to_bytes(length_size, "big") + n for n in (long_nal, AUD, SEI))
    assert length_size != 4 or nal.is_annexb(framed)  # the trap: it looks like a start code
    items, changed = session.video_packets(frame(framed, 40, 80, time_base=MS))
    assert not changed and [(p.data, p.keyframe) for p in items] == [(nal.to_avcc([long_nal, SEI]), False)]


def test_frames_of_only_parameter_sets_give_no_packet_but_new_parameters():
    session = reader(video_stream())
    assert session.video_packets(frame(nal.to_annexb([AUD, SPS, PPS]), 0)) == ([], True)
    assert session.video is not None


def test_timestamps_become_90_khz_ticks_truncated_towards_zero():
    session = reader(video_stream(nal.to_annexb([SPS, PPS])))
    [p] = session.video_packets(frame(nal.to_annexb([SLICE]), 40, 120, time_base=MS, duration=40))[0]
    assert (p.dts, p.pts, p.duration) == (3600, 10800, 3600)
    [p] = session.video_packets(frame(nal.to_annexb([SLICE]), -1, 1, time_base=Fraction(1, 7)))[0]
    assert (p.dts, p.pts, p.duration) == (-12857, 12857, 0)  # 90000 / 7 = 12857.14
    [p] = session.video_packets(frame(nal.to_annexb([SLICE]), None, 25, time_base=Fraction(1, 25)))[0]
    assert (p.dts, p.pts) == (90000, 90000)  # no dts: the pts stands in


def test_untimed_first_frames_are_placed_one_frame_apart_before_the_next_timed_one():
    """RTSP gives the first frame (the keyframe) no timestamp."""
    session = reader(video_stream(nal.to_annexb([SPS, PPS])))
    assert session.video_packets(frame(nal.to_annexb([IDR]), None, keyframe=True)) == ([], False)
    assert session.video_packets(frame(nal.to_annexb([SLICE]), None)) == ([], False)
    items, _ = session.video_packets(frame(nal.to_annexb([SLICE]), 90000))
    assert [(p.dts, p.pts, p.keyframe) for p in items] == [
        (82800, 82800, True),
        (86400, 86400, False),
        (90000, 90000, False),
    ]
    [p] = session.video_packets(frame(nal.to_annexb([SLICE]), 93600))[0]  # nothing held any more
    assert p.dts == 93600


def test_only_h264_and_h265_video_is_taken():
    session = reader(FakeStream("video", FakeCodecContext("mpeg4")))
    assert session.video_stream is None and session.video is None


def hevc_stream(extradata: bytes | None = None) -> FakeStream:
    return FakeStream("video", FakeCodecContext("hevc", extradata))


HEVC_VPS, HEVC_SPS, HEVC_PPS, _ = encoded_h265(1)
HEVC_IDR = bytes([19 << 1, 0x01]) + b"\xaf" + bytes(30)  # IDR_W_RADL
HEVC_CRA = bytes([21 << 1, 0x01]) + b"\xaf" + bytes(30)
HEVC_TRAIL = bytes([1 << 1, 0x01]) + b"\xd0" + bytes(20)  # TRAIL_R
HEVC_SEI = bytes([39 << 1, 0x01, 0x05, 0x01, 0x00, 0x80])


def test_hevc_from_rtsp_loses_vps_sps_pps_and_aud_and_irap_pictures_are_keyframes():
    """What rtph265depay hands FFmpeg: Annex-B, parameter sets and an AUD in band."""
    session = reader(hevc_stream())
    assert session.codec.hevc and session.video is None
    key = nal.to_annexb([h265.AUD, HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_SEI, HEVC_IDR])
    items, changed = session.video_packets(frame(key, 0))  # the demuxer did not flag it
    assert changed and session.video == VideoParams.from_h265(HEVC_VPS, HEVC_SPS, HEVC_PPS)
    assert session.video.hevc and session.params.mime.startswith('video/mp4; codecs="hvc1.1.6.')
    assert [(p.keyframe, p.data) for p in items] == [(True, nal.to_avcc([HEVC_SEI, HEVC_IDR]))]
    [p] = session.video_packets(frame(nal.to_annexb([h265.AUD, HEVC_TRAIL]), 3600))[0]
    assert (p.keyframe, p.data) == (False, nal.to_avcc([HEVC_TRAIL]))
    [p] = session.video_packets(frame(nal.to_annexb([HEVC_CRA]), 7200))[0]
    assert p.keyframe  # a CRA picture is a random access point too


def test_hevc_from_flv_or_mp4_is_framed_as_its_hvcc_says():
    session = reader(hevc_stream(h265.hvcc_config(HEVC_VPS, HEVC_SPS, HEVC_PPS)))
    assert session.video == VideoParams.from_h265(HEVC_VPS, HEVC_SPS, HEVC_PPS) and session.length_prefixed
    items, changed = session.video_packets(frame(nal.to_avcc([HEVC_TRAIL, HEVC_SEI]), 40, time_base=MS))
    assert not changed and [(p.dts, p.keyframe, p.data) for p in items] == [
        (3600, False, nal.to_avcc([HEVC_TRAIL, HEVC_SEI]))
    ]
    [p] = session.video_packets(frame(nal.to_avcc([HEVC_IDR]), 80, time_base=MS))[0]
    assert p.keyframe


def test_real_x265_frames_pass_through_as_the_hub_wants_them():
    vps, sps, pps, packets = encoded_h265(12, gop=10)
    session = reader(hevc_stream(nal.to_annexb([vps, sps, pps])))
    out = [p for packet in packets for p in session.video_packets(frame(bytes(packet), packet.dts * 3600))[0]]
    assert [p.keyframe for p in out] == [packet.is_keyframe for packet in packets] and out[0].keyframe
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = h265.hvcc_config(vps, sps, pps)
    assert len([f for p in out for f in decoder.decode(av.Packet(p.data))] + list(decoder.decode(None))) == 12


# -- audio ----------------------------------------------------------------------------------


def test_aac_with_a_config_passes_through_with_its_parameters():
    config = aac_params(44100, 2).config
    stream = audio_stream("aac", config, 44100, 2)
    session = reader(video_stream(), stream)
    assert session.audio_stream is stream and session.audio == AudioParams("aac", 44100, 2, config)
    assert session.params.audio == session.audio and session.g711 is None
    [p] = session.audio_packets(frame(b"\x21\x10raw", 1000, time_base=MS))
    assert (p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data) == ("audio", 44100, 44100, 1024, True, b"\x21\x10raw")
    assert session.audio_packets(frame(b"\x21\x10raw", None)) == []  # untimed audio is dropped


@pytest.mark.parametrize("crc", [False, True])
def test_adts_headers_are_stripped_and_give_the_parameters_when_the_demuxer_had_none(crc):
    session = reader(video_stream(), audio_stream("aac"))  # a TS whose demuxer saw no rate yet
    assert session.audio is None and session.audio_stream is not None
    payload = b"\x21\x10\x05raw-aac"
    header = bytearray(adts_header(aac_params(22050, 2), len(payload) + (2 if crc else 0)))
    if crc:
        header[1] &= 0xFE  # protection_absent = 0: a 2-byte CRC follows the header
        header += b"\xab\xcd"
    [p] = session.audio_packets(frame(bytes(header) + payload, 22050, time_base=Fraction(1, 22050)))
    assert p.data == payload and p.pts == 22050
    assert session.audio == aac_params(22050, 2)


def test_adts_rate_and_channels_from_the_demuxer_and_non_adts_audio_kept_as_it_is():
    session = reader(video_stream(), audio_stream("aac", None, 48000, 1))
    assert session.audio == aac_params(48000, 1)
    [p] = session.audio_packets(frame(b"\x12\x34", 480, time_base=Fraction(1, 48000)))
    assert p.data == b"\x12\x34"
    unknown = reader(video_stream(), audio_stream("aac"))
    assert unknown.audio_packets(frame(b"\x12\x34", 0, time_base=Fraction(1, 48000))) == []  # no parameters


def test_audio_is_skipped_when_disabled_or_unsupported():
    aac = audio_stream("aac", aac_params(16000, 1).config, 16000, 1)
    assert reader(video_stream(), aac, enable_audio=False).audio_stream is None
    session = reader(video_stream(), audio_stream("mp3", None, 44100, 2), aac)
    assert session.audio_stream is aac and session.audio.sample_rate == 16000


def alaw_packets(count: int, rate: int = 8000) -> list[av.Packet]:
    """`count` 20 ms packets of a 440 Hz tone in G.711 A-law, on a 1/rate clock."""
    encoder = av.CodecContext.create("pcm_alaw", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"
    encoder.time_base = Fraction(1, rate)
    encoder.open()
    samples = rate // 50
    out = []
    for i in range(count):
        tone = av.AudioFrame(format="s16", layout="mono", samples=samples)
        tone.sample_rate, tone.pts = rate, i * samples
        values = [int(8000 * math.sin(2 * math.pi * 440 * (i * samples + n) / rate)) for n in range(samples)]
        tone.planes[0].update(b"".join(v.to_bytes(2, "little", signed=True) for v in values))
        for packet in encoder.encode(tone):
            packet.time_base = Fraction(1, rate)
            out.append(packet)
    return out


@pytest.mark.parametrize("codec,name", [("pcm_alaw", "PCMA"), ("pcm_mulaw", "PCMU")])
def test_g711_is_transcoded_to_aac_and_kept_as_it_is_beside_it(codec, name):
    session = reader(video_stream(), audio_stream(codec, None, 8000, 1))
    assert session.g711 == name and session.params.g711 == name
    assert (session.audio.codec, session.audio.sample_rate, session.audio.channels) == ("aac", AAC_RATE, 1)
    aac, g711 = [], []
    for packet in alaw_packets(50):  # 1 s (A-law bytes decode as mu-law noise just as well)
        out = session.audio_packets(packet)
        assert out[-1].kind == "g711" and out[-1].data == bytes(packet) and out[-1].pts == packet.pts
        g711.append(out[-1])
        aac += out[:-1]
    assert [p.pts for p in g711] == [i * 160 for i in range(50)]
    assert all(p.kind == "audio" and p.duration == 1024 and p.keyframe for p in aac)
    assert [p.pts for p in aac] == [aac[0].pts + i * 1024 for i in range(len(aac))]  # one continuous clock
    assert 12 <= len(aac) <= 16  # 16000 samples, less the encoder's look-ahead
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = session.audio.config
    assert sum(f.samples for p in aac for f in decoder.decode(av.Packet(p.data))) == 1024 * len(aac)


def test_g711_at_another_rate_is_transcoded_but_not_kept():
    session = reader(video_stream(), audio_stream("pcm_alaw", None, 16000, 1))
    assert session.g711 is None and session.audio.sample_rate == AAC_RATE
    out = [p for packet in alaw_packets(25, rate=16000) for p in session.audio_packets(packet)]
    assert out and {p.kind for p in out} == {"audio"}
