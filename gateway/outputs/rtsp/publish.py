"""The publishing side of an RTSP connection (RFC 2326 §10.3, §10.11): ANNOUNCE, SETUP with
mode=record, RECORD; the publisher's RTP arrives interleaved on the connection or over UDP
on a server port pair per track, and goes to its H5_PUSH source's Publisher.

The connection owns one of these from an ANNOUNCE let in (Operator or higher, a source of
type H5_PUSH with no publisher) until TEARDOWN or its end, when the Publisher is closed:
the stream goes offline and its viewers wait for the next publisher.
"""

from __future__ import annotations

import logging
import time

from gateway.ingest.publish.rtp_session import RtpPublishSession
from gateway.ingest.publish.slot import Publisher
from gateway.outputs.rtsp.announce import AnnouncedTrack
from gateway.outputs.rtsp.request import Response
from gateway.outputs.rtsp.transport_header import TransportRequest
from gateway.outputs.rtsp.udp_in import UdpIn, open_udp_in

log = logging.getLogger(__name__)

SILENCE_TIMEOUT = 10.0  # seconds without RTP (from ANNOUNCE on): the publisher is gone, its source free again


class RtspPublish:
    def __init__(self, publisher: Publisher, announced: list[AnnouncedTrack], bind: str, host: str):
        self.publisher = publisher
        self.announced = announced
        self.bind, self.host = bind, host
        self.session = RtpPublishSession(publisher, [a.track for a in announced])
        self.channels: dict[int, int] = {}  # interleaved RTP channel -> track index
        self.udp: dict[int, UdpIn] = {}  # track index -> its server port pair
        self.tcp: bool | None = None  # how the tracks set up so far come
        self.recording = False

    def track_of(self, url: str) -> int | None:
        """The index of the announced track a SETUP's URL names (by its a=control)."""
        path = url.split("?", 1)[0].rstrip("/")
        for index, announced in enumerate(self.announced):
            control = announced.control
            if control and (path == control or path.endswith("/" + control)):
                return index
        return 0 if len(self.announced) == 1 else None

    async def setup(self, url: str, wanted: TransportRequest) -> Response | str:
        """The Transport header answering a SETUP of a track, or the Response refusing it."""
        index = self.track_of(url)
        if index is None:
            return Response(404, reason="no announced track has this URL's control")
        if not wanted.record or (self.tcp is not None and wanted.tcp != self.tcp):
            return Response(461, reason="publishing needs mode=record, all tracks over TCP or all over UDP")
        self.tcp = wanted.tcp
        if wanted.tcp:
            channels = wanted.ports or (2 * index, 2 * index + 1)
            self.channels = {c: i for c, i in self.channels.items() if i != index}
            self.channels[channels[0]] = index
            return f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]};mode=record"
        assert wanted.ports is not None
        if index not in self.udp:
            self.udp[index] = await open_udp_in(self.bind, self.host, lambda data: self.session.rtp(index, data))
        server = self.udp[index].server_ports
        client = f"{wanted.ports[0]}-{wanted.ports[1]}"
        return f"RTP/AVP/UDP;unicast;client_port={client};server_port={server[0]}-{server[1]};mode=record"

    def record(self) -> Response | None:
        """None when RECORD may start; else why not."""
        if self.tcp is None:
            return Response(455, reason="SETUP the announced tracks before RECORD")
        self.recording = True
        self.session.last_rtp = time.monotonic()
        return None

    def frame(self, channel: int, data: bytes) -> None:
        """An interleaved frame: RTP on a track's channel (RTCP on the odd one is dropped)."""
        index = self.channels.get(channel)
        if index is not None and self.recording:
            self.session.rtp(index, data)

    def silent(self) -> bool:
        return time.monotonic() - self.session.last_rtp > SILENCE_TIMEOUT

    def close(self, reason: str) -> None:
        for udp in self.udp.values():
            udp.close()
        self.udp = {}
        self.recording = False
        if self.session.dropped:
            log.info("%s: %d broken access units dropped", self.publisher.origin, self.session.dropped)
        self.publisher.close(reason)
