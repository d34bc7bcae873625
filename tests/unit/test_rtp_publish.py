"""The receive side of RTSP publishing: RTP headers, the H.264/H.265/AAC depacketizers, the
announced SDP, and the per-track receivers (access units, timestamps across the 32-bit
wrap, loss, bounds). Round trips through the gateway's own packetizers, and RTP made by
FFmpeg (the ffmpeg command, `-f rtp` with its SDP) decoded again by FFmpeg's decoders."""

from __future__ import annotations

import random
import socket
import time
from itertools import pairwise

import av
import pytest

from gateway.formats import h264, nal, rtp_h264, rtp_h265
from gateway.formats.aac import aac_params, config_params
from gateway.formats.rtp_aac import AuHeaderLayout, access_units
from gateway.formats.rtp_h264 import Fragment
from gateway.formats.rtp_packet import parse_rtp
from gateway.hub.packet import MediaPacket
from gateway.ingest.publish import rtp_video
from gateway.ingest.publish.rtp_audio import RtpAacReceiver, RtpG711Receiver
from gateway.ingest.publish.rtp_clock import RtpClock, unwrapped_step
from gateway.ingest.publish.rtp_session import ReceivedTrack, RtpPublishSession
from gateway.ingest.publish.rtp_video import RtpVideoReceiver
from gateway.outputs.rtsp.announce import SdpRefused, announced_tracks
from tests.fixtures.hub import PublishedMedia
from tests.fixtures.media import encoded_h264, h264_clip, h265_clip

pytestmark = pytest.mark.unit


def rtp(payload: bytes, seq: int, ts: int, marker: bool = False, pt: int = 96) -> bytes:
    header = bytes([0x80, (0x80 if marker else 0) | pt]) + (seq % 65536).to_bytes(2, "big")
    return header + (ts % (1 << 32)).to_bytes(4, "big") + (0x1234).to_bytes(4, "big") + payload


def packets_of(payloads: list[bytes], seq: int, ts: int) -> list[bytes]:
    """One access unit's payloads as RTP packets, the marker on the last."""
    return [rtp(p, seq + i, ts, i == len(payloads) - 1) for i, p in enumerate(payloads)]


def receive(receiver, datagrams: list[bytes]) -> list[MediaPacket]:
    out = []
    for data in datagrams:
        out += receiver.rtp(parse_rtp(data))
    return out


# -- RTP and payload formats -------------------------------------------------------------


def test_rtp_header_with_csrcs_extension_and_padding():
    payload = b"payload"
    data = bytes([0xB2, 0xE0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1]) + bytes(8)  # P, X, 2 CSRCs; M, PT 96
    data += b"\xbe\xde\x00\x01" + bytes(4) + payload + b"\0\0\x03"
    packet = parse_rtp(data)
    assert (packet.marker, packet.payload_type, packet.sequence, packet.timestamp) == (True, 96, 7, 9)
    assert packet.payload == payload
    for bad in (b"", bytes([0x40]) + bytes(11), bytes([0x90]) + bytes(13), bytes([0xA0]) + bytes(10) + b"\x20"):
        with pytest.raises(ValueError):
            parse_rtp(bad)


def test_h264_payloads_read_back_what_the_packetizer_made():
    big = bytes([0x65]) + random.Random(1).randbytes(5000)  # an IDR slice over several FU-A packets
    sps, pps = b"\x67\x42\x00\x1e\xaa", b"\x68\xce\x3c\x80"
    payloads = rtp_h264.packetize([big, b"\x06\x05\x01\x02"], [sps, pps])
    assert payloads[0][0] & 0x1F == rtp_h264.NAL_STAP_A and rtp_h264.depacketize(payloads[0]) == [sps, pps]
    fragments = [rtp_h264.depacketize(p) for p in payloads[1:-1]]
    assert len(fragments) >= 5 and all(isinstance(f, Fragment) for f in fragments)
    assert fragments[0].start and fragments[-1].end and not fragments[1].start and not fragments[1].end
    assert fragments[0].header + b"".join(f.body for f in fragments) == big
    assert rtp_h264.depacketize(payloads[-1]) == [b"\x06\x05\x01\x02"]
    for bad in (b"", bytes([24, 0, 9, 0x67]), bytes([28, 0x85]), bytes([25, 0, 1, 2])):  # short STAP, FU, STAP-B
        with pytest.raises(ValueError):
            rtp_h264.depacketize(bad)


