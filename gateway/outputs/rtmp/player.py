"""One RTMP player of a stream's FLV feed (outputs/flv/feed.py): the feed's tags, made once
per stream, sent as RTMP audio and video messages on the player's message stream.

Everything else is the FLV client's (outputs/flv/client.py): the player's own timeline
from 0 at its first keyframe, silence before a late first audio frame, and skipping to the
next keyframe when the socket's buffer is past the budget. Players that started at the same
keyframe share each message's chunks (chunk_writer.py dates with type 0 headers only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from gateway.formats import flv
from gateway.hub.packet import StreamParams
from gateway.outputs.flv.client import FlvClient, Tag
from gateway.outputs.rtmp import amf0
from gateway.outputs.rtmp.chunk_writer import AUDIO_CSID, DATA_CSID, VIDEO_CSID, chunked
from gateway.outputs.rtmp.message import AUDIO, DATA_AMF0, VIDEO

MEDIA_STREAM_ID = 1  # createStream's answer: one message stream per connection

_CSIDS = {flv.AUDIO_TAG: AUDIO_CSID, flv.VIDEO_TAG: VIDEO_CSID}
_TYPES = {flv.AUDIO_TAG: AUDIO, flv.VIDEO_TAG: VIDEO}


def metadata(params: StreamParams) -> dict[str, float | str]:
    """onMetaData's fields for a stream (what FFmpeg and players show before the first frame)."""
    fields: dict[str, float | str] = {"server": "h5ss"}
    if params.video is not None:
        fields.update(width=params.video.width, height=params.video.height, videocodecid=7)
    if params.audio is not None:
        fields.update(audiocodecid=10, audiosamplerate=params.audio.sample_rate, stereo=params.audio.channels > 1)
    return fields


class RtmpPlayer(FlvClient):
    def __init__(self, transport: asyncio.WriteTransport, params: StreamParams):
        super().__init__(transport, "rtmp")
        self.metadata = metadata(params)

    def _start(self, video: bool, audio: bool, sequence_headers: list[Tag]) -> bytes:
        data = amf0.encode("onMetaData", amf0.EcmaArray(self.metadata))
        start = chunked(DATA_CSID, DATA_AMF0, 0, MEDIA_STREAM_ID, data)
        return start + self._framed((t.kind, 0, t.body) for t in sequence_headers)

    def _framed(self, tags: Iterable[tuple[int, int, bytes]]) -> bytes:
        return b"".join(chunked(_CSIDS[kind], _TYPES[kind], ms, MEDIA_STREAM_ID, body) for kind, ms, body in tags)
