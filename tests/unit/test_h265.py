"""formats/h265.py: libx265's parameter sets read, put into hvcC and the codec string, and
checked against FFmpeg's own reading (its decoder, its mp4 muxer's hvcC, its SPS trace)."""

from __future__ import annotations

import io
import re
from fractions import Fraction

import av
import av.logging
import pytest

from gateway.formats import h265, nal
from gateway.hub.packet import VideoParams
from tests.fixtures.media import encoded_h265, h265_clip


def ffmpeg_sps_fields(vps: bytes, sps: bytes, pps: bytes) -> dict[str, int]:
    """The SPS fields as FFmpeg's trace_headers bitstream filter logs them."""
    bsf = av.BitStreamFilterContext("trace_headers", "hevc")
    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs:
            bsf.filter(av.Packet(nal.to_annexb([vps, sps, pps])))
            bsf.filter(None)
    finally:
        av.logging.set_level(level)
    fields = [re.fullmatch(r"\d+\s+(\w+)\s+[01]+ = (\d+)", line.strip()) for _, _, line in logs]
    return {m[1]: int(m[2]) for m in fields if m}


def test_a_1080p_sps_with_a_conformance_window_gives_the_shown_size():
    """x265 codes 1080 lines as 1088 (16-line CUs) and crops 8 in the SPS."""
    vps, sps, pps, _ = encoded_h265(1, 1920, 1080)
    traced = ffmpeg_sps_fields(vps, sps, pps)
    assert (traced["pic_width_in_luma_samples"], traced["pic_height_in_luma_samples"]) == (1920, 1088)
    assert traced["conformance_window_flag"] == 1 and traced["conf_win_bottom_offset"] == 4  # chroma rows
    info = h265.SpsInfo.parse(sps)
    assert (info.width, info.height) == (1920, 1080)
    assert (info.profile_idc, info.level_idc, info.chroma_format_idc, info.bit_depth_luma) == (1, 120, 1, 8)
    assert VideoParams.from_h265(vps, sps, pps).height == 1080


@pytest.mark.parametrize("size", [(160, 120), (322, 242), (640, 360)])
def test_sizes_match_what_ffmpeg_decodes(size):
    vps, sps, pps, packets = encoded_h265(1, *size)
    info = h265.SpsInfo.parse(sps)
    decoder = av.CodecContext.create("hevc", "r")
    keyframe = av.Packet(nal.to_annexb([vps, sps, pps]) + bytes(packets[0]))
    frames = list(decoder.decode(keyframe)) + list(decoder.decode(None))
    assert (info.width, info.height) == size == (frames[0].width, frames[0].height)


def test_codec_string_of_x265_main():
    """Main profile (idc 1, compatible with 1 and 2: flags reversed 0x6), Main tier,
    level 4 (120), progressive and frame-only source (constraint byte 0x90)."""
    _, sps, _, _ = encoded_h265(1, 1920, 1080)
    assert h265.codec_string(sps) == "hvc1.1.6.L120.90"
    _, small, _, _ = encoded_h265(1, 640, 360)
    assert h265.codec_string(small) == "hvc1.1.6.L63.90"  # level 2.1
    high_tier = sps[:3] + bytes([sps[3] | 0x20]) + sps[4:]  # general_tier_flag
    assert h265.codec_string(high_tier) == "hvc1.1.6.H120.90"
    space_1 = sps[:3] + bytes([sps[3] | 0x40]) + sps[4:]  # general_profile_space 1
    assert h265.codec_string(space_1) == "hvc1.A1.6.L120.90"


def test_a_truncated_sps_is_a_value_error():
    _, sps, _, _ = encoded_h265(1)
    with pytest.raises(ValueError, match="truncated"):
        h265.SpsInfo.parse(sps[:10])