def test_h265_payloads_read_back_what_the_packetizer_made():
    big = bytes([19 << 1, 1]) + random.Random(2).randbytes(4000)  # IDR_W_RADL
    sets = [bytes([32 << 1, 1, 0xAA]), bytes([33 << 1, 1, 0xBB]), bytes([34 << 1, 1, 0xCC])]
    payloads = rtp_h265.packetize([big], sets)
    assert rtp_h265.depacketize(payloads[0]) == sets
    fragments = [rtp_h265.depacketize(p) for p in payloads[1:]]
    assert all(isinstance(f, Fragment) for f in fragments) and fragments[0].start and fragments[-1].end
    assert fragments[0].header + b"".join(f.body for f in fragments) == big
    for bad in (b"\x00", bytes([48 << 1, 1, 0, 9, 1]), bytes([50 << 1, 1, 0])):  # short, AP sizes, PACI
        with pytest.raises(ValueError):
            rtp_h265.depacketize(bad)


def test_aac_access_units_by_their_au_headers():
    layout = AuHeaderLayout.from_fmtp({"sizelength": "13", "indexlength": "3", "indexdeltalength": "3"})
    two = bytes([0, 32, 3 >> 5, (3 & 31) << 3, 0, 4 << 3]) + b"abc" + b"defg"
    assert access_units(two, layout) == [b"abc", b"defg"]
    for bad in (b"\x00", bytes([0, 16, 100 >> 5, (100 & 31) << 3]) + b"x", bytes([0, 200]) + bytes(4)):
        with pytest.raises(ValueError):
            access_units(bad, layout)
    with pytest.raises(ValueError):
        AuHeaderLayout.from_fmtp({"mode": "AAC-hbr"})  # no sizelength


def test_audio_specific_config_read_back():
    for rate, channels in ((44100, 2), (16000, 1), (48000, 2), (12345, 1)):
        params = config_params(aac_params(rate, channels).config)
        assert (params.sample_rate, params.channels) == (rate, channels)
    for bad in (b"\x12", bytes([0x17, 0x80]), bytes([0x12, 0x38])):  # short, short explicit rate, 7 channels
        with pytest.raises(ValueError):
            config_params(bad)


# -- timestamps ------------------------------------------------------------------------------


def test_rtp_timestamps_unwrap_and_scale():
    assert unwrapped_step(0xFFFFFF00, 0x100) == 0x200 and unwrapped_step(0x100, 0xFFFFFF00) == -0x200
    clock = RtpClock(48000, 48000, time.monotonic())
    first = clock.ticks(0xFFFFFC00)
    assert [clock.ticks(0xFFFFFC00 + 1024 * i) - first for i in range(1, 4)] == [1024, 2048, 3072]
    video = RtpClock(90000, 90000, time.monotonic() - 2)  # the publisher started 2 s ago
    assert 2 * 90000 <= video.ticks(123) < 2.5 * 90000  # the first packet is placed by the wall clock


# -- the video receiver ------------------------------------------------------------------------


def h264_datagrams(frames: int = 20, gop: int = 10, first_ts: int = 0) -> tuple[list[list[bytes]], list[MediaPacket]]:
    """libx264's frames as the packetizer sends them (parameter sets ahead of keyframes),
    one list of RTP packets per frame, and the hub packets they were made from."""
    params, clip = h264_clip(frames, gop=gop)
    out, seq = [], 100
    for i, packet in enumerate(clip):
        payloads = rtp_h264.packetize(nal.split_avcc(packet.data), params.parameter_sets if packet.keyframe else None)
        out.append(packets_of(payloads, seq, first_ts + i * 3600))
        seq += len(payloads)
    return out, clip


def test_h264_access_units_come_back_whole_with_their_params():
    frames, clip = h264_datagrams()
    receiver = RtpVideoReceiver("h264", [], 90000, time.monotonic())
    got = receive(receiver, [d for frame in frames for d in frame])
    assert [p.data for p in got] == [p.data for p in clip] and [p.keyframe for p in got] == [p.keyframe for p in clip]
    assert receiver.track.params == h264_clip(20, gop=10)[0]
    assert [b.dts - a.dts for a, b in pairwise(got)] == [3600] * 19 and all(p.pts == p.dts for p in got)


