"""Which stream a WebRTC peer sends, by the codec negotiated (codec_choice.py, peer.py):
real aiortc offers and answers in process, hub Streams driven by hand, a stand-in for
the H.264 rendition (Stream.rendition) that another module makes."""

from __future__ import annotations

import re
from fractions import Fraction
from functools import cache

import av
import pytest

from gateway.formats import h265, nal
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import StreamParams, VideoParams
from gateway.hub.rendition import NoRendition, for_client
from gateway.hub.stream import Stream
from tests.fixtures.hub import RecordingInput, recorded_stream
from tests.fixtures.media import h264_clip
from tests.fixtures.net import run_async
from tests.fixtures.rtp_h265 import aiortc_client_codecs

pytestmark = pytest.mark.unit


@cache
def hevc_video() -> VideoParams:
    """libx265's parameter sets (Main profile) for a 160x120 picture."""
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 120, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    units = {h265.nal_type(n): n for n in nal.split_annexb(bytes(ctx.extradata))}
    return VideoParams.from_h265(units[h265.NAL_VPS], units[h265.NAL_SPS], units[h265.NAL_PPS])


def streams(hevc: bool, rendition: bool) -> tuple[Stream, Stream | None]:
    """An online stream (H.265 or H.264), with a stand-in for its H.264 rendition or none."""
    from gateway.outputs.webrtc.feed import RtcFeed

    registry = OutputRegistry()
    registry.register(RtcFeed, RtcFeed)
    stream = recorded_stream(RecordingInput(), registry=registry)
    stream.on_session_start(StreamParams(hevc_video() if hevc else h264_clip(1)[0], None))
    stream.rendition = recorded_stream(RecordingInput(), registry=registry) if rendition else None
    return stream, stream.rendition


def video_section(sdp: str) -> str:
    return sdp[sdp.index("m=video") :]


async def whep(stream: Stream, client_h265: bool) -> tuple[str, dict[str, int]]:
    """A WHEP exchange as peers.py and whep.py make it: (answer, each stream's holders
    while the peer lives); the peer is closed at the end."""
    from aiortc import RTCPeerConnection

    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.codec_choice import offers_h265, video_codecs
    from gateway.outputs.webrtc.peer import RtcPeer

    install(["127.0.0.1"])
    client = RTCPeerConnection()
    with aiortc_client_codecs(client_h265) as prefer:
        prefer(client.addTransceiver("video", direction="recvonly"))
        await client.setLocalDescription(await client.createOffer())
        offer = client.localDescription.sdp
        assert offers_h265(offer) == client_h265
        params = stream.params
        assert params is not None
        peer = RtcPeer("p", stream, (), enable_audio=False)
        await peer.setup(params, video_codecs(stream, params, offers_h265(offer)))
        peer.serve(for_client(stream, params, offers_h265(offer)))
        answer = await peer.answer(offer)
        held = holders(stream)
        await peer.close()
        await client.close()
    return answer, held


