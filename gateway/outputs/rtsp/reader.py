"""One playing RTSP session: the shared batches it is sent, what it skips, its sender reports.

A reader gets the cached GOP from its keyframe, then every live batch of the tracks it set
up. A TCP reader whose connection's send buffer is over budget skips to the next keyframe
(hub/backpressure.py), so the stream never waits for it; its audio is dropped meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.hub.backpressure import KeyframeSkip
from gateway.outputs.rtsp import rtcp
from gateway.outputs.rtsp.batch import Chunk
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
        self.all_tracks = range(0)  # the stream's tracks (set at start)
        self.plain = False  # chunks go out as they are (see `whole`)

    @property
    def whole(self) -> bool:
        """Whether a chunk's buffer goes out as it is: TCP on the default channels, every track set up."""
        out = self.out
        return (
            isinstance(out, TcpOut)
            and len(self.tracks) == len(self.all_tracks)
            and all(out.channels[t] == 2 * t for t in self.tracks)
        )

    def start(self, gop: list[Chunk], all_tracks: int) -> None:
        self.all_tracks = range(all_tracks)
        self.plain = self.whole
        self.skip.restart()
        for chunk in gop:
            self.send(chunk)

    def send(self, chunk: Chunk) -> None:
        behind = self.out.behind(len(chunk.data))
        if chunk.has_video:
            if not self.skip.admit(chunk.keyframe, behind):
                return
        elif behind or self.skip.skipping:
            return
        if self.plain:
            self.out.write(chunk.data)
            self.bytes_sent += len(chunk.data)
        for batch in chunk.batches:
            counts = self.tracks.get(batch.track)
            if counts is not None:
                if not self.plain:
                    self.out.send(batch)
                    self.bytes_sent += len(batch.data)
                counts.packets += batch.count
                counts.octets += batch.octets
                counts.last_timestamp = batch.timestamp
                counts.last_wall = chunk.wall

    def report(self) -> None:
        """A sender report on each track that has sent something: its RTP clock now, by the wall."""
        now = rtcp.wall_clock()
        for track, counts in self.tracks.items():
            if counts.packets:
                rtp_now = counts.last_timestamp + int((now - counts.last_wall) * counts.clock_rate)
                self.out.send_rtcp(track, rtcp.sender_report(counts.ssrc, now, rtp_now, counts.packets, counts.octets))
