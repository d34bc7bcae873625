"""The H.264 rendition: formats/video_transcode.py (H.265 -> H.264 with PyAV) and
hub/rendition_input.py (its thread, hand-off and lifetime), on a libx265 clip made here."""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from functools import cache

import av
import numpy as np
import pytest

from gateway.config.file import ConfigError, SourceConf
from gateway.config.settings import SourceSettings
from gateway.formats import h265, nal
from gateway.formats.video_transcode import H264Transcoder, RenditionShape
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import MediaPacket, StreamParams, VideoParams
from gateway.hub.rendition import NoRendition, for_client
from gateway.hub.rendition_input import Handoff, RenditionInput
from gateway.hub.stream import Stream
from gateway.hub.streams import StreamManager
from tests.fixtures.hub import Collector, RecordingInput, bare_stream, recorded_stream
from tests.fixtures.media import aac_clip, h264_clip
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit

FRAME = 3600  # 25 fps at 90 kHz
BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0), (0, 0, 255)]


def picture(i: int, width: int, height: int, noise: bool) -> np.ndarray:
    """Seven colour bars, a moving white block, and with `noise` some grain (a camera's)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    for bar, colour in enumerate(BARS):
        rgb[:, bar * width // 7 : (bar + 1) * width // 7] = colour
    x = (i * 8) % (width - 32)
    rgb[height - 40 : height - 8, x : x + 32] = 255
    if noise:
        grain = np.random.default_rng(i).integers(-60, 60, rgb.shape)
        rgb = np.clip(rgb.astype(int) + grain, 0, 255).astype(np.uint8)
    return rgb


@cache
def hevc_clip(
    frames: int, keys: tuple[int, ...], width: int = 640, height: int = 360, noise: bool = False
) -> tuple[VideoParams, tuple[MediaPacket, ...]]:
    """libx265 packets in the hub's form, keyframes (IDR) exactly at `keys`."""
    enc = av.CodecContext.create("libx265", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",
        "x265-params": "keyint=1000:scenecut=0:log-level=error",
    }
    enc.open()
    params, packets = None, []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(picture(i, width, height, noise), format="rgb24").reformat(format="yuv420p")
        frame.pts = i * FRAME
        frame.pict_type = av.video.frame.PictureType.I if i in keys else av.video.frame.PictureType.NONE
        for packet in enc.encode(frame):
            units, sets = [], {}
            for unit in nal.split_annexb(bytes(packet)):
                kind = h265.nal_type(unit)
                if kind in (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS):
                    sets[kind] = unit
                elif kind != h265.NAL_AUD:
                    units.append(unit)
            if sets:
                params = VideoParams.from_h265(sets[h265.NAL_VPS], sets[h265.NAL_SPS], sets[h265.NAL_PPS])
            packets.append(MediaPacket("video", packet.dts, packet.pts, FRAME, packet.is_keyframe, nal.to_avcc(units)))
    assert params is not None and [i for i, p in enumerate(packets) if p.keyframe] == list(keys)
    return params, tuple(packets)


def fresh(packets: tuple[MediaPacket, ...] | list[MediaPacket]) -> list[MediaPacket]:
    """Copies: a stream moves packets onto its timeline in place."""
    return [MediaPacket(p.kind, p.dts, p.pts, p.duration, p.keyframe, p.data) for p in packets]


