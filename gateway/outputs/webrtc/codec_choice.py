"""Which video codecs a WebRTC peer offers or accepts, and so which stream it sends.

An H.264 stream goes out as H.264, the camera's own profile first. An H.265 stream goes
out as H265 (RFC 7798) to a client that takes it, and as its H.264 rendition to one that
does not (hub/rendition.py). A WHEP client says which it is in its offer (`offers_h265`);
the h5s player is offered both, H265 first, and its answer picks (the peer then sends
the matching stream, peer.py).
"""

from __future__ import annotations

import aiortc.sdp
from aiortc import RTCRtpCodecCapability, RTCRtpSender

from gateway.formats import h265
from gateway.hub.packet import StreamParams, VideoParams
from gateway.hub.rendition import for_client
from gateway.hub.stream import Stream
from gateway.outputs.webrtc.aiortc_compat.passthrough import H265, h265_codec

# Camera profile_idc -> profile-level-ids to offer/accept, best first.
PROFILE_ORDER = {
    100: ["64001f", "4d001f", "42e01f", "42001f"],
    77: ["4d001f", "64001f", "42e01f", "42001f"],
    66: ["42e01f", "42001f", "4d001f", "64001f"],
}


def h264_preferences(video: VideoParams | None) -> list[RTCRtpCodecCapability]:
    """H.264 codecs (packetization-mode 1) in the order to negotiate them for this stream
    (None: a rendition not made yet, whose profile is not known; Baseline first).

    The camera's own profile comes first. A browser that does not offer it (Debian's
    Chromium offers no plain High, 64001f) gets the nearest profile it does offer; its
    decoder takes the camera's real bitstream all the same, since profiles only add
    tools and the decoders browsers use implement them all.
    """
    profile_idc = video.sps[1] if video is not None else 66
    order = PROFILE_ORDER.get(profile_idc, PROFILE_ORDER[66])
    h264_codecs = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType == "video/H264" and c.parameters.get("packetization-mode") == "1"
    ]
    h264_codecs.sort(key=lambda c: order.index(str(c.parameters.get("profile-level-id", "42e01f"))))
    return h264_codecs


def h265_preference(video: VideoParams) -> RTCRtpCodecCapability:
    """The H265 codec of the camera's profile and tier (its level goes in per peer: level_id)."""
    info = h265.SpsInfo.parse(video.sps)
    return h265_codec(info.profile_idc, info.tier)


def level_id(video: VideoParams) -> int:
    """RFC 7798 `level-id`: general_level_idc, 30 times the level (93: level 3.1)."""
    return h265.SpsInfo.parse(video.sps).level_idc


def offers_h265(offer_sdp: str) -> bool:
    """Whether a client's offer lists an H265 video codec (it takes H.265); a malformed
    offer does not (it is refused when it is answered)."""
    try:
        description = aiortc.sdp.SessionDescription.parse(offer_sdp)
    except Exception:  # aiortc's parser meets malformed SDP with assert, IndexError...
        return False
    return any(
        codec.mimeType.lower() == H265.lower()
        for media in description.media
        if media.kind == "video"
        for codec in media.rtp.codecs
    )


def video_codecs(stream: Stream, params: StreamParams, takes_hevc: bool | None) -> list[RTCRtpCodecCapability]:
    """The video codecs a peer of `stream` offers or accepts, best first. `takes_hevc`:
    whether the client takes H.265, or None when its answer will say (the h5s player):
    then an H.265 stream is offered as H265 and, when it has a rendition, as H.264 too.
    NoRendition when the client does not take H.265 and there is no H.264 to send it."""
    video = params.video
    if video is None or not video.hevc:
        return h264_preferences(video)
    if takes_hevc is None:
        return [h265_preference(video)] + (h264_preferences(None) if stream.rendition is not None else [])
    if takes_hevc:
        return [h265_preference(video)]
    for_client(stream, params, takes_hevc=False)  # NoRendition when there is none
    return h264_preferences(None)