def test_hvcc_config_is_what_ffmpeg_decodes_from():
    """A decoder given only our hvcC as extradata decodes the length-prefixed frames."""
    params, packets = h265_clip(12, 176, 144, gop=10)
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = h265.hvcc_config(params.vps, params.sps, params.pps)
    frames = [f for p in packets for f in decoder.decode(av.Packet(p.data))] + list(decoder.decode(None))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (176, 144)
    # Frame 5's luma is 16 + 40: 40 / 219 of full range in grey.
    assert frames[5].to_ndarray(format="gray")[72, 88] == pytest.approx(40 * 255 / 219, abs=3)


def test_hvcc_config_agrees_with_ffmpeg_mp4_muxers_and_parses_back():
    vps, sps, pps, packets = encoded_h265(2, 320, 240)
    elementary = nal.to_annexb([vps, sps, pps]) + b"".join(bytes(p) for p in packets)
    buffer = io.BytesIO()
    with av.open(io.BytesIO(elementary), format="hevc") as source, av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        stream.time_base = Fraction(1, 25)
        for i, p in enumerate(source.demux(source.streams.video[0])):
            if p.size:
                p.stream = stream
                p.pts = p.dts = i
                p.time_base = Fraction(1, 25)
                out.mux(p)
    with av.open(io.BytesIO(buffer.getvalue())) as back:
        theirs = bytes(back.streams.video[0].codec_context.extradata)
    ours = h265.hvcc_config(vps, sps, pps)
    # version, profile space/tier/idc, compatibility flags, constraint flags, level
    assert ours[:13] == theirs[:13]
    assert ours[16:19] == theirs[16:19]  # chroma format, bit depths
    assert ours[21] & 0x3F == theirs[21] & 0x3F  # sub layers, temporal id nesting, 4-byte lengths
    assert h265.parse_hvcc_config(ours) == ([vps, sps, pps], 4)
    units, length_size = h265.parse_hvcc_config(theirs)
    # FFmpeg's raw parser keeps the zero byte of a 4-byte start code (trailing_zero_8bits).
    assert [u.rstrip(b"\x00") for u in units] == [vps, sps, pps] and length_size == 4


def test_parse_hvcc_config_refuses_what_is_not_one():
    record = h265.hvcc_config(*encoded_h265(1)[:3])
    with pytest.raises(ValueError, match="not an hvcC"):
        h265.parse_hvcc_config(b"\x00" + record[1:])
    with pytest.raises(ValueError, match="not an hvcC"):
        h265.parse_hvcc_config(record[:20])
    with pytest.raises(ValueError, match="truncated"):
        h265.parse_hvcc_config(record[:-5])


@pytest.mark.parametrize(
    "kind,irap",
    [
        (0, False),  # TRAIL_N
        (1, False),  # TRAIL_R
        (9, False),  # RASL_R
        (16, True),  # BLA_W_LP
        (17, True),  # BLA_W_RADL
        (18, True),  # BLA_N_LP
        (19, True),  # IDR_W_RADL
        (20, True),  # IDR_N_LP
        (21, True),  # CRA_NUT
        (22, True),  # RSV_IRAP_VCL22
        (23, True),  # RSV_IRAP_VCL23
        (24, False),
        (32, False),  # VPS
        (35, False),  # AUD
        (39, False),  # SEI
    ],
)
def test_is_irap(kind, irap):
    unit = bytes([kind << 1, 0x01, 0xAF])
    assert h265.nal_type(unit) == kind and h265.is_irap(kind) is irap


def test_x265_keyframes_are_irap_and_others_not():
    _, _, _, packets = encoded_h265(12, gop=10)
    kinds = [h265.nal_type(nal.split_annexb(bytes(p))[-1]) for p in packets]
    assert [h265.is_irap(k) for k in kinds] == [p.is_keyframe for p in packets]
    assert [p.is_keyframe for p in packets].count(True) == 2


def test_the_aud_is_an_access_unit_delimiter():
    assert h265.nal_type(h265.AUD) == h265.NAL_AUD and h265.AUD[1] == 0x01  # layer 0, temporal id 1