def test_access_units_end_at_a_timestamp_change_without_a_marker_and_across_the_wrap():
    frames, clip = h264_datagrams(first_ts=(1 << 32) - 5 * 3600)
    unmarked = [d[:1] + bytes([d[1] & 0x7F]) + d[2:] for frame in frames for d in frame]
    receiver = RtpVideoReceiver("h264", [], 90000, time.monotonic())
    got = receive(receiver, unmarked)
    assert [p.data for p in got] == [p.data for p in clip[:-1]]  # the last waits for the next timestamp
    assert [b.dts - a.dts for a, b in pairwise(got)] == [3600] * 18


def test_a_lost_packet_drops_frames_until_the_next_keyframe():
    frames, clip = h264_datagrams(frames=30, gop=10)
    datagrams = [d for i, frame in enumerate(frames) for d in (frame if i != 4 else frame[1:])]  # frame 4 loses one
    receiver = RtpVideoReceiver("h264", [], 90000, time.monotonic())
    got = receive(receiver, datagrams)
    assert [p.data for p in got] == [p.data for p in [*clip[:4], *clip[10:]]]
    assert receiver.dropped == 6


def test_late_and_repeated_packets_are_ignored():
    frames, clip = h264_datagrams(frames=5)
    datagrams = [d for frame in frames for d in frame]
    receiver = RtpVideoReceiver("h264", [], 90000, time.monotonic())
    got = receive(receiver, [*datagrams[:3], datagrams[1], datagrams[2], *datagrams[3:]])
    assert [p.data for p in got] == [p.data for p in clip]


def test_a_fragment_without_end_is_bounded(monkeypatch):
    monkeypatch.setattr(rtp_video, "MAX_ACCESS_UNIT", 50_000)
    sps, pps, _ = encoded_h264(1)
    receiver = RtpVideoReceiver("h264", [sps, pps], 90000, time.monotonic())
    endless = [rtp(bytes([0x7C, 0x85]) + bytes(1000), 0, 0)]
    endless += [rtp(bytes([0x7C, 0x05]) + bytes(1000), seq, 0) for seq in range(1, 200)]
    assert receive(receiver, endless) == []
    assert receiver.fragment is None and receiver.size == 0 and receiver.broken
    idr = [n for n in nal.split_annexb(bytes(encoded_h264(1)[2][0])) if h264.nal_type(n) == h264.NAL_IDR]
    got = receive(receiver, packets_of(rtp_h264.packetize(idr), 200, 3600))
    assert len(got) == 1 and got[0].keyframe  # the next keyframe goes through


def test_h265_access_units_come_back_whole():
    params, clip = h265_clip(12, gop=6)
    receiver = RtpVideoReceiver("h265", params.parameter_sets, 90000, time.monotonic())
    datagrams, seq = [], 0
    for i, packet in enumerate(clip):
        payloads = rtp_h265.packetize(nal.split_avcc(packet.data), params.parameter_sets if packet.keyframe else None)
        datagrams += packets_of(payloads, seq, i * 3600)
        seq += len(payloads)
    got = receive(receiver, datagrams)
    assert [p.data for p in got] == [p.data for p in clip] and receiver.track.params == params


# -- the announced SDP -----------------------------------------------------------------------


def test_an_sdp_as_ffmpeg_announces_it():
    sdp = (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat\r\n"
        "m=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\n"
        "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHpZUBQF/y4C1AQEBQAAA+kAAOpgjAA==,aM48gA==; "
        "profile-level-id=42C01E\r\na=control:streamid=0\r\n"
        "m=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/1\r\n"
        "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=120800\r\n"
        "a=control:streamid=1\r\n"
        "m=audio 0 RTP/AVP 8\r\na=control:streamid=2\r\n"
    )
    with pytest.raises(SdpRefused) as refused:
        announced_tracks(sdp.encode())
    assert refused.value.status == 415 and "at most one audio" in str(refused.value)
    video, audio = announced_tracks(sdp[: sdp.index("m=audio 0 RTP/AVP 8")].encode())
    assert (video.control, video.track.codec, video.track.payload_type) == ("streamid=0", "h264", 96)
    assert h264.nal_type(video.track.parameter_sets[0]) == h264.NAL_SPS and len(video.track.parameter_sets) == 2
    assert (audio.control, audio.track.codec, audio.track.clock_rate, audio.track.fmtp["config"]) == (
        "streamid=1", "aac", 44100, "120800")  # fmt: skip
    pcma = announced_tracks((sdp[: sdp.index("m=audio 0 RTP/AVP 97")] + "m=audio 0 RTP/AVP 8\r\n").encode())[1]
    assert (pcma.track.codec, pcma.track.clock_rate) == ("PCMA", 8000)


