"""One playing RTSP session: the shared batches it is sent, what it skips, its sender reports.

A reader gets the cached GOP from its keyframe, then every live batch of the tracks it set
up. A TCP reader whose connection's send buffer is over budget skips to the next keyframe
(hub/backpressure.py), so the stream never waits for it; its audio is dropped meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.hub.backpressure import KeyframeSkip
from gateway.outputs.rtsp import rtcp
from gateway.outputs.rtsp.batch import RtpBatch
from gateway.outputs.rtsp.transport import TcpOut, UdpOut


class TrackCounts:
    """What a reader was sent on one track, and when its last frame left (for sender reports)."""

    __slots__ = ("clock_rate", "last_timestamp", "last_wall", "octets", "packets", "ssrc")

    def __init__(self, ssrc: int, clock_rate: int):
        self.ssrc, self.clock_rate = ssrc, clock_rate
        self.packets = self.octets = self.last_timestamp = 0
        self.last_wall = 0.0


class RtpReader:
    def __init__(self, out: TcpOut | UdpOut, tracks: dict[int, TrackCounts], close: Callable[[str], None]):
        self.out = out
        self.tracks = tracks  # by trackID: the tracks this session set up
        self.close = close  # ends the session, saying why
        self.skip = KeyframeSkip()
        self.bytes_sent = 0

    def start(self, gop: list[RtpBatch]) -> None:
        self.skip.restart()
        for batch in gop:
            self.send(batch)

    def send(self, batch: RtpBatch) -> None:
        counts = self.tracks.get(batch.track)
        if counts is None:
            return
        behind = self.out.behind(len(batch.data))
        if batch.track == 0:
            if not self.skip.admit(batch.keyframe, behind):
                return
        elif behind or self.skip.skipping:
            return
        self.out.send(batch)
        self.bytes_sent += len(batch.data)
        counts.packets += batch.count
        counts.octets += batch.octets
        counts.last_timestamp = batch.timestamp
        counts.last_wall = rtcp.wall_clock()

    def report(self) -> None:
        """A sender report on each track that has sent something: its RTP clock now, by the wall."""
        now = rtcp.wall_clock()
        for track, counts in self.tracks.items():
            if counts.packets:
                rtp_now = counts.last_timestamp + int((now - counts.last_wall) * counts.clock_rate)
                self.out.send_rtcp(track, rtcp.sender_report(counts.ssrc, now, rtp_now, counts.packets, counts.octets))
