"""An MPEG-TS writer for HLS v1 segments (ISO/IEC 13818-1), H.264 + AAC.

Written by hand rather than through PyAV's muxer because a segment is a plain function of
its packets here: PAT and PMT at the start of every segment, one PES per frame, PCR on the
video PID, and continuity counters that run on from one segment to the next (so a player
that reads the segments as one stream sees no continuity errors). The writer is stateful
only for those counters: segments must be written in order, once per stream.
"""

from __future__ import annotations

import struct

from gateway.formats import h264, h265, nal
from gateway.formats.aac import AAC_RATES
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams

PACKET_SIZE = 188
PAT_PID = 0x0000
PMT_PID = 0x1000
VIDEO_PID = 0x0100
AUDIO_PID = 0x0101
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_AAC_ADTS = 0x0F
TS_OFFSET = 126_000  # 1.4 s, as FFmpeg starts: PCR (below DTS) never goes negative
PCR_LEAD = 63_000  # PCR runs 0.7 s ahead of decode time: the decoder's buffering room
WRAP = 1 << 33


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """The PSI section CRC: polynomial 0x04C11DB7, not reflected, start 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _timestamp(prefix: int, value: int) -> bytes:
    """A 33-bit PES PTS/DTS in its 5-byte form with marker bits."""
    value %= WRAP
    return bytes(
        [
            (prefix << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        ]
    )


def _pcr(value: int) -> bytes:
    base = value % WRAP
    return struct.pack(">IH", base >> 1, ((base & 1) << 15) | 0x7E00)


def adts_header(audio: AudioParams, payload_size: int) -> bytes:
    """The 7-byte ADTS header TS needs in front of each raw AAC frame."""
    object_type = audio.config[0] >> 3 if audio.config else 2
    rate_index = AAC_RATES.index(audio.sample_rate) if audio.sample_rate in AAC_RATES else 8
    length = payload_size + 7
    return bytes(
        [
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            ((object_type - 1) & 3) << 6 | rate_index << 2 | (audio.channels >> 2) & 1,
            (audio.channels & 3) << 6 | (length >> 11) & 3,
            (length >> 3) & 0xFF,
            (length & 7) << 5 | 0x1F,
            0xFC,  # buffer fullness 0x7FF (VBR), one raw data block
        ]
    )


def _section(table_id: int, table_id_ext: int, body: bytes) -> bytes:
    """A PSI section (PAT/PMT) with its CRC, as the payload of one TS packet."""
    length = 5 + len(body) + 4
    header = struct.pack(">BHHBBB", table_id, 0xB000 | length, table_id_ext, 0xC1, 0, 0)
    section = header + body
    return b"\x00" + section + struct.pack(">I", crc32_mpeg2(section))  # pointer field first


class TsWriter:
    def __init__(self) -> None:
        self.counters: dict[int, int] = {}

    def segment(self, params: StreamParams, packets: list[MediaPacket]) -> bytes:
        """One self-contained TS segment: PAT, PMT, then every packet as one PES."""
        out = bytearray()
        out += self._psi(PAT_PID, _section(0x00, 1, struct.pack(">HH", 1, 0xE000 | PMT_PID)))
        out += self._psi(PMT_PID, self._pmt(params))
        for packet in packets:
            if packet.kind == "video" and params.video is not None:
                out += self._video(params, packet)
            elif packet.kind == "audio" and params.audio is not None:
                out += self._audio(params.audio, packet)
        return bytes(out)

    def _pmt(self, params: StreamParams) -> bytes:
        streams = b""
        if params.video is not None:
            kind = STREAM_TYPE_H265 if params.video.hevc else STREAM_TYPE_H264
            streams += struct.pack(">BHH", kind, 0xE000 | VIDEO_PID, 0xF000)
        if params.audio is not None:
            streams += struct.pack(">BHH", STREAM_TYPE_AAC_ADTS, 0xE000 | AUDIO_PID, 0xF000)
        body = struct.pack(">HH", 0xE000 | VIDEO_PID, 0xF000) + streams  # PCR PID, no program info
        return _section(0x02, 1, body)

    def _video(self, params: StreamParams, packet: MediaPacket) -> bytes:
        assert params.video is not None
        nals = [h265.AUD if params.video.hevc else h264.AUD]
        if packet.keyframe:
            nals += params.video.parameter_sets
        nals += nal.split_avcc(packet.data)
        dts, pts = packet.dts + TS_OFFSET, packet.pts + TS_OFFSET
        header = b"\x80\xc0\x0a" + _timestamp(3, pts) + _timestamp(1, dts)
        pes = b"\x00\x00\x01\xe0\x00\x00" + header + nal.to_annexb(nals)  # length 0: unbounded video
        return self._pes(VIDEO_PID, pes, pcr=dts - PCR_LEAD, random_access=packet.keyframe)

    def _audio(self, audio: AudioParams, packet: MediaPacket) -> bytes:
        pts = packet.pts * 90000 // audio.sample_rate + TS_OFFSET
        payload = adts_header(audio, len(packet.data)) + packet.data
        header = b"\x80\x80\x05" + _timestamp(2, pts)
        pes = b"\x00\x00\x01\xc0" + struct.pack(">H", len(header) + len(payload)) + header + payload
        return self._pes(AUDIO_PID, pes, pcr=None, random_access=False)

    def _next_counter(self, pid: int) -> int:
        counter = self.counters.get(pid, -1) + 1 & 0x0F
        self.counters[pid] = counter
        return counter

    def _psi(self, pid: int, payload: bytes) -> bytes:
        header = struct.pack(">BHB", 0x47, 0x4000 | pid, 0x10 | self._next_counter(pid))
        return header + payload + b"\xff" * (PACKET_SIZE - 4 - len(payload))

    def _pes(self, pid: int, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        """Cut a PES into TS packets; the last one is padded by adaptation-field stuffing."""
        out = bytearray()
        pos, first = 0, True
        while pos < len(pes):
            adaptation: bytes | None = None  # adaptation field body, after its length byte
            if first and (pcr is not None or random_access):
                flags = (0x40 if random_access else 0) | (0x10 if pcr is not None else 0)
                adaptation = bytes([flags]) + (_pcr(pcr) if pcr is not None else b"")
            room = PACKET_SIZE - 4 - (1 + len(adaptation) if adaptation is not None else 0)
            left = len(pes) - pos
            if left < room:
                stuffing = room - left
                if adaptation is None:
                    adaptation = b"" if stuffing == 1 else b"\x00" + b"\xff" * (stuffing - 2)
                else:
                    adaptation += b"\xff" * stuffing
                room = left
            control = 0x30 if adaptation is not None else 0x10
            out += struct.pack(">BHB", 0x47, (0x4000 if first else 0) | pid, control | self._next_counter(pid))
            if adaptation is not None:
                out.append(len(adaptation))
                out += adaptation
            out += pes[pos : pos + room]
            pos += room
            first = False
        return bytes(out)
