"""A published RTP video track (H.264 or H.265) as hub packets: fragments joined into NAL
units, NAL units gathered into access units, access units handed to a VideoTrack.

An access unit ends at the marker bit or when the timestamp changes; its timestamp is its
presentation time, DecodeTimes gives it a decode time. A sequence gap (UDP
loss) or a payload that cannot be read breaks the access unit it falls in: it is dropped,
and so is every access unit after it until the next keyframe, since they may refer to
what was lost; a decoder is never handed a corrupt frame. Late or repeated packets are
ignored. An access unit over MAX_ACCESS_UNIT bytes is dropped the same way, so a huge or
endless fragment never grows memory without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.formats import rtp_h264, rtp_h265
from gateway.formats.rtp_h264 import Fragment
from gateway.formats.rtp_packet import RtpPacket
from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket
from gateway.ingest.publish.decode_times import DecodeTimes
from gateway.ingest.publish.rtp_clock import RtpClock
from gateway.ingest.publish.video_track import VideoTrack

MAX_ACCESS_UNIT = 8 * 1024 * 1024  # bytes: several times an 8K keyframe of a high bit rate
MAX_UNITS = 1024  # NAL units in one access unit


class RtpVideoReceiver:
    def __init__(self, codec: str, parameter_sets: list[bytes], clock_rate: int, started: float):
        self.track = VideoTrack(codec, parameter_sets)
        self.clock = RtpClock(clock_rate, VIDEO_TIMESCALE, started)
        self.decode_times = DecodeTimes()
        self._depacketize: Callable[[bytes], list[bytes] | Fragment] = (
            rtp_h265.depacketize if codec == "h265" else rtp_h264.depacketize
        )
        self.units: list[bytes] = []
        self.size = 0
        self.fragment: bytearray | None = None
        self.timestamp: int | None = None  # of the access unit being gathered
        self.broken = False  # the access unit being gathered lost something
        self.need_keyframe = True
        self.next_sequence: int | None = None
        self.dropped = 0  # access units dropped as broken or not decodable

    def rtp(self, packet: RtpPacket) -> list[MediaPacket]:
        """The hub packets (0 or 1, 2 when a timestamp change ends an access unit that had
        no marker) that this RTP packet completes."""
        if self.next_sequence is not None and packet.sequence != self.next_sequence:
            if (packet.sequence - self.next_sequence) % 65536 >= 32768:
                return []  # late or repeated
            self._lose(packet.timestamp)
        self.next_sequence = (packet.sequence + 1) % 65536
        out = []
        if self.timestamp is not None and packet.timestamp != self.timestamp:
            out += self._finish()
        self.timestamp = packet.timestamp
        self._add(packet.payload)
        if packet.marker:
            out += self._finish()
        return out

    def _lose(self, timestamp: int) -> None:
        """Packets are missing before this one: what is gathered is broken, and so is the
        access unit of this packet (its first packets may be the lost ones)."""
        if self.timestamp is not None and self.timestamp != timestamp:
            self.broken = True
            self._finish()
        self.timestamp = timestamp
        self.broken = True

    def _add(self, payload: bytes) -> None:
        if self.broken:
            return
        try:
            got = self._depacketize(payload)
        except ValueError:
            self._break()
            return
        if isinstance(got, Fragment):
            if got.start:
                if self.fragment is not None:
                    self._break()  # the last fragment of the one before never came
                    return
                self.fragment = bytearray(got.header)
            elif self.fragment is None:
                self._break()  # its start was lost
                return
            self.fragment += got.body
            if self.size + len(self.fragment) > MAX_ACCESS_UNIT:
                self._break()
            elif got.end:
                self._unit(bytes(self.fragment))
                self.fragment = None
            return
        if self.fragment is not None:
            self._break()  # a fragmented unit never ended
            return
        for unit in got:
            self._unit(unit)

    def _unit(self, unit: bytes) -> None:
        self.units.append(unit)
        self.size += len(unit)
        if self.size > MAX_ACCESS_UNIT or len(self.units) > MAX_UNITS:
            self._break()

    def _break(self) -> None:
        """The access unit is lost: its data go now, the rest of its packets are skipped."""
        self.broken = True
        self.units, self.size, self.fragment = [], 0, None

    def _finish(self) -> list[MediaPacket]:
        units, timestamp = self.units, self.timestamp
        broken = self.broken or self.fragment is not None
        self.units, self.size, self.fragment, self.timestamp, self.broken = [], 0, None, None, False
        if broken:
            self.need_keyframe = True
            self.dropped += 1
            return []
        if not units or timestamp is None:
            return []
        pts = self.clock.ticks(timestamp)
        dts = self.decode_times.decode_time(pts)
        packet, _ = self.track.access_unit(units, dts, max(pts, dts))
        if packet is None:
            return []
        if (self.need_keyframe and not packet.keyframe) or self.track.params is None:
            self.dropped += 1
            return []
        self.need_keyframe = False
        return [packet]