H264_ONLY = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"


@pytest.mark.parametrize(
    ("sdp", "status"),
    [
        ("v=0\r\nm=video 0 RTP/AVP 96\r\n", 400),  # no rtpmap for a dynamic type
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/x\r\n", 400),
        ("v=0\r\nm=video\r\n", 400),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=@@@\r\n", 400),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n", 415),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-max-don-diff=2\r\n", 415),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", 415),
        (H264_ONLY + "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/16000\r\n", 415),
        ("v=0\r\nm=audio 0 RTP/AVP 0\r\n", 415),
    ],
)
def test_sdps_refused(sdp, status):
    with pytest.raises(SdpRefused) as refused:
        announced_tracks(sdp.encode())
    assert refused.value.status == status, refused.value


# -- RTP made by FFmpeg ------------------------------------------------------------------------


def ffmpeg_rtp(source: str, codec: str, options: dict[str, str], count: int) -> tuple[bytes, list[bytes]]:
    """(the encoder's extradata, the datagrams) of FFmpeg's RTP muxer (in process, PyAV)
    sending `count` frames of a lavfi `source` encoded with `codec` to a local port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        output = av.open(f"rtp://127.0.0.1:{sock.getsockname()[1]}?pkt_size=1200", "w", format="rtp")
        with av.open(source, format="lavfi") as media:
            stream = output.add_stream(codec, rate=25 if codec != "aac" else 44100)
            stream.options = options
            decoded = media.decode(media.streams[0])
            if codec == "aac":
                stream.layout, stream.format = "mono", "fltp"
                resampler = av.AudioResampler("fltp", "mono", 44100, frame_size=1024)
                frames = [r for f, _ in zip(decoded, range(count), strict=False) for r in resampler.resample(f)]
            else:
                stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
                frames = [f for f, _ in zip(decoded, range(count), strict=False)]
            for i, frame in enumerate(frames):
                frame.pts = i * (1024 if codec == "aac" else 1)
                for packet in stream.encode(frame):
                    output.mux(packet)
            for packet in stream.encode(None):
                output.mux(packet)
            extradata = bytes(stream.codec_context.extradata or b"")
        output.close()
        sock.settimeout(0.3)
        datagrams = []
        try:
            while True:
                datagrams.append(sock.recv(65536))
        except TimeoutError:
            pass
    return extradata, [d for d in datagrams if d[1] & 0x7F >= 96]  # RTP, not its sender reports


def decode_video(codec: str, receiver: RtpVideoReceiver, got: list[MediaPacket]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create(codec, "r")
    assert receiver.track.params is not None
    annexb = nal.to_annexb(receiver.track.params.parameter_sets)
    frames = [f for p in got for f in decoder.decode(av.Packet(annexb + nal.to_annexb(nal.split_avcc(p.data))))]
    return frames + decoder.decode(None)


def test_ffmpeg_h264_rtp_decodes_after_the_receiver():
    options = {"preset": "ultrafast", "g": "10", "bf": "0"}
    _, datagrams = ffmpeg_rtp("testsrc2=size=320x240:rate=25", "libx264", options, 20)
    receiver = RtpVideoReceiver("h264", [], 90000, time.monotonic())  # parameter sets in band
    got = receive(receiver, datagrams)
    assert any(len(p.data) > 1200 for p in got)  # FU-A was in play
    frames = decode_video("h264", receiver, got)
    assert len(frames) == 20 and (frames[0].width, frames[0].height) == (320, 240)


def test_ffmpeg_h265_rtp_decodes_after_the_receiver():
    options = {"preset": "ultrafast", "x265-params": "keyint=6:bframes=0:log-level=error"}
    _, datagrams = ffmpeg_rtp("testsrc2=size=320x240:rate=25", "libx265", options, 12)
    receiver = RtpVideoReceiver("h265", [], 90000, time.monotonic())
    got = receive(receiver, datagrams)
    assert any(len(p.data) > 1200 for p in got)  # FU was in play
    frames = decode_video("hevc", receiver, got)
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (320, 240)


def test_ffmpeg_aac_rtp_decodes_after_the_receiver():
    config, datagrams = ffmpeg_rtp("sine=frequency=440:sample_rate=44100", "aac", {}, 50)
    fmtp = {"sizelength": "13", "indexlength": "3", "indexdeltalength": "3", "config": config.hex()}
    receiver = RtpAacReceiver(fmtp, 44100, time.monotonic())
    got = receive(receiver, datagrams)
    assert receiver.params.sample_rate == 44100 and receiver.params.channels == 1
    assert len(got) >= 40 and [b.pts - a.pts for a, b in pairwise(got)] == [1024] * (len(got) - 1)
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = receiver.params.config
    samples = sum(f.samples for p in got for f in decoder.decode(av.Packet(p.data)))
    assert samples >= 40 * 1024


def test_g711_becomes_aac_and_stays_beside_it():
    receiver = RtpG711Receiver("PCMA", time.monotonic())
    got = receive(receiver, [rtp(bytes([0xD5]) * 160, i, i * 160, pt=8) for i in range(50)])  # 1 s of A-law silence
    g711 = [p for p in got if p.kind == "g711"]
    aac = [p for p in got if p.kind == "audio"]
    assert len(g711) == 50 and [b.pts - a.pts for a, b in pairwise(g711)] == [160] * 49
    assert len(aac) >= 12 and receiver.params.sample_rate == 16000 and receiver.g711 == "PCMA"


def test_b_frames_get_decode_times_in_order_and_not_after_their_presentation():
    params, clip = h264_clip(40, gop=20, bframes=2)
    assert any(p.pts != p.dts for p in clip)  # there are B-frames
    receiver = RtpVideoReceiver("h264", params.parameter_sets, 90000, time.monotonic())
    datagrams, seq = [], 0
    for packet in clip:
        payloads = rtp_h264.packetize(nal.split_avcc(packet.data))
        datagrams += packets_of(payloads, seq, packet.pts)
        seq += len(payloads)
    got = receive(receiver, datagrams)
    assert [p.data for p in got] == [p.data for p in clip]
    assert all(b.dts > a.dts for a, b in pairwise(got)) and all(p.dts <= p.pts for p in got)
    assert 1 <= receiver.decode_times.reorder <= 3
    start = got[0].pts
    # once the reorder depth is learnt, the presentation times are those sent
    assert [p.pts - start for p in got[8:]] == [p.pts - clip[0].pts for p in clip[8:]]


def test_the_session_sets_params_at_the_first_keyframe_and_again_when_they_change():
    small, clip = h264_clip(10, gop=5)
    large, clip2 = h264_clip(10, width=320, height=240, gop=5)
    config = aac_params(16000, 1).config.hex()
    tracks = [
        ReceivedTrack("video", "h264", 96, 90000, {}, []),
        ReceivedTrack("audio", "aac", 97, 16000, {"sizelength": "13", "indexlength": "3", "config": config}, []),
    ]
    publisher = PublishedMedia()
    session = RtpPublishSession(publisher, tracks)  # type: ignore[arg-type]
    aac = bytes([0, 16, 4 >> 5, (4 & 31) << 3]) + b"\x21\x10\x05\x00"
    session.rtp(1, rtp(aac, 0, 0, True, pt=97))  # audio before any video: waits
    session.rtp(1, rtp(aac, 1, 0, True, pt=96))  # a payload type not announced for the track: ignored
    assert publisher.params == [] and publisher.packets == []
    seq = 0
    for i, (params, packet) in enumerate([(small, p) for p in clip] + [(large, p) for p in clip2]):
        payloads = rtp_h264.packetize(nal.split_avcc(packet.data), params.parameter_sets if packet.keyframe else None)
        for data in packets_of(payloads, seq, i * 3600):
            session.rtp(0, data)
        seq += len(payloads)
        session.rtp(1, rtp(aac, 1000 + i, i * 640, True, pt=97))
    assert [p.video for p in publisher.params] == [small, large]
    assert all(p.audio == config_params(bytes.fromhex(config)) for p in publisher.params)
    assert [p.data for p in publisher.packets if p.kind == "video"] == [p.data for p in clip + clip2]
    assert len([p for p in publisher.packets if p.kind == "audio"]) == 20
