"""The cloud link's wire format (issue 20): what an edge and its cloud say on their one WebSocket.

Control messages are JSON text frames with a "type" (hello, challenge, proof, welcome,
refused; sources, subscribe, unsubscribe, params, end; request, response). Media are
binary frames: a fixed header `>IBBqqI` (channel, kind, flags, dts, pts, duration) and
the packet's data, so a packet crosses without base64 or JSON.

Authentication is challenge-response over the cloud user's stored PBKDF2 of the MD5
(gateway/auth.py): both sides can compute the key K, and only an HMAC made with it
crosses the link, never a password or anything that would log in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from typing import Any

from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams

PATH = "/api/v1/h5scloudlink"

MEDIA_HEADER = struct.Struct(">IBBqqI")
KINDS = ("video", "audio", "g711")  # the header's kind byte is the index
KEYFRAME = 0x01

PROOF_LABEL = "h5ss-cloud-link"
ITERATIONS_RANGE = (1_000, 2_000_000)  # what an edge accepts from a cloud's challenge
MAX_CONTROL = 1 << 20  # bytes: a control message longer than this is refused


class LinkFormatError(ValueError):
    """A message that does not follow this format; the link is closed."""


# -- control messages ------------------------------------------------------------------


def encode(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def decode(text: str) -> dict[str, Any]:
    """A control message; LinkFormatError unless it is a JSON object with a string type."""
    if len(text) > MAX_CONTROL:
        raise LinkFormatError("control message too long")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as e:
        raise LinkFormatError(f"control message is not JSON: {e.msg}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise LinkFormatError("control message without a type")
    return message


def field(message: dict[str, Any], name: str, kind: type) -> Any:
    """`message[name]`, which must be of `kind` (an int is not a bool here)."""
    value = message.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LinkFormatError(f"{message.get('type')} message: {name!r} must be a {kind.__name__}")
    return value


# -- media frames -----------------------------------------------------------------------


def pack_media(channel: int, packet: MediaPacket) -> bytes:
    flags = KEYFRAME if packet.keyframe else 0
    header = MEDIA_HEADER.pack(
        channel, KINDS.index(packet.kind), flags, packet.dts, packet.pts, max(0, packet.duration)
    )
    return header + packet.data


def unpack_media(frame: bytes) -> tuple[int, MediaPacket]:
    """(channel, packet) of a binary frame; LinkFormatError if it is not one."""
    if len(frame) < MEDIA_HEADER.size:
        raise LinkFormatError(f"media frame of {len(frame)} bytes is shorter than its header")
    channel, kind, flags, dts, pts, duration = MEDIA_HEADER.unpack_from(frame)
    if kind >= len(KINDS):
        raise LinkFormatError(f"media frame of unknown kind {kind}")
    data = bytes(frame[MEDIA_HEADER.size :])
    return channel, MediaPacket(KINDS[kind], dts, pts, duration, bool(flags & KEYFRAME), data)


# -- stream parameters ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(message: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(field(message, name, str), validate=True)
    except binascii.Error:
        raise LinkFormatError(f"params: {name!r} is not base64") from None


def params_to_json(params: StreamParams) -> dict[str, Any]:
    out: dict[str, Any] = {"video": None, "audio": None, "g711": params.g711}
    if params.video is not None:
        v = params.video
        out["video"] = {
            "codec": v.codec,
            "vps": _b64(v.vps),
            "sps": _b64(v.sps),
            "pps": _b64(v.pps),
            "width": v.width,
            "height": v.height,
        }
    if params.audio is not None:
        a = params.audio
        out["audio"] = {
            "codec": a.codec,
            "sampleRate": a.sample_rate,
            "channels": a.channels,
            "config": _b64(a.config),
        }
    return out


def params_from_json(message: dict[str, Any]) -> StreamParams:
    """StreamParams from params_to_json's form; LinkFormatError when a field is missing or wrong."""
    video = audio = None
    raw_video, raw_audio, g711 = message.get("video"), message.get("audio"), message.get("g711")
    if raw_video is not None:
        if not isinstance(raw_video, dict) or raw_video.get("codec") not in ("h264", "h265"):
            raise LinkFormatError("params: video must have codec h264 or h265")
        video = VideoParams(
            raw_video["codec"],
            _unb64(raw_video, "sps"),
            _unb64(raw_video, "pps"),
            field(raw_video, "width", int),
            field(raw_video, "height", int),
            _unb64(raw_video, "vps"),
        )
    if raw_audio is not None:
        if not isinstance(raw_audio, dict) or raw_audio.get("codec") != "aac":
            raise LinkFormatError("params: audio must have codec aac")
        audio = AudioParams(
            "aac", field(raw_audio, "sampleRate", int), field(raw_audio, "channels", int), _unb64(raw_audio, "config")
        )
    if g711 not in (None, "PCMA", "PCMU"):
        raise LinkFormatError("params: g711 must be PCMA, PCMU or null")
    return StreamParams(video, audio, g711)


# -- authentication ---------------------------------------------------------------------


def link_key(md5_hex: str, salt: str, iterations: int) -> bytes:
    """K: the PBKDF2-SHA256 of the user's MD5 hex that the cloud stores (auth.hash_md5)."""
    return hashlib.pbkdf2_hmac("sha256", md5_hex.lower().encode(), bytes.fromhex(salt), iterations)


def proof(key: bytes, cloud_nonce: str, edge_nonce: str, server_token: str) -> str:
    """The edge's answer to a challenge: both nonces and its server token under K."""
    text = f"{PROOF_LABEL}|{cloud_nonce}|{edge_nonce}|{server_token}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
