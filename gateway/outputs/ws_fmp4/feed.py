"""One fMP4 fragmenter per stream, shared by all its WebSocket viewers.

Each packet becomes one moof+mdat exactly once (message.py); a viewer's bytes differ from
another's only in the decode times of its moofs, and viewers that started at the same
keyframe share one copy. The feed keeps the init segment, and the messages of the cached
GOP beside the hub's GOP cache (a GopMemo, emptied with it), so a new viewer starts
decoding at once.
"""

from __future__ import annotations

from typing import Any

from gateway.formats.aac import FRAME_SAMPLES, is_aac_lc, silent_frame
from gateway.formats.fmp4 import init_segment
from gateway.hub.gop import GopMemo
from gateway.hub.output import OutputCounts
from gateway.hub.packet import VIDEO_TIMESCALE, AudioParams, MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.ws_fmp4.message import Message, Piece, ws_binary_message
from gateway.outputs.ws_fmp4.viewer import Renders, TransportViewer

AUDIO_HOLD_TICKS_SECONDS = 0.2  # audio waits for the next video frame at most this long
SILENCE_MAX_SECONDS = 10  # audio gaps up to this long are filled with silence
# A new viewer gets the cached GOP only when it is at most this long: its media starts at
# 0 and plays at 1x, so it stays that far behind live, and the stock h5s player reconnects
# when its buffer runs more than 5 s ahead (PROTOCOLS.md §2 rule 4). With a longer GOP
# (H.264+ "smart" cameras) the viewer starts at the next keyframe instead.
REPLAY_MAX_SECONDS = 4


class Fmp4Feed:
    """Audio fragments ride in the message of the next video frame (MSE takes several
    moof+mdat in one append), so a viewer gets one message per frame: ~25 sends a second
    instead of ~70 with 48 kHz AAC, which is most of a viewer's cost.

    A gap in the audio (a camera reconnect whose audio starts after its keyframe, audio
    the camera skipped) is filled with silent AAC frames: MSE buffers only where every
    track has media, and a player that never seeks (the stock h5s one) stalls for good at
    such a hole in its buffer, while video plays on through it everywhere else."""

    metric_name = "ws_fmp4"

    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.init: tuple[bytes, bytes] | None = None  # framed init segments: full, video only
        self.gop: GopMemo[Message] = stream.gop.memo()  # the cached GOP's messages
        self.viewers: set[TransportViewer] = set()
        self.sequence = 0
        self.fragments_made = 0
        self._pending_audio: list[Piece] = []
        self._audio_next: int | None = None  # where the next audio frame should start
        self._gone = OutputCounts()  # what the viewers that left had sent and skipped

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
            self._send_init(viewer)
            if self._replay_span() <= REPLAY_MAX_SECONDS * VIDEO_TIMESCALE:
                for message in self.gop.items:
                    viewer.offer(message)

    def unsubscribe(self, viewer: TransportViewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        self._gone.bytes_out += viewer.bytes_sent
        self._gone.skips += viewer.skips
        if not self.viewers:
            # Nobody to fragment for: stop work, forget the cache (it would go stale).
            self.stream.detach(self)
            self.params, self.init = None, None
            self.gop.reset()
            self._pending_audio, self._audio_next = [], None

    def close(self) -> None:
        """The stream is going away: tell every viewer's handler to end."""
        for viewer in list(self.viewers):
            viewer.ended.set()
            self.unsubscribe(viewer)

    def describe(self) -> dict[str, Any]:
        return {}

    def counts(self) -> OutputCounts:
        viewers, gone = self.viewers, self._gone
        return OutputCounts(
            clients=len(viewers),
            bytes_out=gone.bytes_out + sum(v.bytes_sent for v in viewers),
            skips=gone.skips + sum(v.skips for v in viewers),
        )

    def _replay_span(self) -> int:
        """90 kHz ticks from the cached keyframe to the end of the newest cached video frame."""
        items = self.gop.items
        last = next((m.video for m in reversed(items) if m.video is not None), None)
        return last.end - items[0].video.start if last is not None and items[0].video is not None else 0

    def _send_init(self, viewer: TransportViewer) -> None:
        assert self.init is not None
        viewer.send_init(self.init[1] if viewer.video_only else self.init[0])

    def _publish(self, message: Message) -> None:
        self.gop.add(message)
        renders: Renders = {}
        for viewer in self.viewers:
            viewer.offer(message, renders)

    # -- StreamOutput --------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if params == self.params:
            return
        full = ws_binary_message(init_segment(params))
        video_only = ws_binary_message(init_segment(params.without_audio())) if params.audio else full
        self.init = (full, video_only)
        self._pending_audio = []
        if self.params is None or params.audio != self.params.audio:
            self._audio_next = None  # another audio clock: nothing to fill from
        self.params = params
        for viewer in self.viewers:
            self._send_init(viewer)

    def on_packet(self, packet: MediaPacket) -> None:
        if self.init is None or packet.kind not in ("video", "audio"):
            return
        self.sequence += 1
        self.fragments_made += 1
        if packet.kind == "audio":
            audio = self.params.audio if self.params is not None else None
            if audio is None:
                return  # the hub passes audio only with its parameters
            self._fill_gap_before(packet, audio)
            self._pending_audio.append(Piece.of(self.sequence, packet, audio.sample_rate))
            held = (packet.dts - self._pending_audio[0].dts) / audio.sample_rate
            if held >= AUDIO_HOLD_TICKS_SECONDS:  # video has stopped coming: send audio alone
                self._publish(Message(tuple(self._pending_audio), None, False))
                self._pending_audio = []
            return
        video = Piece.of(self.sequence, packet, VIDEO_TIMESCALE)
        self._publish(Message(tuple(self._pending_audio), video, packet.keyframe))
        self._pending_audio = []

    def _fill_gap_before(self, packet: MediaPacket, audio: AudioParams) -> None:
        """Silent frames that end where `packet` starts, from where the audio stopped."""
        expected, self._audio_next = self._audio_next, packet.dts + packet.duration
        if expected is None or not is_aac_lc(audio):
            return
        missing = (packet.dts - expected) // FRAME_SAMPLES
        if not 0 < missing <= SILENCE_MAX_SECONDS * audio.sample_rate // FRAME_SAMPLES:
            return
        silence = silent_frame(audio.sample_rate, audio.channels)
        for back in range(missing, 0, -1):
            dts = packet.dts - back * FRAME_SAMPLES
            self.sequence += 1
            filler = MediaPacket("audio", dts, dts, FRAME_SAMPLES, True, silence)
            self._pending_audio.append(Piece.of(self.sequence, filler, audio.sample_rate))
