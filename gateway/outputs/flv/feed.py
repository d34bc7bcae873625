"""One FLV tag maker per stream, shared by all its HTTP-FLV and WS-FLV clients.

Each packet becomes one tag body exactly once; a client's bytes differ from another's only
in the tag headers' timestamps (client.py). The feed keeps the sequence headers, and the
tags of the cached GOP beside the hub's GOP cache (a GopMemo, emptied with it), so a new
client starts decoding at once. H.264 + AAC only: the caller serves an H.265 stream's H.264
rendition, and the camera's own G.711 (packets of kind "g711") is left to the hub's AAC
transcode (kind "audio").
"""

from __future__ import annotations

from typing import Any

from gateway.formats import flv
from gateway.hub.gop import GopMemo
from gateway.hub.output import OutputCounts
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.flv.client import FlvClient, Renders, Tag

_TICKS_PER_MS = VIDEO_TIMESCALE // 1000


class FlvFeed:
    metric_name = "flv"

    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.sequence_headers: list[Tag] = []
        self.gop: GopMemo[Tag] = stream.gop.memo()
        self.clients: set[FlvClient] = set()
        self._gone = OutputCounts()

    # -- clients -------------------------------------------------------------------

    def subscribe(self, client: FlvClient) -> None:
        """Add a client; it gets the header, sequence headers and cached GOP now if media is there.

        The caller holds the stream (Stream.acquire) for as long as the client reads, and
        has checked that its video is H.264."""
        if not self.clients:
            self.gop.reset()
            self.stream.attach(self)
        self.clients.add(client)
        if self.params is not None:
            client.send_start(self.params.video is not None, self.params.audio, self.sequence_headers)
            for tag in self.gop.items:
                client.offer(tag)

    def unsubscribe(self, client: FlvClient) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        self._gone.bytes_out += client.bytes_sent
        self._gone.skips += client.skips
        if not self.clients:
            self.stream.detach(self)
            self.params, self.sequence_headers = None, []
            self.gop.reset()

    def close(self) -> None:
        """The stream is going away: tell every client's handler to end."""
        for client in list(self.clients):
            client.ended.set()
            self.unsubscribe(client)

    def describe(self) -> dict[str, Any]:
        return {}

    def counts(self) -> OutputCounts:
        clients, gone = self.clients, self._gone
        return OutputCounts(
            clients=len(clients),
            bytes_out=gone.bytes_out + sum(c.bytes_sent for c in clients),
            skips=gone.skips + sum(c.skips for c in clients),
        )

    # -- Subscriber ----------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        headers = []
        if params.video is not None and not params.video.hevc:
            headers.append(Tag(flv.VIDEO_TAG, 0, False, flv.avc_sequence_header(params.video)))
        if params.audio is not None:
            headers.append(Tag(flv.AUDIO_TAG, 0, False, flv.aac_sequence_header(params.audio)))
        self.params, self.sequence_headers = params, headers
        for client in self.clients:
            client.send_sequence_headers(headers)

    def on_packet(self, packet: MediaPacket) -> None:
        params = self.params
        if params is None:
            return
        if packet.kind == "video" and params.video is not None and not params.video.hevc:
            ms = packet.dts // _TICKS_PER_MS
            composition = packet.pts // _TICKS_PER_MS - ms
            tag = Tag(flv.VIDEO_TAG, ms, packet.keyframe, flv.avc_frame(packet.keyframe, composition, packet.data))
        elif packet.kind == "audio" and params.audio is not None:
            ms = packet.dts * 1000 // params.audio.sample_rate
            tag = Tag(flv.AUDIO_TAG, ms, False, flv.aac_frame(packet.data))
        else:
            return
        self.gop.add(tag)
        renders: Renders = {}
        for client in self.clients:
            client.offer(tag, renders)
