"""The SDP a DESCRIBE answers with (RFC 4566), one per stream's parameters.

Track 0 is the video: H.264 (RFC 6184: packetization-mode 1, profile-level-id,
sprop-parameter-sets) or H.265 (RFC 7798: sprop-vps/sps/pps). Track 1, when the stream has
audio, is the camera's own G.711 as it sent it (RFC 3551: PCMA payload type 8, PCMU 0), or
else its AAC as mpeg4-generic (RFC 3640, AAC-hbr: one AU header of 13-bit size, 3-bit index).
"""

from __future__ import annotations

from base64 import b64encode
from dataclasses import dataclass

from gateway.hub.packet import StreamParams

VIDEO_PT = 96
AAC_PT = 97
G711_PT = {"PCMA": 8, "PCMU": 0}
G711_RATE = 8000


@dataclass(frozen=True, slots=True)
class Track:
    """One m= section: what its RTP packets carry."""

    index: int  # trackID: 0 video, 1 audio
    kind: str  # "video", "g711" or "audio" (AAC): the hub packet kind it carries
    payload_type: int
    clock_rate: int


def tracks_of(params: StreamParams) -> list[Track]:
    """The tracks a reader of a stream with `params` can set up."""
    tracks = [Track(0, "video", VIDEO_PT, 90000)] if params.video is not None else []
    if params.g711 in G711_PT:
        tracks.append(Track(1, "g711", G711_PT[params.g711], G711_RATE))
    elif params.audio is not None:
        tracks.append(Track(1, "audio", AAC_PT, params.audio.sample_rate))
    return tracks


def b64(data: bytes) -> str:
    return b64encode(data).decode()


def media_lines(params: StreamParams, track: Track) -> list[str]:
    pt = track.payload_type
    if track.kind == "video":
        video = params.video
        assert video is not None
        if video.hevc:
            fmtp = f"sprop-vps={b64(video.vps)};sprop-sps={b64(video.sps)};sprop-pps={b64(video.pps)}"
            rtpmap = f"H265/{track.clock_rate}"
        else:
            fmtp = (
                f"packetization-mode=1;profile-level-id={video.sps[1:4].hex().upper()};"
                f"sprop-parameter-sets={b64(video.sps)},{b64(video.pps)}"
            )
            rtpmap = f"H264/{track.clock_rate}"
        return [f"m=video 0 RTP/AVP {pt}", f"a=rtpmap:{pt} {rtpmap}", f"a=fmtp:{pt} {fmtp}"]
    if track.kind == "g711":
        return [f"m=audio 0 RTP/AVP {pt}", f"a=rtpmap:{pt} {params.g711}/{track.clock_rate}"]
    audio = params.audio
    assert audio is not None
    return [
        f"m=audio 0 RTP/AVP {pt}",
        f"a=rtpmap:{pt} mpeg4-generic/{audio.sample_rate}/{audio.channels}",
        f"a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
        f"indexdeltalength=3;config={audio.config.hex()}",
    ]


def describe(params: StreamParams, name: str, session_id: int) -> str:
    """The SDP of a stream; its tracks' controls are `trackID=N` under the Content-Base."""
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 0.0.0.0",
        f"s={name}",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
    ]
    for track in tracks_of(params):
        lines += media_lines(params, track)
        lines.append(f"a=control:trackID={track.index}")
    return "\r\n".join(lines) + "\r\n"
