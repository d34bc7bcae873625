"""The RTSP feed of a stream: its RTP packets made once, sent as they are to every reader.

Per stream, one RtspFeed packetizes each frame once (formats/rtp_h264.py and rtp_h265.py,
parameter sets before keyframes; G.711 as the camera sent it; AAC with RFC 3640 AU
headers) into an RtpBatch with the stream's own sequence numbers, timestamps and SSRC per
track, and hands that same batch to every reader. Sharing the header fields is what keeps
the per-reader cost at one write per frame: each reader learns where its packets start from
PLAY's RTP-Info (seq, rtptime), as RFC 2326 §12.33 intends, so they need not be rewritten.
Audio batches wait for the next video frame and go out with it in one Chunk (one write per
reader per video frame: the audio is at most a frame interval later, its timestamps unchanged).
The chunks of the cached GOP are kept beside the hub's GOP cache, so a new reader starts at
once at its keyframe.
"""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING, Any

from gateway.formats import nal, rtp_h264, rtp_h265
from gateway.hub.gop import GopMemo
from gateway.hub.output import OutputCounts
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.rtsp import rtcp
from gateway.outputs.rtsp.batch import Chunk, RtpBatch, make_batch
from gateway.outputs.rtsp.sdp import Track, tracks_of

if TYPE_CHECKING:
    from gateway.outputs.rtsp.reader import RtpReader

MAX_WAITING_AUDIO = 4  # audio batches held for the next video frame; more go out on their own


class TrackState:
    """A track's RTP identity in this stream: its SSRC, next sequence number and timestamp base."""

    __slots__ = ("base", "next_seq", "ssrc", "track")

    def __init__(self, track: Track):
        self.track = track
        self.ssrc = random.getrandbits(32)
        self.next_seq = random.getrandbits(16)
        self.base = random.getrandbits(32)

    def batch(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> RtpBatch:
        track = self.track
        batch = make_batch(
            track.index, track.payload_type, self.ssrc, self.next_seq, self.base + timestamp, payloads, keyframe
        )
        self.next_seq = (self.next_seq + len(payloads)) & 0xFFFF
        return batch


def aac_payload(frame: bytes) -> bytes:
    """One AAC frame with its AU header section (RFC 3640 §3.2.1: 16 bits of headers, one header)."""
    return struct.pack(">HH", 16, len(frame) << 3) + frame


class RtspFeed:
    """One per stream: RTP packets made once, fanned out to every RTSP reader."""

    metric_name = "rtsp"

    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.tracks: dict[str, TrackState] = {}  # by the hub packet kind each carries
        self.gop: GopMemo[Chunk] = stream.gop.memo()
        self.waiting_audio: list[RtpBatch] = []
        self.members = 0  # sessions set up on this stream: the feed follows it while there are any
        self.readers: set[RtpReader] = set()  # those of them playing
        self.frames_packetized = 0  # video frames turned into RTP packets: once each, whatever the readers
        self._gone = OutputCounts()

    def track_states(self, params: StreamParams) -> dict[str, TrackState]:
        """The tracks of `params`, keeping each one's RTP identity while its kind stays."""
        return {t.kind: self.tracks.get(t.kind) or TrackState(t) for t in tracks_of(params)}

    def join(self) -> None:
        """A session set up on the stream: follow it (the parameters, the cached GOP, then live)."""
        self.members += 1
        if self.members == 1:
            self.gop.reset()
            self.stream.attach(self)

    def leave(self) -> None:
        self.members -= 1
        if self.members == 0:
            self.stream.detach(self)
            self.gop.reset()

    def add_reader(self, reader: RtpReader) -> None:
        """Start `reader` at the cached GOP's keyframe, then on the live frames."""
        self.readers.add(reader)
        reader.start(self.gop.items, len(self.tracks))

    def remove_reader(self, reader: RtpReader) -> None:
        if reader in self.readers:
            self.readers.discard(reader)
            self._gone.bytes_out += reader.bytes_sent
            self._gone.skips += reader.skip.skips

    def next_batch(self, kind: str) -> tuple[int, int | None]:
        """(seq, rtptime) of the first packet a reader starting now gets on a track: the
        cached GOP's first for it, else the next the track will send (its time unknown yet)."""
        state = self.tracks.get(kind)
        if state is None:
            return 0, None
        for chunk in self.gop.items:
            for batch in chunk.batches:
                if batch.track == state.track.index:
                    return batch.first_seq, batch.timestamp
        for batch in self.waiting_audio:
            if batch.track == state.track.index:
                return batch.first_seq, batch.timestamp
        return state.next_seq, None

    def close(self) -> None:
        for reader in list(self.readers):
            reader.close("the stream was removed")

    def describe(self) -> dict[str, Any]:
        return {}

    def counts(self) -> OutputCounts:
        gone = self._gone
        return OutputCounts(
            clients=len(self.readers),
            bytes_out=gone.bytes_out + sum(r.bytes_sent for r in self.readers),
            skips=gone.skips + sum(r.skip.skips for r in self.readers),
        )

    def on_params(self, params: StreamParams) -> None:
        self.params = params
        self.tracks = self.track_states(params)
        self.waiting_audio = []

    def on_packet(self, packet: MediaPacket) -> None:
        state = self.tracks.get(packet.kind)
        if state is None or self.params is None:
            return
        if packet.kind == "video":
            video = self.params.video
            assert video is not None
            packetize = rtp_h265.packetize if video.hevc else rtp_h264.packetize
            parameter_sets = video.parameter_sets if packet.keyframe else None
            payloads = packetize(nal.split_avcc(packet.data), parameter_sets)
            self.frames_packetized += 1
            batches, self.waiting_audio = [*self.waiting_audio, state.batch(payloads, packet.pts, packet.keyframe)], []
        else:
            payload = packet.data if packet.kind == "g711" else aac_payload(packet.data)
            self.waiting_audio.append(state.batch([payload], packet.dts, False))
            if len(self.waiting_audio) < MAX_WAITING_AUDIO:
                return
            batches, self.waiting_audio = self.waiting_audio, []
        chunk = Chunk.of(batches, rtcp.wall_clock())
        self.gop.add(chunk)
        for reader in self.readers:
            reader.send(chunk)
