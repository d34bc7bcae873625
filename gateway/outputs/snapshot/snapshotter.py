"""JPEG of a stream's latest keyframe: the only place live video is decoded.

The keyframe is already in the hub's GOP cache, so a snapshot costs one decode and one
JPEG encode in a worker thread, and repeated requests for the same keyframe are served
from a one-entry cache.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import av

from gateway.formats import nal
from gateway.hub.packet import MediaPacket, VideoParams
from gateway.hub.stream import Stream, StreamNotReady


def encode_keyframe_jpeg(params: VideoParams, keyframe: MediaPacket, quality: int = 5) -> bytes:
    """Decode one H.264 or H.265 keyframe and encode it as JPEG (qscale `quality`, 2 best..31)."""
    decoder = av.CodecContext.create("hevc" if params.hevc else "h264", "r")
    nals = [*params.parameter_sets, *nal.split_avcc(keyframe.data)]
    frames = decoder.decode(av.Packet(nal.to_annexb(nals)))
    frames += decoder.decode(None)
    if not frames:
        raise ValueError("keyframe did not decode")
    frame = frames[0].reformat(format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    encoder.open()
    packets = encoder.encode(frame) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


class Snapshotter:
    """Per-stream JPEG maker with a cache keyed by the keyframe it was made from."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self._key: int | None = None
        self._jpeg = b""
        self._lock = asyncio.Lock()

    def close(self) -> None:
        pass  # nothing waits on it for long: a jpeg() call ends with its own timeout

    def describe(self) -> dict[str, Any]:
        return {}

    async def jpeg(self, timeout: float) -> bytes:
        """JPEG of the current keyframe, starting an on-demand source if needed."""
        self.stream.acquire()
        try:
            params = await self.stream.wait_ready(timeout)
            async with self._lock:
                keyframe = self.stream.gop.keyframe
                if keyframe is None or params.video is None:
                    params = await self.stream.wait_ready(timeout)
                    keyframe = self.stream.gop.keyframe
                if keyframe is None or params.video is None:
                    raise StreamNotReady(f"stream {self.stream.token} has no keyframe cached")
                if self._key != keyframe.dts:
                    self._jpeg = await asyncio.to_thread(encode_keyframe_jpeg, params.video, keyframe)
                    self._key = keyframe.dts
                return self._jpeg
        finally:
            self.stream.release()
