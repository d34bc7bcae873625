"""One fMP4 fragmenter per stream, shared by all its WebSocket viewers.

Each packet becomes one moof+mdat, framed as a WebSocket binary message, exactly once;
every viewer's socket gets the same bytes object. The feed keeps the init segment and
the fragments since the last keyframe, so a new viewer starts decoding at once.
"""

from __future__ import annotations

import struct

from .fanout import TransportViewer
from .fmp4 import fragment, init_segment
from .hub import Stream
from .packet import MediaPacket, StreamParams


def ws_binary_message(payload: bytes) -> bytes:
    """An unmasked, final WebSocket binary frame (RFC 6455 §5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = struct.pack(">BB", 0x82, size)
    elif size < 65536:
        header = struct.pack(">BBH", 0x82, 126, size)
    else:
        header = struct.pack(">BBQ", 0x82, 127, size)
    return header + payload


class Fmp4Feed:
    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.init: bytes | None = None
        self.init_video_only: bytes | None = None  # for viewers that asked for no audio
        self.gop: list[tuple[bytes, str]] = []  # (message, kind) since the last keyframe
        self.viewers: set[TransportViewer] = set()
        self.sequence = 0
        self.fragments_made = 0

    @classmethod
    def of(cls, stream: Stream) -> "Fmp4Feed":
        return stream.output("fmp4", cls)

    # -- viewers -------------------------------------------------------------------

    def subscribe(self, viewer: TransportViewer) -> None:
        """Add a viewer; it gets the init segment and cached GOP now if media is there.

        The caller holds the stream (Stream.acquire) for as long as the viewer watches.
        """
        if not self.viewers:
            self.stream.attach(self)
        self.viewers.add(viewer)
        if self.init is not None:
            self._prime(viewer)

    def unsubscribe(self, viewer: TransportViewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        if not self.viewers:
            # Nobody to fragment for: stop work, forget the cache (it would go stale).
            self.stream.detach(self)
            self.params, self.init, self.init_video_only, self.gop = None, None, None, []

    def _init_for(self, viewer: TransportViewer) -> bytes:
        return self.init_video_only if viewer.video_only else self.init  # type: ignore[return-value]

    def _prime(self, viewer: TransportViewer) -> None:
        viewer.put(self._init_for(viewer), keyframe=True, essential=True)
        for i, (data, kind) in enumerate(self.gop):
            if kind == "video" or not viewer.video_only:
                viewer.put(data, keyframe=i == 0)

    def close(self) -> None:
        """The stream is going away: tell every viewer's handler to end."""
        for viewer in list(self.viewers):
            viewer.ended.set()
            self.unsubscribe(viewer)

    # -- StreamOutput --------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        self.params = params
        self.init = ws_binary_message(init_segment(params))
        self.init_video_only = ws_binary_message(init_segment(params.without_audio())) if params.audio else self.init
        self.gop = []
        for viewer in self.viewers:
            viewer.put(self._init_for(viewer), keyframe=True, essential=True)

    def on_packet(self, packet: MediaPacket) -> None:
        if self.init is None:
            return
        if packet.kind not in ("video", "audio"):
            return
        self.sequence += 1
        data = ws_binary_message(fragment(self.sequence, packet.kind, [packet]))
        self.fragments_made += 1
        keyframe = packet.kind == "video" and packet.keyframe
        if keyframe:
            self.gop = [(data, packet.kind)]
        elif self.gop:
            self.gop.append((data, packet.kind))
        audio = packet.kind == "audio"
        for viewer in self.viewers:
            if not (audio and viewer.video_only):
                viewer.put(data, keyframe)
