"""The media pieces on their own: SPS parsing, the fMP4 writer, viewer queues."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from gateway.formats import h264, nal
from gateway.hub.stream import Stream
from gateway.formats.fmp4 import fragment, init_segment
from gateway.hub.packet import VideoParams, StreamParams
from gateway.ingest.packets import PacketReader
from tests.fixtures.hub import bare_stream
from gateway.ingest.sample import make_sample


def encode_h264(width: int, height: int, frames: int = 3, options: dict | None = None) -> av.container.InputContainer:
    """Encode a few frames with libx264 and return the extradata and packets."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"preset": "ultrafast", **(options or {})}
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    packets = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return bytes(ctx.extradata), packets


def parameter_sets(annexb: bytes) -> tuple[list[bytes], list[bytes]]:
    nals = nal.split_annexb(annexb)
    return [n for n in nals if h264.nal_type(n) == 7], [n for n in nals if h264.nal_type(n) == 8]


@pytest.mark.unit
@pytest.mark.parametrize("size", [(640, 360), (1920, 1080), (1280, 720), (352, 288)])
@pytest.mark.parametrize("profile", ["baseline", "high"])
def test_sps_dimensions_match_the_encoder(size, profile):
    sps_list, pps_list = parameter_sets(encode_h264(*size, options={"profile": profile})[0])
    info = h264.SpsInfo.parse(sps_list[0])
    assert (info.width, info.height) == size
    # Our avcC record carries the same parameter sets back.
    sps2, pps2, _ = h264.parse_avcc_config(h264.avcc_config(sps_list[0], pps_list[0]))
    assert (sps2, pps2) == ([sps_list[0]], [pps_list[0]])


@pytest.mark.unit
def test_annexb_and_avcc_round_trip():
    nals = [b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80", b"\x65" + bytes(range(200))]
    assert nal.split_annexb(nal.to_annexb(nals)) == nals
    assert nal.split_avcc(nal.to_avcc(nals)) == nals
    # 3-byte start codes too.
    assert nal.split_annexb(b"\x00\x00\x01" + nals[0] + b"\x00\x00\x01" + nals[1]) == nals[:2]


def test_fmp4_writer_output_decodes_in_ffmpeg(tmp_path: Path):
    """Remux a clip through the gateway's own path (normalise + fragment per frame)."""
    clip = tmp_path / "clip.mp4"
    make_sample(clip, seconds=2, width=320, height=240)
    out = bytearray()
    sequence = 0
    with av.open(str(clip)) as container:
        session = PacketReader(container, enable_audio=True)
        hub = bare_stream()
        hub.params = session.params  # the hub's timeline: starts at 0, never goes back
        out += init_segment(session.params)
        video_frames = audio_frames = 0
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                items, _ = session.video_packets(packet)
                video_frames += len(items)
            else:
                items = session.audio_packets(packet)
            for item in items:
                if not hub.timeline.connected and not (item.kind == "video" and item.keyframe):
                    continue  # as the demux thread does: a session starts at a keyframe
                if not hub.timeline.place(item, hub.params):
                    continue
                audio_frames += item.kind == "audio"
                sequence += 1
                out += fragment(sequence, item.kind, [item])
    path = tmp_path / "out.mp4"
    path.write_bytes(bytes(out))
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, timeout=60).stdout.split()
    assert sorted(probe) == sorted([f"h264,{video_frames}", f"aac,{audio_frames}"])


@pytest.mark.unit
def test_mime_names_only_present_codecs():
    sps, pps = parameter_sets(encode_h264(640, 360, options={"profile": "main", "preset": "fast"})[0])
    params = StreamParams(VideoParams.from_h264(sps[0], pps[0]), None)
    assert params.mime == 'video/mp4; codecs="avc1.4D401E"'  # Main, level 3.0, video only