async def h5s(stream: Stream, client_h265: bool) -> tuple[str, str, dict[str, int]]:
    """The h5s exchange (the peer offers, the client answers): (offer, answer, holders)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.codec_choice import video_codecs
    from gateway.outputs.webrtc.peer import RtcPeer

    install(["127.0.0.1"])
    params = stream.params
    assert params is not None
    peer = RtcPeer("p", stream, (), enable_audio=False)
    await peer.setup(params, video_codecs(stream, params, None))
    offer = await peer.offer()
    assert peer.feed is None and holders(stream)["stream"] == 1  # nothing chosen before the answer
    client = RTCPeerConnection()
    with aiortc_client_codecs(client_h265) as prefer:
        prefer(client.addTransceiver("video", direction="recvonly"))  # the offer's section lands in it
        await client.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await client.setLocalDescription(await client.createAnswer())
        answer = client.localDescription.sdp
        await peer.accept_answer(answer)
        held = holders(stream)
        await peer.close()
        await client.close()
    return offer, answer, held


def holders(stream: Stream) -> dict[str, int]:
    counts = {"stream": stream.viewers}
    if stream.rendition is not None:
        counts["rendition"] = stream.rendition.viewers
    return counts


def test_whep_offer_with_h265_gets_the_camera_stream_with_its_profile_and_level():
    stream, rendition = streams(hevc=True, rendition=True)
    answer, held = run_async(lambda: whep(stream, client_h265=True))
    video = video_section(answer)
    assert "H265/90000" in video and "H264" not in video
    info = h265.SpsInfo.parse(hevc_video().sps)
    fmtp = re.search(r"a=fmtp:117 (.*)", video).group(1)  # the client's payload type
    assert f"profile-id={info.profile_idc}" in fmtp and f"level-id={info.level_idc}" in fmtp
    assert "tx-mode=SRST" in fmtp
    # The client takes H.265: the rendition is never asked for (no transcode).
    assert held == {"stream": 1, "rendition": 0}
    assert holders(stream) == {"stream": 0, "rendition": 0}


def test_whep_offer_without_h265_gets_the_rendition_as_h264():
    stream, rendition = streams(hevc=True, rendition=True)
    answer, held = run_async(lambda: whep(stream, client_h265=False))
    video = video_section(answer)
    assert "H264/90000" in video and "H265" not in video
    assert held == {"stream": 0, "rendition": 1}  # the peer holds exactly what it sends
    assert holders(stream) == {"stream": 0, "rendition": 0}


def test_whep_offer_without_h265_and_no_rendition_is_refused_with_the_reason():
    from gateway.outputs.webrtc.codec_choice import video_codecs

    stream, _ = streams(hevc=True, rendition=False)
    assert stream.params is not None
    with pytest.raises(NoRendition, match="H.265.*rendition is off"):
        run_async(lambda: _async(video_codecs, stream, stream.params, False))


async def _async(function, *args):
    return function(*args)


def test_h5s_offers_h265_then_h264_and_the_answer_picks_the_stream():
    stream, rendition = streams(hevc=True, rendition=True)
    offer, answer, held = run_async(lambda: h5s(stream, client_h265=True))
    video = video_section(offer)
    assert video.index("H265/90000") < video.index("H264/90000")
    assert f"level-id={h265.SpsInfo.parse(hevc_video().sps).level_idc}" in video
    assert "H265" in video_section(answer)
    assert held == {"stream": 1, "rendition": 0}

    offer, answer, held = run_async(lambda: h5s(stream, client_h265=False))
    assert "H265" not in video_section(answer) and "H264" in video_section(answer)
    assert held == {"stream": 0, "rendition": 1}
    assert holders(stream) == {"stream": 0, "rendition": 0}


def test_h5s_offers_only_h265_for_an_h265_stream_without_rendition():
    stream, _ = streams(hevc=True, rendition=False)
    offer, answer, held = run_async(lambda: h5s(stream, client_h265=True))
    assert "H265/90000" in video_section(offer) and "H264" not in video_section(offer)
    assert held == {"stream": 1}


def test_an_h264_stream_is_offered_and_sent_as_h264_whatever_the_client_takes():
    stream, _ = streams(hevc=False, rendition=False)
    offer, answer, held = run_async(lambda: h5s(stream, client_h265=True))
    assert "H265" not in video_section(offer) and "H264" in video_section(answer)
    assert held == {"stream": 1}
    answer, held = run_async(lambda: whep(stream, client_h265=True))
    assert "H265" not in video_section(answer) and "H264/90000" in video_section(answer)
    assert held == {"stream": 1}


def test_h265_codecs_match_only_within_one_profile_and_tier():
    """aiortc's own match looks at name and clock rate only; RFC 7798 defaults: Main, Main tier."""
    from aiortc import RTCRtpCodecParameters

    from gateway.outputs.webrtc.aiortc_compat.passthrough import h265_compatible

    def h265(**parameters: str) -> RTCRtpCodecParameters:
        return RTCRtpCodecParameters(mimeType="video/H265", clockRate=90000, payloadType=100, parameters=parameters)

    compatible = h265_compatible(lambda a, b: a.mimeType.lower() == b.mimeType.lower() and a.clockRate == b.clockRate)
    main = h265(**{"profile-id": "1", "tier-flag": "0", "tx-mode": "SRST"})
    assert compatible(main, h265(**{"profile-id": "1", "level-id": "180"}))
    assert compatible(main, h265())  # absent: Main, Main tier
    assert not compatible(main, h265(**{"profile-id": "2"}))
    assert not compatible(main, h265(**{"profile-id": "1", "tier-flag": "1"}))
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    assert compatible(vp8, vp8) and not compatible(main, vp8)
