"""H5_PUSH sources: the publish slot between a protocol server's publisher and the hub."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.formats import nal
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import MediaPacket, StreamParams, VideoParams
from gateway.hub.streams import StreamManager
from gateway.ingest.publish.slot import PublishRefused, PublishSlot
from gateway.ingest.publish.video_track import VideoTrack
from tests.fixtures.hub import Collector
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit

# A 64x64 H.264 High profile SPS and PPS (x264's).
SPS = bytes.fromhex("6764000aacd9442684000003000400000300c83c489658")
PPS = bytes.fromhex("68ebe3cb22c0")


def push_stream() -> tuple[StreamManager, PublishSlot]:
    manager = StreamManager(SourceSettings(0.1), OutputRegistry())
    conf = SourceConf.from_json({"strToken": "pushed", "nType": "H5_PUSH"}, "pushed")
    slot = PublishSlot("pushed")
    manager.add(conf, slot)
    return manager, slot


PARAMS = StreamParams(VideoParams.from_h264(SPS, PPS), None)


def frame(dts: int, keyframe: bool) -> MediaPacket:
    data = b"\x00\x00\x00\x02\x65\x88" if keyframe else b"\x00\x00\x00\x02\x41\x9a"
    return MediaPacket("video", dts, dts, 3600, keyframe, data)


def test_a_push_source_waits_for_its_publisher_and_a_second_one_is_refused() -> None:
    async def main() -> None:
        manager, slot = push_stream()
        stream = manager.get("pushed")
        assert stream is not None and stream.running and stream.state == "connecting"
        assert slot.describe() == {"strPublisher": ""}
        publisher = slot.claim("rtmp from 127.0.0.1")
        with pytest.raises(PublishRefused) as refused:
            slot.claim("rtsp from 127.0.0.2")
        assert refused.value.status == 409 and "rtmp from 127.0.0.1" in str(refused.value)
        assert slot.describe() == {"strPublisher": "rtmp from 127.0.0.1"}
        publisher.set_params(PARAMS)
        publisher.packet(frame(0, True))
        assert stream.online and stream.params == PARAMS
        assert (await stream.wait_ready(1)) == PARAMS
        manager.stop_all()

    run_async(main)


def test_a_publisher_that_leaves_leaves_viewers_attached_and_the_next_one_resumes_them() -> None:
    async def main() -> None:
        manager, slot = push_stream()
        stream = manager.get("pushed")
        assert stream is not None
        viewer = Collector()
        stream.acquire()
        stream.attach(viewer)
        first = slot.claim("rtsp from 127.0.0.1")
        first.set_params(PARAMS)
        for i in range(3):
            first.packet(frame(i * 3600, i == 0))
        first.close()
        first.close()  # idempotent
        assert stream.state == "offline" and not stream.online and stream.running
        assert viewer in stream.subscribers
        first.packet(frame(4 * 3600, True))  # a late packet of the one who left is dropped
        assert len(viewer.packets) == 3
        second = slot.claim("rtsp from 127.0.0.1")
        second.set_params(PARAMS)
        second.packet(frame(1_000_000, True))  # its own clock: the timeline rebases it
        assert stream.online and len(viewer.packets) == 4
        assert viewer.packets[3].dts > viewer.packets[2].dts
        assert viewer.packets[3].dts - viewer.packets[2].dts < 90000
        stream.release()
        await asyncio.sleep(0.3)  # past the linger: a push source's stream keeps running
        assert stream.running
        manager.stop_all()

    run_async(main)


def test_removing_the_source_kicks_its_publisher() -> None:
    async def main() -> None:
        manager, slot = push_stream()
        publisher = slot.claim("rtmp from 127.0.0.1")
        kicked = []
        publisher.on_kick = lambda: kicked.append(True)
        publisher.set_params(PARAMS)
        manager.remove("pushed")
        assert kicked == [True] and publisher.closed and slot.publisher is None
        with pytest.raises(PublishRefused) as refused:
            slot.claim("rtmp from 127.0.0.1")
        assert refused.value.status == 503

    run_async(main)


def test_a_video_track_keeps_parameter_sets_apart_and_marks_keyframes() -> None:
    sps, pps = SPS, PPS
    track = VideoTrack("h264")
    assert track.params is None
    idr, aud, slice_ = b"\x65\x88\x84\x00", b"\x09\xf0", b"\x41\x9a\x02"
    packet, changed = track.access_unit([aud, sps, pps, idr], 9000, 12600)
    assert changed and track.params is not None and (track.params.width, track.params.height) == (64, 64)
    assert packet is not None and packet.keyframe and (packet.dts, packet.pts) == (9000, 12600)
    assert nal.split_avcc(packet.data) == [idr]
    packet, changed = track.access_unit([slice_], 12600, 12600)
    assert not changed and packet is not None and not packet.keyframe
    assert track.access_unit([sps, pps], 0, 0) == (None, False)  # the same sets again: nothing new
