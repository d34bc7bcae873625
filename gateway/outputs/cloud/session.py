"""One authenticated cloud link on the edge: its channels, its writer, the cloud's requests.

The cloud may only ask three things: subscribe to one of this edge's own configured
sources on a channel, unsubscribe, and run a registered REST command (api/forward.py's
run_locally, a task per request, at most MAX_REQUESTS at once). The edge tells it its
sources' list when the link starts and whenever that list changes.

One writer sends everything: control messages first, then media frames taken from the
channels in turn, so a busy stream never holds up a parameter set, an answer or another
stream.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.formats import cloud_link
from gateway.formats.cloud_link import LinkFormatError, field
from gateway.hub.profile import MAIN, SUB
from gateway.hub.stream import Stream
from gateway.outputs.cloud.channel import LinkChannel
from gateway.tasks import background

if TYPE_CHECKING:
    from gateway.api.forward import ForwardedAnswer
    from gateway.core import Gateway

log = logging.getLogger(__name__)

MAX_REQUESTS = 8  # the cloud's commands running at once; more are answered 503
MAX_CHANNELS = 256  # streams sent at once (each queues up to channel.QUEUE_BYTES); more are ended
SOURCES_CHECK = 1.0  # seconds between looks for a change in the sources' list

RunRequest = Callable[[str, dict[str, str]], Awaitable["ForwardedAnswer"]]


def local_sources(gw: Gateway) -> list[dict[str, Any]]:
    """This edge's configured sources as the cloud lists them."""
    out = []
    for conf in gw.config.sources.values():
        stream = gw.stream(conf.token)
        video = stream.params.video if stream is not None and stream.params is not None else None
        out.append(
            {
                "token": conf.token,
                "name": conf.name,
                "nType": conf.type,
                "bOnline": bool(stream and stream.online),
                "codec": video.codec if video else "",
                "width": video.width if video else 0,
                "height": video.height if video else 0,
                "bSubStream": gw.streams.sub(conf.token) is not None,
            }
        )
    return out


class LinkSession:
    def __init__(self, gw: Gateway, ws: aiohttp.ClientWebSocketResponse, run_request: RunRequest):
        self.gw = gw
        self.ws = ws
        self.run_request = run_request
        self.channels: dict[int, LinkChannel] = {}
        self._control: deque[str] = deque()
        self._wake = asyncio.Event()
        self._turn = itertools.count()
        self._requests: set[asyncio.Task[None]] = set()
        self._sources: list[dict[str, Any]] | None = None
        # Counters (CloudLink adds them up across links): media sent, and skips of closed channels.
        self.sent_frames = 0
        self.sent_bytes = 0
        self.closed_skips = 0

    async def run(self) -> None:
        """Serve the link until it closes; every channel is closed then."""
        writer = background(self._write())
        watcher = background(self._watch_sources())
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._on_control(cloud_link.decode(message.data))
                elif message.type == aiohttp.WSMsgType.BINARY:
                    raise LinkFormatError("a cloud sends no media")
        finally:
            writer.cancel()
            watcher.cancel()
            for task in self._requests:
                task.cancel()
            for channel in list(self.channels.values()):
                self._close(channel)

    @property
    def skips(self) -> int:
        return self.closed_skips + sum(c.skip.skips for c in self.channels.values())

    def send_control(self, text: str) -> None:
        self._control.append(text)
        self._wake.set()

    # -- the cloud's messages -----------------------------------------------------------

    def _on_control(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            self._subscribe(field(message, "channel", int), field(message, "token", str), message.get("profile", MAIN))
        elif kind == "unsubscribe":
            channel = self.channels.get(field(message, "channel", int))
            if channel is not None:
                self._close(channel)
        elif kind == "request":
            self._request(field(message, "id", str), field(message, "command", str), field(message, "query", dict))
        else:
            raise LinkFormatError(f"a cloud may not send {kind[:32]!r}")

    def _subscribe(self, number: int, token: str, profile: Any) -> None:
        if number in self.channels:
            raise LinkFormatError(f"channel {number} is already open")
        stream = self._own_stream(token, profile)
        if stream is None or len(self.channels) >= MAX_CHANNELS:
            reason = f"no source {token[:64]!r}" if stream is None else f"more than {MAX_CHANNELS} channels"
            self.send_control(cloud_link.encode("end", channel=number, reason=reason))
            return
        channel = self.channels[number] = LinkChannel(number, token, profile, stream, self.send_control, self._wake.set)
        log.info("cloud link: channel %d sends %s", number, stream.label)
        channel.open()

    def _own_stream(self, token: str, profile: Any) -> Stream | None:
        """A stream of this edge's own configured sources: never one it relays from elsewhere."""
        if token not in self.gw.config.sources or profile not in (MAIN, SUB):
            return None
        return self.gw.stream(token, profile)

    def _follow_replaced(self) -> None:
        """A source replaced by the API has new streams: its channels move to them (the
        cloud's stream starts a new session on the same channel), or end if it is gone."""
        for channel in list(self.channels.values()):
            stream = self._own_stream(channel.token, channel.profile)
            if stream is channel.stream:
                continue
            self._close(channel)
            reason = "its source was replaced" if stream is not None else "its source was deleted"
            self.send_control(cloud_link.encode("end", channel=channel.channel, reason=reason))
            if stream is not None:
                self._subscribe(channel.channel, channel.token, channel.profile)

    def _close(self, channel: LinkChannel) -> None:
        del self.channels[channel.channel]
        self.closed_skips += channel.skip.skips
        channel.close()
        log.info("cloud link: channel %d of %s closed", channel.channel, channel.stream.label)

    def _request(self, request_id: str, command: str, query: dict[str, Any]) -> None:
        if len(self._requests) >= MAX_REQUESTS:
            self._respond(request_id, 503, "application/json", b'{"bStatus":false,"strCode":"edge busy: try again"}')
            return
        params = {str(k): str(v) for k, v in query.items()}
        task = background(self._answer(request_id, command, params))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _answer(self, request_id: str, command: str, query: dict[str, str]) -> None:
        try:
            answer = await self.run_request(command, query)
        except Exception:
            log.exception("cloud link: running %s", command)
            self._respond(request_id, 500, "application/json", b'{"bStatus":false,"strCode":"internal error"}')
            return
        self._respond(request_id, answer.status, answer.content_type, answer.body)

    def _respond(self, request_id: str, status: int, content_type: str, body: bytes) -> None:
        self.send_control(
            cloud_link.encode(
                "response",
                id=request_id,
                status=status,
                contentType=content_type,
                body=base64.b64encode(body).decode("ascii"),
            )
        )

    # -- to the cloud ---------------------------------------------------------------------

    async def _watch_sources(self) -> None:
        while True:
            self._follow_replaced()
            sources = local_sources(self.gw)
            if sources != self._sources:
                self._sources = sources
                self.send_control(cloud_link.encode("sources", src=sources))
            await asyncio.sleep(SOURCES_CHECK)

    async def _write(self) -> None:
        """Control first, then one media frame from each channel that has one, in turn."""
        try:
            while True:
                if self._control:
                    await self.ws.send_str(self._control.popleft())
                    continue
                channel = self._next_with_media()
                if channel is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frame = channel.pop()
                self.sent_frames += 1
                self.sent_bytes += len(frame)
                await self.ws.send_bytes(frame)
        except ConnectionError:
            pass

    def _next_with_media(self) -> LinkChannel | None:
        channels = list(self.channels.values())
        if not channels:
            return None
        start = next(self._turn) % len(channels)
        for channel in channels[start:] + channels[:start]:
            if channel.frames:
                return channel
        return None
