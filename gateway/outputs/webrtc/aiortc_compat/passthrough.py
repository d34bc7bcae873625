"""What aiortc negotiates and "encodes" for the gateway: the camera's own H.264, as it is.

- aiortc's sender asks `get_encoder(codec)` for an encoder and calls `encoder.pack(item)`
  for anything a track returns that is not a decoded Frame (only on its own RTP path, the
  fallback when the lean sender is not used). It is handed PassthroughEncoder, whose
  pack() returns the ready payloads: no encoder is ever created.
- aiortc only advertises H.264 Constrained Baseline/Baseline (42001f/42e01f) and its
  negotiation compares profiles, so a camera in Main or High profile would be refused or
  mislabelled. Main (4d001f) and High (64001f) are added to its codec table, and each
  peer prefers the profile the camera really sends (codec_choice.py `h264_preferences`).
- aiortc knows no H.265. An H265 codec (RFC 7798 §7.1: `profile-id`, `tier-flag`,
  `tx-mode=SRST`; NACK, PLI, RTX) is added to its table for each camera profile met
  (`h265_codec`). aiortc takes any two codecs of the same name and clock rate as a
  match and answers with its own parameters; for H265 a match must also be of the same
  profile and tier (`is_codec_compatible`), as libwebrtc requires. The `level-id` is the
  camera's, set per peer in its offer or answer (`with_h265_level`).
- aiortc offers the abs-send-time header extension for video; it is taken out (it only
  serves the browser's bandwidth estimate, which a gateway that never re-encodes cannot
  act on), so a frame's packets are the same for every peer but for the header fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiortc.codecs
import aiortc.rtcrtpparameters
import aiortc.sdp
from aiortc import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtcrtpparameters import ParametersDict

from gateway.outputs.webrtc.rtp_frame import RtpFrame

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ADDED_H264_PROFILES = ("4d001f", "64001f")  # Main, High (level 3.1, as aiortc's own)
H265 = "video/H265"
LAST_DYNAMIC_PAYLOAD_TYPE = 127


@dataclass(frozen=True, slots=True)
class PeerItem:
    """What a peer's track gives aiortc's sender: a shared frame, this peer's RTP timestamp."""

    frame: RtpFrame
    timestamp: int


class PassthroughEncoder:
    """Stands in for aiortc's encoders: the payloads are already made."""

    def pack(self, item: PeerItem) -> tuple[list[bytes], int]:
        return item.frame.payloads, item.timestamp

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("h5ss never re-encodes video or audio for WebRTC")


def passthrough_encoder(codec: RTCRtpCodecParameters) -> PassthroughEncoder:
    """aiortc's `get_encoder`, for every codec."""
    return PassthroughEncoder()


def add_video_codec(mime_type: str, parameters: ParametersDict) -> None:
    """A video codec (NACK, PLI) and its RTX in aiortc's codec table, after the codecs there."""
    video = aiortc.codecs.CODECS["video"]
    payload_type = max(c.payloadType or 0 for c in video) + 1
    if payload_type + 1 > LAST_DYNAMIC_PAYLOAD_TYPE:
        raise RuntimeError(f"no RTP payload type left for {mime_type} {parameters}")
    feedback = aiortc.rtcrtpparameters.RTCRtcpFeedback
    video += [
        RTCRtpCodecParameters(
            mimeType=mime_type,
            clockRate=90000,
            payloadType=payload_type,
            rtcpFeedback=[feedback(type="nack"), feedback(type="nack", parameter="pli")],
            parameters=dict(parameters),
        ),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=payload_type + 1, parameters={"apt": payload_type}
        ),
    ]


def add_h264_profiles() -> None:
    """Main and High H.264 (with their RTX) in aiortc's codec table, after its own codecs."""
    for profile in ADDED_H264_PROFILES:
        add_video_codec(
            "video/H264", {"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": profile}
        )


def h265_codec(profile_id: int, tier: int) -> RTCRtpCodecCapability:
    """The H265 codec of this profile and tier, added to aiortc's table the first time it is
    asked for (a camera's profile is most often Main, 1, or Main 10, 2; tier Main, 0)."""
    parameters: ParametersDict = {"profile-id": str(profile_id), "tier-flag": str(tier), "tx-mode": "SRST"}
    if not any(c.mimeType == H265 and c.parameters == parameters for c in aiortc.codecs.CODECS["video"]):
        add_video_codec(H265, parameters)
    return RTCRtpCodecCapability(mimeType=H265, clockRate=90000, parameters=parameters)


def h265_compatible(
    aiortc_compatible: Callable[[RTCRtpCodecParameters, RTCRtpCodecParameters], bool],
) -> Callable[[RTCRtpCodecParameters, RTCRtpCodecParameters], bool]:
    """aiortc's codec match, made to hold H265 codecs of another profile or tier apart
    (absent, they are Main, 1, and Main tier, 0: RFC 7798 §7.1)."""

    def is_codec_compatible(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
        if not aiortc_compatible(a, b):
            return False
        if a.mimeType.lower() != H265.lower():
            return True
        return all(
            str(a.parameters.get(name, default)) == str(b.parameters.get(name, default))
            for name, default in (("profile-id", 1), ("tier-flag", 0))
        )

    return is_codec_compatible


def with_h265_level(sdp: str, level_id: int) -> str:
    """An offer or answer of aiortc's whose H265 codecs say `level-id`: the camera's level."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    for media in description.media:
        for codec in media.rtp.codecs:
            if codec.mimeType.lower() == H265.lower():
                codec.parameters = {**codec.parameters, "level-id": level_id}
    return str(description)


def drop_abs_send_time() -> None:
    """Take abs-send-time out of the video header extensions aiortc offers."""
    video = aiortc.codecs.HEADER_EXTENSIONS["video"]
    video[:] = [extension for extension in video if extension.uri != ABS_SEND_TIME]
