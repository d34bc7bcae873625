"""One fMP4 fragmenter per stream, shared by all its WebSocket viewers.

Each packet becomes one moof+mdat exactly once, framed as WebSocket messages once; every
viewer's socket gets the same bytes objects. The feed keeps the init segment, and the
messages of the cached GOP beside the hub's GOP cache (a GopMemo, emptied with it), so a
new viewer starts decoding at once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from gateway.formats.fmp4 import fragment, init_segment
from gateway.hub.gop import GopMemo
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.ws_fmp4.viewer import TransportViewer


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


AUDIO_HOLD_TICKS_SECONDS = 0.2  # audio waits for the next video frame at most this long


@dataclass(frozen=True, slots=True)
class Message:
    """One WebSocket message for full viewers and its counterpart for video-only ones."""

    full: bytes | None
    video_only: bytes | None
    keyframe: bool

    def for_viewer(self, viewer: TransportViewer) -> bytes | None:
        return self.video_only if viewer.video_only else self.full


class Fmp4Feed:
    """Audio fragments ride in the message of the next video frame (MSE takes several
    moof+mdat in one append), so a viewer gets one message per frame: ~25 sends a second
    instead of ~70 with 48 kHz AAC, which is most of a viewer's cost."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.init: Message | None = None
        self.gop: GopMemo[Message] = stream.gop.memo()  # the cached GOP's messages
        self.viewers: set[TransportViewer] = set()
        self.sequence = 0
        self.fragments_made = 0
        self._pending_audio: list[bytes] = []
        self._pending_audio_dts: int | None = None

    # -- viewers -------------------------------------------------------------------

    def subscribe(self, viewer: TransportViewer) -> None:
        """Add a viewer; it gets the init segment and cached GOP now if media is there.

        The caller holds the stream (Stream.acquire) for as long as the viewer watches.
        """
        if not self.viewers:
            self.gop.reset()
            self.stream.attach(self)
        self.viewers.add(viewer)
        if self.init is not None:
            self._send(viewer, self.init, essential=True)
            for message in self.gop.items:
                self._send(viewer, message)

    def unsubscribe(self, viewer: TransportViewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        if not self.viewers:
            # Nobody to fragment for: stop work, forget the cache (it would go stale).
            self.stream.detach(self)
            self.params, self.init = None, None
            self.gop.reset()
            self._pending_audio, self._pending_audio_dts = [], None

    def close(self) -> None:
        """The stream is going away: tell every viewer's handler to end."""
        for viewer in list(self.viewers):
            viewer.ended.set()
            self.unsubscribe(viewer)

    def describe(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _send(viewer: TransportViewer, message: Message, essential: bool = False) -> None:
        data = message.for_viewer(viewer)
        if data is not None:
            viewer.put(data, message.keyframe, essential)

    def _publish(self, message: Message) -> None:
        self.gop.add(message)
        for viewer in self.viewers:
            self._send(viewer, message)

    # -- StreamOutput --------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        self.params = params
        full = ws_binary_message(init_segment(params))
        video_only = ws_binary_message(init_segment(params.without_audio())) if params.audio else full
        self.init = Message(full, video_only, True)
        self._pending_audio, self._pending_audio_dts = [], None
        for viewer in self.viewers:
            self._send(viewer, self.init, essential=True)

    def on_packet(self, packet: MediaPacket) -> None:
        if self.init is None or packet.kind not in ("video", "audio"):
            return
        self.sequence += 1
        self.fragments_made += 1
        data = fragment(self.sequence, packet.kind, [packet])
        if packet.kind == "audio":
            audio = self.params.audio if self.params is not None else None
            if audio is None:
                return  # the hub passes audio only with its parameters
            self._pending_audio.append(data)
            if self._pending_audio_dts is None:
                self._pending_audio_dts = packet.dts
            held = (packet.dts - self._pending_audio_dts) / audio.sample_rate
            if held >= AUDIO_HOLD_TICKS_SECONDS:  # video has stopped coming: send audio alone
                self._publish(Message(ws_binary_message(b"".join(self._pending_audio)), None, False))
                self._pending_audio, self._pending_audio_dts = [], None
            return
        video_only = ws_binary_message(data)
        full = ws_binary_message(b"".join(self._pending_audio) + data) if self._pending_audio else video_only
        self._pending_audio, self._pending_audio_dts = [], None
        self._publish(Message(full, video_only, packet.keyframe))
