"""H.264 bitstream helpers: NAL types, parameter sets, avcC and codec strings.

NAL framing (Annex-B, length prefixes) is shared with H.265 in nal.py; parameter sets
travel in VideoParams, not in the hub's packets.
"""

from __future__ import annotations

import struct

from gateway.formats import nal

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

AUD = b"\x09\xf0"  # an access unit delimiter for TS: any slice type

HIGH_PROFILES = (100, 110, 122, 144, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def parse_avcc_config(extradata: bytes) -> tuple[list[bytes], list[bytes], int]:
    """SPS list, PPS list and NAL length size from an avcC record."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC record")
    length_size = (extradata[4] & 0x03) + 1
    pos = 5
    sps_list: list[bytes] = []
    pps_list: list[bytes] = []
    for target, count_mask in ((sps_list, 0x1F), (pps_list, 0xFF)):
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            pos += 2
            target.append(extradata[pos : pos + size])
            pos += size
    return sps_list, pps_list, length_size


def avcc_config(sps: bytes, pps: bytes) -> bytes:
    """The avcC box payload (AVCDecoderConfigurationRecord) for one SPS and one PPS."""
    record = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
    record += struct.pack(">H", len(sps)) + sps + b"\x01" + struct.pack(">H", len(pps)) + pps
    if sps[1] in HIGH_PROFILES:
        info = SpsInfo.parse(sps)
        record += bytes(
            [0xFC | info.chroma_format_idc, 0xF8 | info.bit_depth_luma - 8, 0xF8 | info.bit_depth_chroma - 8, 0]
        )
    return record


def codec_string(sps: bytes) -> str:
    """RFC 6381 codec string, e.g. avc1.64001F."""
    return f"avc1.{sps[1]:02X}{sps[2]:02X}{sps[3]:02X}"


class SpsInfo:
    """The few SPS fields the gateway needs: picture size and chroma/bit depth."""

    def __init__(self, width: int, height: int, chroma_format_idc: int, bit_depth_luma: int, bit_depth_chroma: int):
        self.width = width
        self.height = height
        self.chroma_format_idc = chroma_format_idc
        self.bit_depth_luma = bit_depth_luma
        self.bit_depth_chroma = bit_depth_chroma

    @classmethod
    def parse(cls, sps: bytes) -> SpsInfo:
        r = nal.BitReader(nal.unescape(sps[1:]))
        profile_idc = r.bits(8)
        r.bits(16)  # constraint flags, level_idc
        r.ue()  # seq_parameter_set_id
        chroma_format_idc, depth_luma, depth_chroma = 1, 8, 8
        if profile_idc in HIGH_PROFILES:
            chroma_format_idc = r.ue()
            if chroma_format_idc == 3:
                r.bit()
            depth_luma = r.ue() + 8
            depth_chroma = r.ue() + 8
            r.bit()  # qpprime_y_zero_transform_bypass_flag
            if r.bit():  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format_idc != 3 else 12):
                    if r.bit():
                        last, nxt = 8, 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + r.se() + 256) % 256
                            last = nxt or last
        r.ue()  # log2_max_frame_num_minus4
        poc_type = r.ue()
        if poc_type == 0:
            r.ue()
        elif poc_type == 1:
            r.bit()
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue()  # max_num_ref_frames
        r.bit()  # gaps_in_frame_num_allowed
        width_mbs = r.ue() + 1
        height_units = r.ue() + 1
        frame_mbs_only = r.bit()
        if not frame_mbs_only:
            r.bit()
        r.bit()  # direct_8x8_inference
        crop = (0, 0, 0, 0)
        if r.bit():
            crop = (r.ue(), r.ue(), r.ue(), r.ue())
        sub_w = 2 if chroma_format_idc in (1, 2) else 1
        sub_h = 2 if chroma_format_idc == 1 else 1
        crop_x = sub_w if chroma_format_idc else 1
        crop_y = (sub_h if chroma_format_idc else 1) * (2 - frame_mbs_only)
        width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
        height = height_units * 16 * (2 - frame_mbs_only) - crop_y * (crop[2] + crop[3])
        return cls(width, height, chroma_format_idc, depth_luma, depth_chroma)
