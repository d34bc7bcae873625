"""H.265 (HEVC) bitstream helpers: NAL types, the SPS fields the gateway needs, hvcC and
the RFC 6381 codec string (ISO/IEC 14496-15 §8.3 and Annex E).

NAL framing is shared with H.264 (nal.py). Parameter sets (VPS, SPS, PPS) travel in
VideoParams, as H.264's do, and are put back in front of every IRAP picture (IDR, CRA,
BLA) by the outputs that carry them in band (TS, RTP).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.formats import nal

NAL_IRAP_FIRST = 16  # BLA_W_LP
NAL_IRAP_LAST = 23  # up to the reserved IRAP types
NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35

# An access unit delimiter for TS (pic_type 2: I, P and B slices may follow).
AUD = bytes([NAL_AUD << 1, 0x01, 0x50])


def nal_type(unit: bytes) -> int:
    return (unit[0] >> 1) & 0x3F


def is_irap(kind: int) -> bool:
    """A random access point: a decoder can start here with the parameter sets."""
    return NAL_IRAP_FIRST <= kind <= NAL_IRAP_LAST


@dataclass(frozen=True, slots=True)
class SpsInfo:
    """What hvcC, the codec string and the picture size need from an SPS."""

    profile_space: int
    tier: int
    profile_idc: int
    compatibility: int  # the 32 general_profile_compatibility_flags, flag 0 the top bit
    constraints: bytes  # the 48 bits of general constraint flags, as 6 bytes
    level_idc: int
    sub_layers: int  # sps_max_sub_layers_minus1 + 1
    temporal_id_nested: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int

    @classmethod
    def parse(cls, sps: bytes) -> SpsInfo:
        """ValueError for an SPS too short to hold what is read."""
        try:
            return cls._parse(nal.BitReader(nal.unescape(sps[2:])))
        except IndexError:
            raise ValueError("truncated H.265 SPS") from None

    @classmethod
    def _parse(cls, r: nal.BitReader) -> SpsInfo:
        r.bits(4)  # sps_video_parameter_set_id
        max_sub_layers_minus1 = r.bits(3)
        temporal_id_nested = r.bit()
        profile_space, tier, profile_idc = r.bits(2), r.bit(), r.bits(5)
        compatibility = r.bits(32)
        constraints = r.bits(48).to_bytes(6, "big")
        level_idc = r.bits(8)
        present = [(r.bit(), r.bit()) for _ in range(max_sub_layers_minus1)]
        if max_sub_layers_minus1:
            r.bits(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
        for profile_present, level_present in present:
            r.bits(88 if profile_present else 0)
            r.bits(8 if level_present else 0)
        r.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            r.bit()  # separate_colour_plane_flag
        width, height = r.ue(), r.ue()
        if r.bit():  # conformance_window_flag
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
            sub_width = 2 if chroma_format_idc in (1, 2) else 1
            sub_height = 2 if chroma_format_idc == 1 else 1
            width -= sub_width * (left + right)
            height -= sub_height * (top + bottom)
        bit_depth_luma, bit_depth_chroma = r.ue() + 8, r.ue() + 8
        return cls(
            profile_space,
            tier,
            profile_idc,
            compatibility,
            constraints,
            level_idc,
            max_sub_layers_minus1 + 1,
            temporal_id_nested,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width,
            height,
        )


def codec_string(sps: bytes) -> str:
    """RFC 6381 codec string, e.g. hvc1.1.6.L120.90 (ISO/IEC 14496-15 Annex E)."""
    info = SpsInfo.parse(sps)
    space = "" if info.profile_space == 0 else "ABC"[info.profile_space - 1]
    reversed_flags = int(f"{info.compatibility:032b}"[::-1], 2)
    parts = [f"hvc1.{space}{info.profile_idc}", f"{reversed_flags:X}", f"{'HL'[info.tier == 0]}{info.level_idc}"]
    constraints = info.constraints.rstrip(b"\x00")
    parts += [f"{byte:X}" for byte in constraints]
    return ".".join(parts)


def hvcc_config(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """The hvcC box payload (HEVCDecoderConfigurationRecord), NAL lengths of 4 bytes."""
    info = SpsInfo.parse(sps)
    record = bytes([1, info.profile_space << 6 | info.tier << 5 | info.profile_idc])
    record += struct.pack(">I", info.compatibility) + info.constraints + bytes([info.level_idc])
    record += struct.pack(">H", 0xF000)  # min_spatial_segmentation_idc 0 (not signalled)
    record += bytes(
        [
            0xFC,  # parallelismType 0 (unknown)
            0xFC | info.chroma_format_idc,
            0xF8 | info.bit_depth_luma - 8,
            0xF8 | info.bit_depth_chroma - 8,
        ]
    )
    record += struct.pack(">H", 0)  # avgFrameRate: not given
    record += bytes([info.sub_layers << 3 | info.temporal_id_nested << 2 | 3])  # lengthSizeMinusOne 3
    arrays = [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)]
    record += bytes([len(arrays)])
    for kind, unit in arrays:
        record += bytes([0x80 | kind]) + struct.pack(">HH", 1, len(unit)) + unit  # array_completeness 1
    return record


def parse_hvcc_config(extradata: bytes) -> tuple[list[bytes], int]:
    """The parameter-set NAL units of an hvcC record, and its NAL length size."""
    if len(extradata) < 23 or extradata[0] != 1:
        raise ValueError("not an hvcC record")
    length_size = (extradata[21] & 0x03) + 1
    units: list[bytes] = []
    pos = 23
    for _ in range(extradata[22]):
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            units.append(extradata[pos + 2 : pos + 2 + size])
            pos += 2 + size
    if pos > len(extradata):
        raise ValueError("truncated hvcC record")
    return units, length_size
