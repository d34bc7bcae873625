"""H.264 bitstream helpers: NAL splitting, parameter sets, avcC and codec strings.

Cameras send Annex-B (start codes, RTSP/TS); files and RTMP send AVCC (length
prefixes). The hub keeps one form, AVCC with 4-byte lengths and without parameter sets,
which is what an MP4 sample is; parameter sets travel in VideoParams instead.
"""

from __future__ import annotations

import struct

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

HIGH_PROFILES = (100, 110, 122, 144, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer (3- or 4-byte start codes)."""
    nals = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        # A 4-byte start code leaves one zero byte at the end of the previous NAL.
        nal = data[begin:end]
        if nxt >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
        start = nxt
    return nals


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """NAL units of a length-prefixed (AVCC) buffer."""
    nals = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            break
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")


def to_avcc(nals: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def to_annexb(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


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


def _unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


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
        r = _Bits(_unescape(sps[1:]))
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
