"""The SDP of an ANNOUNCE (RFC 4566, RFC 2326 §10.3): the tracks a publisher will RECORD.

Video: H.264 (RFC 6184, sprop-parameter-sets) or H.265 (RFC 7798, sprop-vps/sps/pps, no
DONL); audio: AAC as mpeg4-generic (RFC 3640, config= and the AU header sizes) or G.711
(PCMA/PCMU at 8 kHz, RFC 3551). One video track is required, one audio track is optional.
SdpRefused carries the RTSP status: 400 for an SDP we cannot read, 415 for codecs we do
not take.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from dataclasses import dataclass, field

from gateway.formats.aac import config_params
from gateway.formats.rtp_aac import AuHeaderLayout
from gateway.ingest.publish.rtp_session import ReceivedTrack

STATIC_TYPES = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1)}  # RFC 3551 payload types we take
VIDEO_CODECS = {"H264": "h264", "H265": "h265"}
AUDIO_CODECS = {"MPEG4-GENERIC": "aac", "PCMA": "PCMA", "PCMU": "PCMU"}


class SdpRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class AnnouncedTrack:
    control: str  # its a=control: what its SETUP's URL ends with
    track: ReceivedTrack


def _parameter_sets(codec: str, fmtp: dict[str, str]) -> list[bytes]:
    """The video parameter sets the fmtp carries (may be none: then they come in band)."""
    if codec == "h264":
        encoded = [s for s in fmtp.get("sprop-parameter-sets", "").split(",") if s]
    else:
        encoded = [fmtp[k] for k in ("sprop-vps", "sprop-sps", "sprop-pps") if fmtp.get(k)]
    try:
        return [b64decode(s, validate=True) for s in encoded]
    except binascii.Error:
        raise SdpRefused(400, "sprop parameter sets are not base64") from None


@dataclass(slots=True)
class _Section:
    media: str
    formats: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    control: str = ""


def _sections(text: str) -> list[_Section]:
    sections: list[_Section] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpRefused(400, f"not an SDP line: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4 or not all(p.isdigit() for p in parts[3:]):
                raise SdpRefused(400, f"bad m= line: {value[:60]!r}")
            sections.append(_Section(parts[0], [int(p) for p in parts[3:]]))
        elif kind == "a" and sections:
            name, _, attribute = value.partition(":")
            section = sections[-1]
            if name == "control":
                section.control = attribute.strip()
            elif name in ("rtpmap", "fmtp"):
                pt, _, rest = attribute.partition(" ")
                if pt.isdigit():
                    (section.rtpmap if name == "rtpmap" else section.fmtp)[int(pt)] = rest.strip()
    return sections


def _fmtp(text: str) -> dict[str, str]:
    params = {}
    for item in text.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip()
    return params


def _track(section: _Section) -> AnnouncedTrack:
    pt = section.formats[0]
    if pt in section.rtpmap:
        name, _, rest = section.rtpmap[pt].partition("/")
        rate, _, channels = rest.partition("/")
        if not rate.isdigit() or int(rate) == 0 or (channels and not channels.isdigit()):
            raise SdpRefused(400, f"bad rtpmap: {section.rtpmap[pt][:60]!r}")
        encoding, clock_rate, count = name.upper(), int(rate), int(channels or 1)
    elif pt in STATIC_TYPES:
        encoding, clock_rate, count = STATIC_TYPES[pt]
    else:
        raise SdpRefused(400, f"payload type {pt} of the {section.media} track has no rtpmap")
    codecs = VIDEO_CODECS if section.media == "video" else AUDIO_CODECS
    if encoding not in codecs:
        raise SdpRefused(
            415, f"{section.media} codec {encoding} not supported (video: H.264, H.265; audio: AAC, PCMA, PCMU)"
        )
    codec = codecs[encoding]
    fmtp = _fmtp(section.fmtp.get(pt, ""))
    if codec in ("PCMA", "PCMU") and (clock_rate != 8000 or count != 1):
        raise SdpRefused(415, f"{encoding} must be 8000 Hz mono")
    if codec == "aac":
        try:
            AuHeaderLayout.from_fmtp(fmtp)
            config_params(bytes.fromhex(fmtp.get("config", "")))
        except ValueError as e:
            raise SdpRefused(415, f"AAC: {e} (the fmtp's config= and sizelength= are needed)") from None
    if codec == "h265" and fmtp.get("sprop-max-don-diff", "0") != "0":
        raise SdpRefused(415, "H.265 with DONL (sprop-max-don-diff > 0) not supported")
    if codec == "h264" and fmtp.get("packetization-mode", "0") not in ("0", "1"):
        raise SdpRefused(415, "H.264 interleaved mode (packetization-mode 2) not supported")
    sets = _parameter_sets(codec, fmtp) if section.media == "video" else []
    return AnnouncedTrack(section.control, ReceivedTrack(section.media, codec, pt, clock_rate, fmtp, sets))


def announced_tracks(body: bytes) -> list[AnnouncedTrack]:
    """The tracks of an ANNOUNCE's SDP: one video, at most one audio; SdpRefused why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpRefused(400, "the SDP is not UTF-8") from None
    if not text.lstrip().startswith("v=0"):
        raise SdpRefused(400, "no SDP (v=0) in the ANNOUNCE body")
    sections = [s for s in _sections(text) if s.media in ("video", "audio")]
    tracks = [_track(s) for s in sections]
    videos = [t for t in tracks if t.track.media == "video"]
    audios = [t for t in tracks if t.track.media == "audio"]
    if len(videos) != 1:
        raise SdpRefused(415, f"one video track (H.264 or H.265) is needed, the SDP has {len(videos)}")
    if len(audios) > 1:
        raise SdpRefused(415, f"at most one audio track is taken, the SDP has {len(audios)}")
    if len(tracks) > 1 and len({t.control for t in tracks}) != len(tracks):
        raise SdpRefused(400, "the tracks have no distinct a=control")
    return tracks
