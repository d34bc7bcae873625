"""The WebRTC feed of a stream: RTP payloads made once, fanned out to every peer's tracks.

Per stream, one RtcFeed turns each frame into RTP payloads once (formats/rtp_h264.py,
SPS+PPS ahead of every IDR; formats/rtp_h265.py, VPS+SPS+PPS ahead of every IRAP
picture) and hands the same RtpFrame to every peer (peer.py). Audio:
the camera's G.711 goes out as it is; AAC sources are transcoded to Opus once per
stream, in a worker thread, only while peers watch. It keeps the cached GOP's frames
beside the hub's GOP cache, to resync a peer that reports a lost picture.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.formats import nal, rtp_h264, rtp_h265
from gateway.formats.audio_transcode import OpusTranscoder
from gateway.hub.gop import GopMemo
from gateway.hub.output import OutputCounts
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.webrtc.rtp_frame import RtpFrame

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import PeerTrack, PeerVideoTrack

log = logging.getLogger(__name__)


class OpusWorker:
    """AAC to Opus for one stream, in order, in its own thread (PyAV work stays out of the
    event loop); each packet's Opus frames come back to the loop to be sent.

    A plain thread and queue: run_in_executor's two futures, their chained callbacks and
    the pool's semaphore, per 20 ms of audio, cost the loop more than the hand-off needs.
    """

    def __init__(self, name: str, deliver: Callable[[list[tuple[int, bytes]]], None]):
        self.loop = asyncio.get_running_loop()
        self.deliver = deliver
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, transcode: Callable[[MediaPacket], list[tuple[int, bytes]]], packet: MediaPacket) -> None:
        self.queue.put((transcode, packet))

    def stop(self) -> None:
        self.queue.put(None)

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            transcode, packet = job
            try:
                frames = transcode(packet)
            except Exception:  # one bad packet must not end the stream's audio
                log.exception("Opus transcode failed")
                continue
            if frames:
                try:
                    self.loop.call_soon_threadsafe(self.deliver, frames)
                except RuntimeError:  # loop closed during shutdown
                    return


class RtcFeed:
    """One per stream: RTP payloads made once, fanned out to every peer's tracks."""

    metric_name = "webrtc"

    def __init__(self, stream: Stream):
        self.stream = stream
        self.params: StreamParams | None = None
        self.gop: GopMemo[RtpFrame] = stream.gop.memo()  # the cached GOP's frames, for resyncs
        self.video_tracks: set[PeerVideoTrack] = set()
        self.audio_tracks: set[PeerTrack] = set()
        self.opus: OpusTranscoder | None = None
        self._worker: OpusWorker | None = None
        self._gone = OutputCounts()  # what the peers that left had sent and skipped

    @property
    def peers(self) -> int:
        return len(self.video_tracks)

    def add_peer(self, video: PeerVideoTrack, audio: PeerTrack | None) -> None:
        if not self.video_tracks:
            self.gop.reset()
            self.stream.attach(self)
        self.video_tracks.add(video)
        if audio is not None:
            self.audio_tracks.add(audio)
        video.resync()

    def remove_peer(self, video: PeerVideoTrack, audio: PeerTrack | None) -> None:
        if video in self.video_tracks:  # not a peer that never connected, nor one removed already
            for track in (video, audio) if audio is not None else (video,):
                self._gone.bytes_out += track.bytes_sent
                self._gone.skips += track.skip.skips
        self.video_tracks.discard(video)
        if audio is not None:
            self.audio_tracks.discard(audio)
        if not self.video_tracks:
            self.stream.detach(self)
            self.params, self.opus = None, None
            self.gop.reset()
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def close(self) -> None:
        for track in list(self.video_tracks) + list(self.audio_tracks):
            track.stop()

    def describe(self) -> dict[str, Any]:
        return {}

    def counts(self) -> OutputCounts:
        tracks, gone = [*self.video_tracks, *self.audio_tracks], self._gone
        return OutputCounts(
            clients=len(self.video_tracks),
            bytes_out=gone.bytes_out + sum(t.bytes_sent for t in tracks),
            skips=gone.skips + sum(t.skip.skips for t in tracks),
        )

    def on_params(self, params: StreamParams) -> None:
        self.params = params
        self.opus = OpusTranscoder(params.audio) if params.audio and not params.g711 else None

    def on_packet(self, packet: MediaPacket) -> None:
        if packet.kind == "video" and self.params and self.params.video:
            video = self.params.video
            packetize = rtp_h265.packetize if video.hevc else rtp_h264.packetize
            parameter_sets = video.parameter_sets if packet.keyframe else None
            frame = RtpFrame(packetize(nal.split_avcc(packet.data), parameter_sets), packet.pts, packet.keyframe)
            self.gop.add(frame)
            for track in self.video_tracks:
                track.send(frame)
        elif packet.kind == "g711" and self.audio_tracks:
            self._send_audio([(packet.dts, packet.data)])
        elif packet.kind == "audio" and self.opus is not None and self.audio_tracks:
            if self._worker is None:
                self._worker = OpusWorker(f"opus-{self.stream.token}", self._send_audio)
            self._worker.submit(self.opus.transcode, packet)

    def _send_audio(self, frames: list[tuple[int, bytes]]) -> None:
        for timestamp, data in frames:
            frame = RtpFrame([data], timestamp, True)
            for track in self.audio_tracks:
                track.push(frame, timestamp)