def decode_h264(params: VideoParams, packets: list[MediaPacket]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for p in packets:
        data = nal.to_annexb(nal.split_avcc(p.data))
        frames += decoder.decode(av.Packet(nal.to_annexb(params.parameter_sets) + data if p.keyframe else data))
    return frames


def transcode_all(transcoder: H264Transcoder, packets: list[MediaPacket]) -> list[MediaPacket]:
    return [out for p in packets for out in transcoder.transcode(p)]


# -- the transcoder --------------------------------------------------------------------


def test_idr_exactly_where_the_source_has_keyframes_and_every_frame_comes_out_at_once():
    params, clip = hevc_clip(25, (0, 7, 19))
    transcoder = H264Transcoder(params, 0, 0)
    for p in fresh(clip):
        out = transcoder.transcode(p)
        assert [(o.pts, o.keyframe) for o in out] == [(p.pts, p.keyframe)]  # no frame held back
    assert transcoder.params is not None and transcoder.params.codec == "h264"
    assert transcoder.params.codec_string == transcoder.shape.codec_string == "avc1.42C01F"


def test_the_picture_survives_and_its_size_is_the_sources_or_the_configured_height():
    params, clip = hevc_clip(10, (0,))
    for height, size in ((0, (640, 360)), (180, (320, 180)), (720, (640, 360)), (241, (428, 240))):
        transcoder = H264Transcoder(params, height, 0)
        out = transcode_all(transcoder, fresh(clip))
        assert transcoder.params is not None
        assert (transcoder.params.width, transcoder.params.height) == size
        frames = decode_h264(transcoder.params, out)
        assert len(frames) == 10 and (frames[0].width, frames[0].height) == size
        rgb = frames[5].to_ndarray(format="rgb24")
        for bar, colour in enumerate(BARS):
            got = rgb[size[1] // 3, (2 * bar + 1) * size[0] // 14]
            assert all(abs(int(g) - w) <= 24 for g, w in zip(got, colour, strict=True)), (height, bar, got)


def test_the_bitrate_setting_is_roughly_honoured():
    params, clip = hevc_clip(75, (0, 25, 50), noise=True)  # 3 s
    rates = {}
    for kbps in (300, 1200):
        out = transcode_all(H264Transcoder(params, 0, kbps), fresh(clip))
        rates[kbps] = sum(len(p.data) for p in out) * 8 / 3 / 1000
        assert 0.6 * kbps < rates[kbps] < 1.35 * kbps, rates
    assert RenditionShape.of(1920, 1080, 0, 0).kbps == 4147  # 0: from the size
    assert RenditionShape.of(1920, 1080, 720, 0).kbps == 1843


def test_shape_and_codec_string_are_known_before_encoding():
    assert RenditionShape.of(1920, 1080, 0, 0) == RenditionShape(1920, 1080, 4147, "4.2")
    assert RenditionShape.of(1920, 1080, 720, 2000) == RenditionShape(1280, 720, 2000, "3.2")
    assert RenditionShape.of(2560, 1440, 0, 0).level == "5.2"
    assert RenditionShape.of(1920, 1080, 0, 0).codec_string == "avc1.42C02A"
    params, clip = hevc_clip(3, (0,))
    transcoder = H264Transcoder(params, 0, 0)
    transcode_all(transcoder, fresh(clip))
    assert transcoder.params is not None and transcoder.params.codec_string == transcoder.shape.codec_string


def test_a_packet_that_does_not_decode_skips_to_the_next_keyframe():
    params, clip = hevc_clip(20, (0, 10))
    packets = fresh(clip)
    packets[3] = MediaPacket(
        "video", packets[3].dts, packets[3].pts, FRAME, False, nal.to_avcc([b"\x02\x01" + b"\xff" * 8])
    )
    transcoder = H264Transcoder(params, 0, 0)
    out = transcode_all(transcoder, packets)
    assert out[0].keyframe and all(o.pts != packets[3].pts for o in out)
    assert any(o.keyframe and o.pts == packets[10].pts for o in out)


# -- the hand-off ------------------------------------------------------------------------


def test_a_full_handoff_drops_to_the_next_keyframe_and_keeps_the_newest_params():
    params, clip = hevc_clip(20, (0, 10))
    handoff = Handoff(size=4)
    stream_params = StreamParams(params, None)
    handoff.put(stream_params)
    for p in clip[:9]:
        handoff.put(p)
    assert handoff.skips == 1
    items = []
    for p in clip[9:12]:
        handoff.put(p)
    handoff.put(MediaPacket("audio", 0, 0, 0, False, b"a"))
    while len(items) < 4:
        items.append(handoff.get())
    assert items[:3] == [stream_params, clip[10], clip[11]] and items[3].kind == "audio"
    handoff.close()
    assert handoff.get() is None


# -- the rendition stream ----------------------------------------------------------------


def rendition_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rendition ")]


def interleaved(video: list[MediaPacket], audio: list[MediaPacket]) -> list[MediaPacket]:
    """Video and audio in arrival order (by time, video first)."""
    return sorted(
        video + audio, key=lambda p: (p.dts * 90000 // (16000 if p.kind == "audio" else 90000), p.kind != "video")
    )


def test_the_rendition_transcodes_video_passes_audio_and_stops_a_linger_after_its_last_client():
    params, clip = hevc_clip(25, (0, 10, 20))
    audio_params, audio = aac_clip(30)  # 16 kHz, 1024 samples each: ~1.9 s

    async def run() -> dict:
        source_input = RecordingInput()
        source = recorded_stream(source_input, linger=0.3)
        transcode = RenditionInput(source, 0, 0)
        rendition = Stream(source.conf, transcode, SourceSettings(0.2), OutputRegistry(), rendition_of=source)
        seen = Collector()
        rendition.attach(seen)
        rendition.acquire()
        assert source_input.running and source.viewers == 1
        source.on_session_start(StreamParams(params, audio_params))
        for p in interleaved(fresh(clip), fresh(audio)):
            source.on_packet(p)
        deadline = asyncio.get_running_loop().time() + 10
        while len([p for p in seen.packets if p.kind == "video"]) < 25:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        during = transcode.transcoding, len(rendition_threads()), rendition.online
        rendition.release()
        await asyncio.sleep(0.35)  # the rendition's linger: it stops, the source lingers on
        after_linger = transcode.transcoding, source.viewers, source_input.running
        await asyncio.wait_for(source_input.stopped.wait(), 2)
        await asyncio.sleep(0.05)
        return {
            "seen": seen,
            "during": during,
            "after_linger": after_linger,
            "threads": len(rendition_threads()),
            "transcodes": transcode.transcodes,
        }

    result = run_async(run, timeout=30)
    seen: Collector = result["seen"]
    assert result["during"] == (True, 1, True)
    assert result["after_linger"] == (False, 0, True)  # released; the source's own linger runs
    assert result["threads"] == 0 and result["transcodes"] == 1
    assert seen.params[0].video is not None and seen.params[0].video.codec == "h264"
    assert seen.params[0].audio == audio_params
    video = [p for p in seen.packets if p.kind == "video"]
    assert [i for i, p in enumerate(video) if p.keyframe] == [0, 10, 20]
    assert [p.data for p in seen.packets if p.kind == "audio"] == [p.data for p in audio]  # unchanged, all
    assert len(decode_h264(seen.params[0].video, video)) == 25


def test_new_source_params_restart_the_decoder_and_encoder_as_a_new_session():
    big, big_clip = hevc_clip(10, (0,))
    small, small_clip = hevc_clip(10, (0, 5), width=320, height=180)

    async def run() -> tuple[Collector, int, int]:
        source = recorded_stream(RecordingInput())
        transcode = RenditionInput(source, 0, 0)
        rendition = Stream(source.conf, transcode, SourceSettings(0.2), OutputRegistry(), rendition_of=source)
        seen = Collector()
        rendition.attach(seen)
        rendition.acquire()
        for params, clip in ((big, big_clip), (small, small_clip)):  # the camera reconnects with another size
            source.on_session_start(StreamParams(params, None))
            for p in fresh(clip):
                source.on_packet(p)
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen.packets) < 20:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        connects = rendition.connects
        rendition.stop()
        return seen, transcode.transcodes, connects

    seen, transcodes, connects = run_async(run)
    assert transcodes == 1 and connects == 2  # one thread; a session per source session
    sizes = [(p.video.width, p.video.height) for p in seen.params if p.video is not None]
    assert sizes == [(640, 360), (320, 180)]
    assert len(decode_h264(seen.params[1].video, seen.packets[10:])) == 10
    assert [i for i, p in enumerate(seen.packets) if p.keyframe] == [0, 10, 15]


def test_an_h264_source_needs_no_transcode_its_packets_pass_as_they_are():
    video_params, clip = h264_clip(20, gop=10)

    async def run() -> tuple[Collector, int]:
        source = recorded_stream(RecordingInput())
        transcode = RenditionInput(source, 0, 0)
        rendition = Stream(source.conf, transcode, SourceSettings(0.2), OutputRegistry(), rendition_of=source)
        seen = Collector()
        rendition.attach(seen)
        rendition.acquire()
        source.on_session_start(StreamParams(video_params, None))
        for p in fresh(clip):
            source.on_packet(p)
        rendition.release()
        return seen, transcode.transcodes

    seen, transcodes = run_async(run)
    assert transcodes == 0 and not rendition_threads()
    assert seen.params[0].video == video_params
    assert [p.data for p in seen.packets] == [p.data for p in clip]


def test_for_client_and_the_streams_that_get_a_rendition():
    hevc, _ = hevc_clip(3, (0,))
    h264, _ = h264_clip(3)
    manager = StreamManager(SourceSettings(1.0), OutputRegistry())
    on = manager.add(SourceConf.from_json({"strToken": "on", "nConnectType": "H5_ALWAYS"}, "s"), RecordingInput())
    off = manager.add(SourceConf.from_json({"strToken": "off", "strH264Rendition": "off"}, "s"), RecordingInput())
    assert on.rendition is not None and not on.rendition.always_on and on.rendition.label == "on/h264"
    assert off.rendition is None
    with_sub = manager.add(SourceConf.from_json({"strToken": "t"}, "s"), RecordingInput(), RecordingInput())
    sub = manager.sub("t")
    assert with_sub.rendition is not None and sub is not None and sub.rendition is not None
    assert sub.rendition.label == "t/sub/h264" and sub.rendition.rendition_of is sub
    assert for_client(on, StreamParams(hevc, None), takes_hevc=True) is on
    assert for_client(on, StreamParams(h264, None), takes_hevc=False) is on
    assert for_client(on, StreamParams(hevc, None), takes_hevc=False) is on.rendition
    with pytest.raises(NoRendition, match="rendition is off"):
        for_client(off, StreamParams(hevc, None), takes_hevc=False)
    assert bare_stream().rendition is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("strH264Rendition", "on", "strH264Rendition: 'on' is not one of auto, off"),
        ("nH264RenditionKbps", -1, "nH264RenditionKbps: -1 is not 0"),
        ("nH264RenditionKbps", "2000", "nH264RenditionKbps: expected a whole number"),
        ("nH264RenditionHeight", 50, "nH264RenditionHeight: 50 is not 0"),
        ("nH264RenditionHeight", 5000, "nH264RenditionHeight: 5000 is not 0"),
    ],
)
def test_bad_rendition_settings_name_the_key(field, value, message):
    with pytest.raises(ConfigError, match=f"source.src\\[0\\].{message}"):
        SourceConf.from_json({"strToken": "t", field: value}, "source.src[0]")
    conf = SourceConf.from_json({"strToken": "t"}, "s")
    assert (conf.h264_rendition, conf.rendition_kbps, conf.rendition_height) == (True, 0, 0)
