"""A published RTP audio track as hub packets: AAC (mpeg4-generic) as it is, G.711
transcoded to AAC and kept beside it as kind "g711", as PacketReader does for a camera's.

Audio frames stand alone: a lost packet loses its own frames and nothing after it.
"""

from __future__ import annotations

import av

from gateway.formats.aac import FRAME_SAMPLES, config_params
from gateway.formats.audio_transcode import AacTranscoder
from gateway.formats.rtp_aac import AuHeaderLayout, access_units
from gateway.formats.rtp_packet import RtpPacket
from gateway.hub.packet import AudioParams, MediaPacket
from gateway.ingest.publish.rtp_clock import RtpClock

G711_RATE = 8000
G711_DECODERS = {"PCMA": "pcm_alaw", "PCMU": "pcm_mulaw"}


class RtpAacReceiver:
    def __init__(self, fmtp: dict[str, str], clock_rate: int, started: float):
        self.layout = AuHeaderLayout.from_fmtp(fmtp)
        self.params: AudioParams = config_params(bytes.fromhex(fmtp.get("config", "")))
        self.clock = RtpClock(clock_rate, self.params.sample_rate, started)
        self.g711: str | None = None

    def rtp(self, packet: RtpPacket) -> list[MediaPacket]:
        try:
            frames = access_units(packet.payload, self.layout)
        except ValueError:
            return []
        start = self.clock.ticks(packet.timestamp)
        return [
            MediaPacket("audio", start + i * FRAME_SAMPLES, start + i * FRAME_SAMPLES, FRAME_SAMPLES, True, frame)
            for i, frame in enumerate(frames)
            if frame
        ]


class RtpG711Receiver:
    def __init__(self, codec: str, started: float):
        self.g711: str | None = codec  # "PCMA" or "PCMU"
        self.transcoder = AacTranscoder(G711_DECODERS[codec], G711_RATE, 1)
        self.params: AudioParams = self.transcoder.params
        self.clock = RtpClock(G711_RATE, G711_RATE, started)

    def rtp(self, packet: RtpPacket) -> list[MediaPacket]:
        if not packet.payload:
            return []
        ticks = self.clock.ticks(packet.timestamp)
        rate = self.params.sample_rate
        frames = self.transcoder.transcode(av.Packet(packet.payload), ticks * rate // G711_RATE)
        out = [MediaPacket("audio", pts, pts, FRAME_SAMPLES, True, data) for pts, data in frames]
        out.append(MediaPacket("g711", ticks, ticks, len(packet.payload), True, packet.payload))
        return out
