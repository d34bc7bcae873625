"""A fragmented-MP4 writer that cuts one fragment per frame.

PyAV's mp4 muxer can fragment per frame only one frame late and through its interleaving
queue; MSE wants every frame as soon as it exists, so we write the boxes ourselves
(ISO/IEC 14496-12 and -14, 14496-15 for avcC and hvcC). The output is the same bytes for every
viewer: init segment (ftyp+moov) once, then moof+mdat per packet.
"""

from __future__ import annotations

import struct

from gateway.formats import h264, h265
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams

VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2

SAMPLE_FLAGS_SYNC = 0x02000000  # depends on no other sample
SAMPLE_FLAGS_NON_SYNC = 0x01010000  # depends on others, not a sync sample

MOVIE_TIMESCALE = 1000  # mvhd/mehd durations are in milliseconds

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, payload: bytes) -> bytes:
    # Four-byte size form, as most muxers write it; players accept it everywhere.
    size = len(payload)
    encoded = bytes([0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F, size & 0x7F])
    return bytes([tag]) + encoded + payload


def _video_entry(video: VideoParams) -> bytes:
    """avc1 + avcC, or hvc1 + hvcC (parameter sets only in the sample entry, as hvc1 says)."""
    if video.hevc:
        kind, config = b"hvc1", box(b"hvcC", h265.hvcc_config(video.vps, video.sps, video.pps))
    else:
        kind, config = b"avc1", box(b"avcC", h264.avcc_config(video.sps, video.pps))
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HHIIIH", video.width, video.height, 0x00480000, 0x00480000, 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),
        config,
    )


def _mp4a_entry(audio: AudioParams) -> bytes:
    decoder_config = _descriptor(
        0x04,
        bytes([0x40, 0x15]) + bytes(3) + struct.pack(">II", 0, 0) + _descriptor(0x05, audio.config),
    )
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK_ID, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", audio.channels, 16, 0, 0),
        struct.pack(">I", audio.sample_rate << 16 if audio.sample_rate < 65536 else 0),
        full_box(b"esds", 0, 0, es),
    )


def _trak(track_id: int, params: VideoParams | AudioParams) -> bytes:
    is_video = isinstance(params, VideoParams)
    width, height = (params.width, params.height) if isinstance(params, VideoParams) else (0, 0)
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if is_video else 0x0100, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, params.timescale, 0, 0x55C4, 0))  # 'und'
    handler = b"vide" if is_video else b"soun"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), b"h5ss\x00")
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if is_video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    entry = _video_entry(params) if isinstance(params, VideoParams) else _mp4a_entry(params)
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))


def track_id(kind: str) -> int:
    return VIDEO_TRACK_ID if kind == "video" else AUDIO_TRACK_ID


def init_segment(params: StreamParams, with_duration: bool = False) -> bytes:
    """ftyp + moov for the stream's tracks (video track 1, audio track 2).

    `with_duration` adds an mvex/mehd, so a file writer can patch the movie's duration into
    fixed-size fields (mvhd and mehd, see MOVIE_TIMESCALE) when it is finalised.
    """
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso6", b"avc1", b"mp41")
    tracks: list[tuple[int, VideoParams | AudioParams]] = []
    if params.video is not None:
        tracks.append((VIDEO_TRACK_ID, params.video))
    if params.audio is not None:
        tracks.append((AUDIO_TRACK_ID, params.audio))
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),
        struct.pack(">IH", 0x00010000, 0x0100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", AUDIO_TRACK_ID + 1),
    )
    trex = [full_box(b"trex", 0, 0, struct.pack(">IIIII", tid, 1, 0, 0, 0)) for tid, _ in tracks]
    mehd = [full_box(b"mehd", 0, 0, struct.pack(">I", 0))] if with_duration else []
    moov = box(b"moov", mvhd, *(_trak(tid, p) for tid, p in tracks), box(b"mvex", *mehd, *trex))
    return ftyp + moov


def fragment(sequence: int, kind: str, packets: list[MediaPacket]) -> bytes:
    """moof + mdat holding the given packets (one track, in decode order)."""
    return fragment_tracks(sequence, [(kind, packets)])


def fragment_tracks(sequence: int, tracks: list[tuple[str, list[MediaPacket]]]) -> bytes:
    """moof + mdat with one traf per non-empty track (an HLS part holds video and audio)."""
    tracks = [(kind, packets) for kind, packets in tracks if packets]
    # trun: data-offset, duration, size, flags, composition offset (signed, version 1).
    trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    # tfhd 16 + tfdt 20 + trun 20 bytes, plus 16 per sample, in each 8-byte traf.
    moof_size = 8 + len(mfhd) + sum(8 + 16 + 20 + 20 + 16 * len(packets) for _, packets in tracks)
    trafs, data_offset = [], moof_size + 8
    for kind, packets in tracks:
        samples = b"".join(
            struct.pack(
                ">IIIi",
                p.duration,
                len(p.data),
                SAMPLE_FLAGS_SYNC if p.keyframe or kind == "audio" else SAMPLE_FLAGS_NON_SYNC,
                p.pts - p.dts,
            )
            for p in packets
        )
        tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id(kind)))  # default-base-is-moof
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", packets[0].dts))
        trun = full_box(b"trun", 1, trun_flags, struct.pack(">Ii", len(packets), data_offset), samples)
        trafs.append(box(b"traf", tfhd, tfdt, trun))
        data_offset += sum(len(p.data) for p in packets)
    moof = box(b"moof", mfhd, *trafs)
    payload = b"".join(p.data for _, packets in tracks for p in packets)
    return moof + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload


# Where a one-track fragment's 64-bit baseMediaDecodeTime sits: moof header (8), mfhd (16),
# traf header (8), tfhd (16), tfdt header and version/flags (12).
DECODE_TIME_OFFSET = 8 + 16 + 8 + 16 + 12


def split_at_decode_time(one_track_fragment: bytes) -> tuple[bytes, bytes]:
    """The bytes before and after a one-track fragment's decode time, so that a copy with
    another decode time is `head + struct.pack(">Q", dts) + tail`."""
    return one_track_fragment[:DECODE_TIME_OFFSET], one_track_fragment[DECODE_TIME_OFFSET + 8 :]


def duration_field_offsets(init: bytes) -> list[int]:
    """Byte offsets, in an init segment made `with_duration`, of the two 32-bit movie
    durations (mvhd, mehd) that a finished file gets written in place."""
    mvhd = init.index(b"mvhd") + 4 + 4 + 4 + 4 + 4  # type, version/flags, ctime, mtime, timescale
    mehd = init.index(b"mehd") + 4 + 4
    return [mvhd, mehd]
