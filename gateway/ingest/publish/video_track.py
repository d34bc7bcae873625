"""A published video track's access units as hub packets, whatever protocol carried them.

RTP (after depacketizing) and RTMP give an access unit as its NAL units; parameter sets
may come out of band (SDP, avcC/hvcC) and in band. The hub wants them apart: packets of
length-prefixed NAL units without parameter sets or AUD, and the sets as VideoParams.
"""

from __future__ import annotations

from gateway.formats import nal
from gateway.hub.packet import MediaPacket, VideoParams
from gateway.ingest.packets import VideoCodec


class VideoTrack:
    def __init__(self, codec: str, parameter_sets: list[bytes] | None = None):
        self.codec = VideoCodec(codec)  # "h264" or "h265"
        self.sets: dict[int, bytes] = {}
        self.params: VideoParams | None = None
        self.add_parameter_sets(parameter_sets or [])

    def add_parameter_sets(self, units: list[bytes]) -> bool:
        """Take parameter sets (from an SDP or a sequence header); True if the params changed."""
        changed = False
        for unit in units:
            kind = self.codec.nal_type(unit) if unit else -1
            if kind in self.codec.parameter_set_types and self.sets.get(kind) != unit:
                self.sets[kind] = unit
                changed = True
        return changed and self._update()

    def access_unit(self, units: list[bytes], dts: int, pts: int) -> tuple[MediaPacket | None, bool]:
        """(the hub packet of one access unit, None if it held only parameter sets or
        delimiters; whether the params changed). `dts`/`pts` at 90 kHz."""
        codec = self.codec
        kept: list[bytes] = []
        sets: list[bytes] = []
        keyframe = False
        for unit in units:
            if not unit:
                continue
            kind = codec.nal_type(unit)
            if kind in codec.parameter_set_types:
                sets.append(unit)
            elif kind != codec.aud:
                keyframe |= codec.is_random_access(kind)
                kept.append(unit)
        changed = self.add_parameter_sets(sets) if sets else False
        if not kept:
            return None, changed
        return MediaPacket("video", dts, pts, 0, keyframe, nal.to_avcc(kept)), changed

    def _update(self) -> bool:
        try:
            params = self.codec.params(self.sets)
        except (ValueError, IndexError):
            return False
        if params is None or params == self.params:
            return False
        self.params = params
        return True
