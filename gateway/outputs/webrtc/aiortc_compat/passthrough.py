"""What aiortc negotiates and "encodes" for the gateway: the camera's own H.264, as it is.

- aiortc's sender asks `get_encoder(codec)` for an encoder and calls `encoder.pack(item)`
  for anything a track returns that is not a decoded Frame (only on its own RTP path, the
  fallback when the lean sender is not used). It is handed PassthroughEncoder, whose
  pack() returns the ready payloads: no encoder is ever created.
- aiortc only advertises H.264 Constrained Baseline/Baseline (42001f/42e01f) and its
  negotiation compares profiles, so a camera in Main or High profile would be refused or
  mislabelled. Main (4d001f) and High (64001f) are added to its codec table, and each
  peer prefers the profile the camera really sends (peer.py `video_preferences`).
- aiortc offers the abs-send-time header extension for video; it is taken out (it only
  serves the browser's bandwidth estimate, which a gateway that never re-encodes cannot
  act on), so a frame's packets are the same for every peer but for the header fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiortc.codecs
import aiortc.rtcrtpparameters
from aiortc import RTCRtpCodecParameters

from gateway.outputs.webrtc.rtp_frame import RtpFrame

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ADDED_H264_PROFILES = ("4d001f", "64001f")  # Main, High (level 3.1, as aiortc's own)


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


def add_h264_profiles() -> None:
    """Main and High H.264 (with their RTX) in aiortc's codec table, after its own codecs."""
    video = aiortc.codecs.CODECS["video"]
    payload_type = max(c.payloadType or 0 for c in video) + 1
    feedback = aiortc.rtcrtpparameters.RTCRtcpFeedback
    for profile in ADDED_H264_PROFILES:
        video += [
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=payload_type,
                rtcpFeedback=[feedback(type="nack"), feedback(type="nack", parameter="pli")],
                parameters={"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": profile},
            ),
            RTCRtpCodecParameters(
                mimeType="video/rtx", clockRate=90000, payloadType=payload_type + 1, parameters={"apt": payload_type}
            ),
        ]
        payload_type += 2


def drop_abs_send_time() -> None:
    """Take abs-send-time out of the video header extensions aiortc offers."""
    video = aiortc.codecs.HEADER_EXTENSIONS["video"]
    video[:] = [extension for extension in video if extension.uri != ABS_SEND_TIME]
