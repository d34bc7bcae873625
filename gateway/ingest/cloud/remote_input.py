"""RemoteInput: the hub input of a source an edge serves over its cloud link.

The cloud keeps an ordinary hub Stream per remote source, so every output plays it. Its
input is this: starting it asks the edge for the source's packets on a link channel,
stopping it tells the edge to stop, so the edge sends a camera once per cloud stream and
only while that stream runs (on demand, with the cloud's linger). A link that drops ends
the session (the stream goes offline, its viewers stay); the registry subscribes again
when the edge returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.hub.packet import MediaPacket, StreamParams
from gateway.ingest.demux import SourceSink

if TYPE_CHECKING:
    from gateway.ingest.cloud.edges import Edge


class RemoteInput:
    """The StreamInput of one remote source's main or sub stream."""

    def __init__(self, edge: Edge, token: str, profile: str):
        self.edge = edge
        self.token = token  # the source's token on the edge
        self.profile = profile
        self.sink: SourceSink | None = None  # the stream, while it runs
        self.channel: int | None = None  # the link channel, while subscribed
        self._started = False  # a session is under way (params came)

    # -- the hub's side ---------------------------------------------------------------

    def start(self, sink: SourceSink) -> _Running:
        self.sink = sink
        self.edge.subscribe(self)
        return _Running(self)

    def describe(self) -> dict[str, Any]:
        return {"strServerToken": self.edge.server_token, "strOriginalToken": self.token}

    # -- the link's side --------------------------------------------------------------

    def on_params(self, params: StreamParams) -> None:
        if self.sink is None:
            return
        if self._started:
            self.sink.on_params(params)
        else:
            self._started = True
            self.sink.on_session_start(params)

    def on_packet(self, packet: MediaPacket) -> None:
        if self.sink is not None and self._started:
            self.sink.on_packet(packet)

    def on_end(self, reason: str) -> None:
        """The session ended (the edge's source was replaced, or the link dropped): offline
        until parameters come again."""
        self._started = False
        if self.sink is not None:
            self.sink.on_session_end(reason)


class _Running:
    def __init__(self, remote: RemoteInput):
        self.remote = remote

    def stop(self) -> None:
        remote = self.remote
        remote.edge.unsubscribe(remote)
        remote.sink = None
        remote._started = False
