"""One continuous timeline per stream, whatever the source's connections do.

Each connection (a camera reconnect, a file looping, a renewed URL) starts its clocks
anywhere. The timeline moves every packet so that a new connection's first keyframe
comes right after the last frame sent, decode times never go backwards, and audio that
would overlap audio already sent is dropped. So outputs never see a reconnect as a jump.
"""

from __future__ import annotations

from gateway.hub.packet import VIDEO_TIMESCALE, MediaPacket, StreamParams

DEFAULT_VIDEO_DURATION = 3600  # 25 fps in 90 kHz ticks, until the real spacing is seen
G711_RATE = 8000


class Timeline:
    def __init__(self) -> None:
        self._last_dts: dict[str, int] = {}
        self._next_dts = 0  # 90 kHz: where the next connection's first frame goes
        self._offset: dict[str, int] | None = None
        self._floor: dict[str, int] = {}
        self._video_delta = DEFAULT_VIDEO_DURATION

    def new_connection(self) -> None:
        """The next packet (a video keyframe) starts a connection: it goes after the last frame."""
        self._offset = None

    @property
    def connected(self) -> bool:
        """Whether the current connection has placed its first packet."""
        return self._offset is not None

    @staticmethod
    def _rate(kind: str, params: StreamParams | None) -> int | None:
        """Clock rate of a packet kind the current connection carries."""
        if kind == "video":
            return VIDEO_TIMESCALE
        if kind == "audio" and params and params.audio:
            return params.audio.sample_rate
        if kind == "g711" and params and params.g711:
            return G711_RATE
        return None

    def place(self, packet: MediaPacket, params: StreamParams | None) -> bool:
        """Move the packet onto the timeline (in place). False for a packet to drop: audio
        from before the connection's first keyframe, or overlapping audio already sent."""
        if self._offset is None:
            # First packet of a connection (a video keyframe): continue right after the last one.
            self._offset = {"video": self._next_dts - packet.dts}
            self._floor = {"video": self._next_dts}
        if packet.kind not in self._offset:
            rate = self._rate(packet.kind, params)
            if rate is None:
                return False
            self._offset[packet.kind] = self._offset["video"] * rate // VIDEO_TIMESCALE
            self._floor[packet.kind] = self._floor["video"] * rate // VIDEO_TIMESCALE
        offset = self._offset[packet.kind]
        packet.dts += offset
        packet.pts += offset
        last = self._last_dts.get(packet.kind)
        if packet.kind != "video" and (
            packet.dts < self._floor[packet.kind] or (last is not None and packet.dts <= last)
        ):
            return False
        if last is not None and packet.dts <= last:
            shift = last + 1 - packet.dts  # never let decode time go backwards
            packet.dts += shift
            packet.pts += shift
        if packet.kind == "video":
            if last is not None and 0 < packet.dts - last < VIDEO_TIMESCALE * 5:
                self._video_delta = packet.dts - last
            if not packet.duration:
                packet.duration = self._video_delta
            self._next_dts = packet.dts + packet.duration
        self._last_dts[packet.kind] = packet.dts
        return True
