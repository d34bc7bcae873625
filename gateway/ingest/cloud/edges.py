"""The cloud's edges: each linked gateway, its sources as hub Streams, its channels and requests.

An Edge outlives its links: it is made when a server token first authenticates and kept,
so its remote sources' Streams (and their viewers) survive a dropped link and carry on
when the edge returns. What an edge may say is narrow: its own sources' list, parameters
and packets on channels this cloud opened to it, the end of such a channel, answers to
requests this cloud sent it. It can never address another edge nor change the cloud.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config.file import Config, SourceConf, valid_token
from gateway.formats import cloud_link
from gateway.formats.cloud_link import LinkFormatError, field
from gateway.hub.profile import MAIN, SUB
from gateway.hub.streams import StreamManager
from gateway.ingest.cloud.remote_input import RemoteInput

if TYPE_CHECKING:
    from gateway.api.forward import ForwardedAnswer

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds the cloud waits for an edge's answer to a forwarded command
MAX_SOURCES = 1000  # sources one edge may list
MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class RemoteSource:
    """One source as its edge describes it (its `sources` message)."""

    token: str  # on the edge
    name: str
    type: str  # the edge's nType
    online: bool
    codec: str  # h264, h265 or empty
    width: int
    height: int
    sub: bool  # the edge has a sub stream for it

    @classmethod
    def from_json(cls, entry: Any) -> RemoteSource:
        if not isinstance(entry, dict):
            raise LinkFormatError("sources: each source must be an object")
        token = field(entry, "token", str)
        if not valid_token(token):
            raise LinkFormatError(f"sources: bad token {token[:64]!r}")
        return cls(
            token,
            field(entry, "name", str)[:MAX_NAME],
            field(entry, "nType", str)[:32],
            field(entry, "bOnline", bool),
            field(entry, "codec", str)[:8],
            field(entry, "width", int),
            field(entry, "height", int),
            field(entry, "bSubStream", bool),
        )


class Edge:
    """One edge gateway, by its server token; `online` while its link is up."""

    def __init__(self, server_token: str, streams: StreamManager, config: Config):
        self.server_token = server_token
        self.server_name = ""
        self.ip = ""
        self.sources: dict[str, RemoteSource] = {}  # by the edge's token
        self._streams = streams
        self._config = config
        self._send: Callable[[str], None] | None = None  # the link's outbox, while online
        self._running: dict[RemoteInput, None] = {}  # started inputs, in order
        self._channels: dict[int, RemoteInput] = {}
        self._channel_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[ForwardedAnswer]] = {}
        # Counters for GetServerList and /metrics.
        self.links = 0  # links authenticated
        self.frames_in = 0
        self.bytes_in = 0

    @property
    def online(self) -> bool:
        return self._send is not None

    @property
    def channels(self) -> int:
        """Channels open on the link now: streams the edge sends."""
        return len(self._channels)

    def remote_token(self, token: str) -> str:
        """A source's token on the cloud: `{serverToken}_{token}` (server tokens have no '_')."""
        return f"{self.server_token}_{token}"

    # -- the link ---------------------------------------------------------------------

    def attach(self, send: Callable[[str], None], ip: str, name: str) -> None:
        """A link authenticated: send through `send`; every running remote stream subscribes again at once."""
        self._send, self.ip, self.server_name = send, ip, name
        self.links += 1
        for remote in self._running:
            self._open(remote)

    def detach(self) -> None:
        """The link is gone: its streams go offline (their viewers stay), its requests fail."""
        self._send = None
        channels, self._channels = self._channels, {}
        for remote in channels.values():
            remote.channel = None
            remote.on_end(f"edge {self.server_token} offline")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TimeoutError(f"edge {self.server_token} went offline"))
        self._pending.clear()

    # -- the remote inputs' side ------------------------------------------------------

    def subscribe(self, remote: RemoteInput) -> None:
        self._running[remote] = None
        if self.online:
            self._open(remote)
        else:
            remote.on_end(f"edge {self.server_token} offline")

    def unsubscribe(self, remote: RemoteInput) -> None:
        self._running.pop(remote, None)
        channel, remote.channel = remote.channel, None
        if channel is not None and self._channels.pop(channel, None) is not None and self._send is not None:
            self._send(cloud_link.encode("unsubscribe", channel=channel))

    def _open(self, remote: RemoteInput) -> None:
        assert self._send is not None
        channel = remote.channel = next(self._channel_ids)
        self._channels[channel] = remote
        self._send(cloud_link.encode("subscribe", channel=channel, token=remote.token, profile=remote.profile))

    # -- what the edge says -----------------------------------------------------------

    def on_control(self, message: dict[str, Any]) -> None:
        """One of the edge's control messages; LinkFormatError for anything it may not say."""
        kind = message["type"]
        if kind == "sources":
            self._on_sources(message)
        elif kind == "params":
            remote = self._channels.get(field(message, "channel", int))
            params = cloud_link.params_from_json(message)
            if remote is not None:
                remote.on_params(params)
        elif kind == "end":  # the channel stays open: parameters may come again on it
            remote = self._channels.get(field(message, "channel", int))
            if remote is not None:
                remote.on_end(f"edge {self.server_token}: {str(message.get('reason', ''))[:200]}")
        elif kind == "response":
            self._on_response(message)
        else:
            raise LinkFormatError(f"an edge may not send {kind[:32]!r}")

    def on_media(self, frame: bytes) -> None:
        channel, packet = cloud_link.unpack_media(frame)
        self.frames_in += 1
        self.bytes_in += len(frame)
        remote = self._channels.get(channel)
        if remote is not None:
            remote.on_packet(packet)

    def _on_sources(self, message: dict[str, Any]) -> None:
        entries = field(message, "src", list)
        if len(entries) > MAX_SOURCES:
            raise LinkFormatError(f"sources: more than {MAX_SOURCES}")
        sources = {s.token: s for s in map(RemoteSource.from_json, entries)}
        for token in [t for t in self.sources if t not in sources]:
            self._remove_stream(self.remote_token(token))
        for source in sources.values():
            self._keep_stream(source, self.sources.get(source.token))
        self.sources = sources

    def _keep_stream(self, source: RemoteSource, before: RemoteSource | None) -> None:
        """The cloud's Stream(s) of a remote source: made, renamed or remade (a sub stream came or went)."""
        token = self.remote_token(source.token)
        if not valid_token(token) or token in self._config.sources:
            if before is None:
                log.warning(
                    "edge %s: source %s not served as %r (a local token, or too long)",
                    self.server_token,
                    source.token,
                    token[:80],
                )
            return
        conf = SourceConf.from_json(
            {"strName": source.name, "strToken": token, "nType": "H5_STREAM", "nConnectType": "H5_ONDEMAND"}, "cloud"
        )
        if before is not None and before.sub == source.sub and self._owns(token):
            self._streams.rename(conf)
            return
        self._remove_stream(token)
        sub = RemoteInput(self, source.token, SUB) if source.sub else None
        self._streams.add(conf, RemoteInput(self, source.token, MAIN), sub)

    def _owns(self, token: str) -> bool:
        """Whether the cloud's stream `token` is one of this edge's (never a local source's)."""
        stream = self._streams.get(token)
        return stream is not None and isinstance(stream.source, RemoteInput) and stream.source.edge is self

    def _remove_stream(self, token: str) -> None:
        if self._owns(token):
            self._streams.remove(token)

    def _on_response(self, message: dict[str, Any]) -> None:
        from gateway.api.forward import ForwardedAnswer  # api/forward.py imports the gateway, which has this registry

        future = self._pending.pop(field(message, "id", str), None)
        try:
            body = base64.b64decode(field(message, "body", str), validate=True)
        except binascii.Error:
            raise LinkFormatError("response: body is not base64") from None
        answer = ForwardedAnswer(field(message, "status", int), field(message, "contentType", str), body)
        if future is not None and not future.done():
            future.set_result(answer)

    # -- forwarded commands (api/forward.py) ------------------------------------------

    async def request(self, command: str, query: dict[str, str]) -> ForwardedAnswer:
        """The edge's answer to a command; TimeoutError when none comes in REQUEST_TIMEOUT
        (or the link drops first)."""
        if self._send is None:
            raise TimeoutError(f"edge {self.server_token} is offline")
        request_id = str(next(self._request_ids))
        future: asyncio.Future[ForwardedAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._send(cloud_link.encode("request", id=request_id, command=command, query=query))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        finally:
            self._pending.pop(request_id, None)


class EdgeRegistry:
    """`gateway.edges`: the edges that authenticated since start, by server token."""

    def __init__(self, streams: StreamManager, config: Config):
        self._streams = streams
        self._config = config
        self.edges: dict[str, Edge] = {}

    def get(self, server_token: str) -> Edge | None:
        return self.edges.get(server_token)

    def edge(self, server_token: str) -> Edge:
        """The edge of a server token that has just authenticated, made on its first link."""
        edge = self.edges.get(server_token)
        if edge is None:
            edge = self.edges[server_token] = Edge(server_token, self._streams, self._config)
        return edge

    def source(self, token: str) -> tuple[Edge, RemoteSource] | None:
        """The edge and remote source a cloud token names (`{serverToken}_{token}`), if any."""
        server_token, _, original = token.partition("_")
        edge = self.edges.get(server_token)
        source = edge.sources.get(original) if edge is not None else None
        if edge is None or source is None or not valid_token(token) or token in self._config.sources:
            return None
        return edge, source

    def remote_tokens(self) -> list[str]:
        """Every remote source's token on the cloud, edge by edge."""
        return [
            token
            for edge in self.edges.values()
            for token in map(edge.remote_token, edge.sources)
            if self.source(token) is not None
        ]
