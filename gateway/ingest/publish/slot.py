"""H5_PUSH: a source whose media is published into the gateway (RTSP RECORD, RTMP publish).

The source's stream is always running (SourceConf.always_on), waiting for a publisher;
the PublishSlot is its hub input. A protocol server that has let a publisher in (Operator
or higher) claims the slot for it and hands its media over as hub parameters and
packets, in the event loop, so no thread is involved. One publisher at a time: a second
one is refused while the first publishes. A publisher that goes leaves the stream
offline with its viewers attached; the next one to come starts a new session on the same
timeline, and they play on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.hub.packet import MediaPacket, StreamParams
from gateway.ingest.demux import SourceSink

log = logging.getLogger(__name__)


class PublishRefused(Exception):
    """A publisher not let in; `status` as HTTP/RTSP say it (404, 403, 409), the message
    safe to show it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Publisher:
    """One publisher's hand-over into the hub; made by PublishSlot.claim.

    `on_kick`: set by the server, to end the publisher's connection when its source is
    deleted or replaced.
    """

    def __init__(self, slot: PublishSlot, origin: str):
        self.slot = slot
        self.origin = origin  # e.g. "rtmp from 127.0.0.1", for logs and GetSrc
        self.on_kick: Callable[[], None] = lambda: None
        self.closed = False
        self._started = False
        self.packets = 0

    def set_params(self, params: StreamParams) -> None:
        """The publisher's codecs: the first call starts the hub session, later ones
        change its parameters (a new SPS, say)."""
        sink = self._sink()
        if sink is None:
            return
        if self._started:
            sink.on_params(params)
        else:
            self._started = True
            sink.on_session_start(params)

    def packet(self, packet: MediaPacket) -> None:
        """One packet, timestamps on the track's clock (90 kHz video, the sample rate for
        audio) from any origin: the hub's timeline rebases them."""
        sink = self._sink()
        if sink is not None and self._started:
            self.packets += 1
            sink.on_packet(packet)

    def close(self, reason: str = "the publisher stopped") -> None:
        """The publisher is gone (or was refused late): the stream goes offline, its
        viewers stay. Idempotent."""
        if self.closed:
            return
        sink = self._sink()
        self.closed = True
        if self.slot.publisher is self:
            self.slot.publisher = None
        if sink is not None and self._started:
            sink.on_session_end(reason)
        log.info("source %s: %s left (%s)", self.slot.token, self.origin, reason)

    def _sink(self) -> SourceSink | None:
        return None if self.closed or self.slot.publisher is not self else self.slot.sink


class PublishSlot:
    """The hub input (StreamInput) of an H5_PUSH source: where its one publisher's media enters."""

    def __init__(self, token: str):
        self.token = token
        self.sink: SourceSink | None = None  # the stream, while it runs
        self.publisher: Publisher | None = None

    # -- the hub's side ---------------------------------------------------------------

    def start(self, sink: SourceSink) -> _Running:
        self.sink = sink
        return _Running(self)

    def describe(self) -> dict[str, Any]:
        """GetSrc: who publishes now (empty: nobody)."""
        return {"strPublisher": self.publisher.origin if self.publisher else ""}

    # -- the protocol servers' side -----------------------------------------------------

    def claim(self, origin: str) -> Publisher:
        """The slot for a publisher let in by a server; PublishRefused when another one
        publishes or the stream is not running (its source is being removed)."""
        if self.publisher is not None:
            raise PublishRefused(409, f"{self.token} already has a publisher ({self.publisher.origin})")
        if self.sink is None:
            raise PublishRefused(503, f"{self.token} is not accepting a publisher now")
        self.publisher = Publisher(self, origin)
        log.info("source %s: %s publishes", self.token, origin)
        return self.publisher


class _Running:
    """The slot as the hub's RunningInput: stopping it (the source deleted or replaced)
    ends the publisher's connection."""

    def __init__(self, slot: PublishSlot):
        self.slot = slot

    def stop(self) -> None:
        slot, self.slot.sink = self.slot, None
        publisher = slot.publisher
        if publisher is not None:
            publisher.close("its source was removed")
            publisher.on_kick()
