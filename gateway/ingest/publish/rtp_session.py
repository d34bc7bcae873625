"""One RTSP publisher's received RTP, track by track, handed to its Publisher.

The stream's parameters are the video track's (from the SDP's sprop sets or in band) and
the audio track's; they are set on the Publisher when the first keyframe is ready and
again whenever they change. Audio waits for the video to start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gateway.formats.rtp_packet import parse_rtp
from gateway.hub.packet import StreamParams
from gateway.ingest.publish.rtp_audio import RtpAacReceiver, RtpG711Receiver
from gateway.ingest.publish.rtp_video import RtpVideoReceiver
from gateway.ingest.publish.slot import Publisher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedTrack:
    """What the receiver needs of an announced track."""

    media: str  # "video" or "audio"
    codec: str  # "h264", "h265", "aac", "PCMA" or "PCMU"
    payload_type: int
    clock_rate: int
    fmtp: dict[str, str]
    parameter_sets: list[bytes]


class RtpPublishSession:
    def __init__(self, publisher: Publisher, tracks: list[ReceivedTrack]):
        """ValueError if a track cannot be received (its SDP was checked before)."""
        self.publisher = publisher
        self.started = time.monotonic()
        self.last_rtp = self.started
        self.tracks = tracks
        self.video: RtpVideoReceiver | None = None
        self.audio: RtpAacReceiver | RtpG711Receiver | None = None
        for track in tracks:
            if track.media == "video":
                self.video = RtpVideoReceiver(track.codec, track.parameter_sets, track.clock_rate, self.started)
            elif track.codec == "aac":
                self.audio = RtpAacReceiver(track.fmtp, track.clock_rate, self.started)
            else:
                self.audio = RtpG711Receiver(track.codec, self.started)
        self.params: StreamParams | None = None  # as last set on the publisher

    def rtp(self, index: int, data: bytes) -> None:
        """One RTP packet of track `index` (its position in the SDP)."""
        if index >= len(self.tracks):
            return
        try:
            packet = parse_rtp(data)
        except ValueError:
            return
        if packet.payload_type != self.tracks[index].payload_type:
            return
        self.last_rtp = time.monotonic()
        receiver = self.video if self.tracks[index].media == "video" else self.audio
        assert receiver is not None
        for media in receiver.rtp(packet):
            if media.kind == "video":
                self._update_params()
            elif self.params is None:
                continue
            self.publisher.packet(media)

    def _update_params(self) -> None:
        assert self.video is not None
        audio = self.audio
        params = StreamParams(self.video.track.params, audio.params if audio else None, audio.g711 if audio else None)
        if params != self.params:
            self.params = params
            self.publisher.set_params(params)

    @property
    def dropped(self) -> int:
        return self.video.dropped if self.video else 0
