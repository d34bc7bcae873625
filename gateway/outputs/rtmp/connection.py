"""One RTMP connection: handshake, then NetConnection commands, then one publish or one play.

States: `new` (before connect), `connected` (connect answered), then `publishing` (its
audio and video go to a Publisher, ingest/publish/) or `playing` (an RtmpPlayer of the
stream's FLV feed). A connection carries one message stream (createStream answers 1) and
ends with it: deleteStream, closeStream, the client leaving, the source being removed,
or a refusal (an onStatus error saying why, then the connection is closed). A client that
breaks the protocol or a bound, or sends nothing for IDLE_TIMEOUT (players excepted: they
only read), is dropped with a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.auth import Session
from gateway.config.file import valid_token
from gateway.hub.profile import profile_of
from gateway.hub.rendition import NoRendition, for_client
from gateway.hub.stream import Stream, StreamNotReady
from gateway.ingest.publish.flv_media import FlvMedia
from gateway.ingest.publish.slot import Publisher, PublishRefused
from gateway.outputs.flv.feed import FlvFeed
from gateway.outputs.rtmp import chunk_writer, commands, login, message
from gateway.outputs.rtmp.amf0 import Amf0Error
from gateway.outputs.rtmp.chunk_reader import ChunkError, ChunkReader
from gateway.outputs.rtmp.commands import Command
from gateway.outputs.rtmp.handshake import HandshakeError, server_handshake
from gateway.outputs.rtmp.message import Message
from gateway.outputs.rtmp.player import MEDIA_STREAM_ID, RtmpPlayer
from gateway.outputs.rtmp.stream_url import APP, connect_query, stream_name

if TYPE_CHECKING:
    from gateway.core import Gateway

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds for the whole handshake
IDLE_TIMEOUT = 30.0  # seconds without a byte from a client that does not play
READ_SIZE = 65536
WINDOW = 2_500_000  # the acknowledgement window the server asks of the client
PUBLISHER = "Operator"
PLAYER = "Viewer"


class ClientError(Exception):
    """The client sent a command out of turn; the message says which."""


class Connection:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.gateway = gateway
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.address = str(peer[0])
        self.label = f"rtmp {peer[0]}:{peer[1]}" if len(peer) > 1 else "rtmp"
        self.auth = gateway.auth if gateway.settings.http.auth else None
        self.chunks = ChunkReader()
        self.state = "new"
        self.connect_query: dict[str, str] = {}
        self.window = 0  # the client's acknowledgement window (0: it asked for none)
        self.acknowledged = 0
        self.publisher: Publisher | None = None
        self.media: FlvMedia | None = None
        self.held: Stream | None = None
        self.feed: FlvFeed | None = None
        self.player: RtmpPlayer | None = None
        self.player_watch: asyncio.Future[None] | None = None
        self.forget_session: Callable[[], None] = lambda: None  # stop watching a session= login
        self.done = asyncio.Event()

    # -- the connection's life --------------------------------------------------------

    async def run(self) -> None:
        try:
            await asyncio.wait_for(server_handshake(self.reader, self.writer), HANDSHAKE_TIMEOUT)
            reading = asyncio.ensure_future(self._read())
            done = asyncio.ensure_future(self.done.wait())
            try:
                await asyncio.wait([reading, done], return_when=asyncio.FIRST_COMPLETED)
            finally:
                reading.cancel()
                done.cancel()
            if reading.done() and not reading.cancelled() and (error := reading.exception()) is not None:
                log.error("%s: dropped after an error in the server", self.label, exc_info=error)
        except HandshakeError as e:
            log.info("%s: dropped: %s", self.label, e)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            log.info("%s: dropped during the handshake", self.label)
        finally:
            self._end()
            self.writer.close()

    async def _read(self) -> None:
        try:
            while not self.done.is_set():
                timeout = None if self.state == "playing" else IDLE_TIMEOUT
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
                if not data:
                    return
                for msg in self.chunks.feed(data):
                    await self._handle(msg)
                    if self.done.is_set():
                        return
                self._acknowledge()
        except (ChunkError, Amf0Error, ClientError) as e:
            log.info("%s: dropped: %s", self.label, e)
        except TimeoutError:
            log.info("%s: dropped: nothing sent for %d s", self.label, IDLE_TIMEOUT)
        except ConnectionError:
            pass

    def close(self, reason: str) -> None:
        log.info("%s: closing: %s", self.label, reason)
        self.done.set()

    def _end(self) -> None:
        self.forget_session()
        if self.player_watch is not None:
            self.player_watch.cancel()
        if self.publisher is not None:
            self.publisher.close("the rtmp publisher left")
        if self.feed is not None and self.player is not None:
            self.feed.unsubscribe(self.player)
        if self.held is not None:
            self.held.release()
        self.publisher = self.media = self.feed = self.player = self.held = None

    def _send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def _acknowledge(self) -> None:
        read = self.chunks.bytes_read
        if self.window and read - self.acknowledged >= self.window:
            self.acknowledged = read
            self._send(chunk_writer.acknowledgement(read))

    # -- messages ----------------------------------------------------------------------

    async def _handle(self, msg: Message) -> None:
        kind = msg.type
        if kind == message.VIDEO:
            if self.media is not None:
                self.media.video(msg.timestamp, msg.payload)
        elif kind == message.AUDIO:
            if self.media is not None:
                self.media.audio(msg.timestamp, msg.payload)
        elif kind in (message.COMMAND_AMF0, message.COMMAND_AMF3):
            await self._command(commands.parse(msg))
        elif kind == message.WINDOW_ACK_SIZE and len(msg.payload) >= 4:
            self.window = int.from_bytes(msg.payload[:4], "big")
        elif kind == message.USER_CONTROL and len(msg.payload) >= 6 and _event(msg) == message.PING_REQUEST:
            value = int.from_bytes(msg.payload[2:6], "big")
            self._send(chunk_writer.user_control(message.PING_RESPONSE, value))
        # Data messages (@setDataFrame onMetaData), acknowledgements, bandwidth: nothing to do.

    async def _command(self, command: Command) -> None:
        name = command.name
        if name == "connect":
            return self._connect(command)
        if self.state == "new":
            raise ClientError(f"{name} before connect")
        if name == "createStream":
            self._send(commands.result(command.transaction, float(MEDIA_STREAM_ID)))
        elif name == "publish":
            await self._publish(command)
        elif name == "play":
            await self._play(command)
        elif name in ("deleteStream", "closeStream"):
            self.close(f"{name} from the client")
        elif command.transaction:  # releaseStream, FCPublish, FCUnpublish, getStreamLength...
            self._send(commands.result(command.transaction))
        return None

    def _connect(self, command: Command) -> None:
        if self.state != "new":
            raise ClientError("a second connect")
        app = command.object.get("app")
        tc_url = command.object.get("tcUrl")
        app_name, self.connect_query = connect_query(
            app[: commands.MAX_NAME] if isinstance(app, str) else "",
            tc_url[: commands.MAX_NAME] if isinstance(tc_url, str) else "",
        )
        if app_name != APP:
            self._send(commands.connect_error(command.transaction, f"unknown app {app_name!r}: use /{APP}/{{token}}"))
            return self.close(f"unknown app {app_name!r}")
        self._send(
            chunk_writer.window_ack_size(WINDOW)
            + chunk_writer.set_peer_bandwidth(WINDOW)
            + chunk_writer.set_chunk_size(chunk_writer.OUT_CHUNK_SIZE)
            + commands.connect_result(command.transaction)
        )
        self.state = "connected"
        return None

    def _refuse(self, code: str, description: str) -> None:
        self._send(commands.on_status(MEDIA_STREAM_ID, "error", code, description))
        self.close(f"refused ({code}): {description}")

    # -- publish -------------------------------------------------------------------------

    async def _publish(self, command: Command) -> None:
        if self.state != "connected":
            return self._refuse("NetStream.Publish.BadConnection", "this connection already publishes or plays")
        name = stream_name(command.text(0), self.connect_query)
        try:
            session = await login.check(self.auth, name.query, PUBLISHER, self.address)
        except login.LoginRefused as e:
            return self._refuse("NetStream.Publish.Unauthorized", f"publish {name.token}: {e}")
        try:
            publisher = self.gateway.publisher(name.token, f"rtmp from {self.address}")
        except PublishRefused as e:
            return self._refuse("NetStream.Publish.BadName", f"publish {name.token}: {e}")
        if self.done.is_set():  # the client went while its password was checked
            publisher.close("the rtmp publisher left")
            return None
        publisher.on_kick = lambda: self.close("its source was removed")
        self._watch_session(session)
        self.publisher, self.media = publisher, FlvMedia(publisher, name.token)
        self.state = "publishing"
        self._send(
            chunk_writer.user_control(message.STREAM_BEGIN, MEDIA_STREAM_ID)
            + commands.on_status(MEDIA_STREAM_ID, "status", "NetStream.Publish.Start", f"{name.token} is published")
        )
        log.info("%s: publishes %s", self.label, name.token)
        return None

    # -- play ----------------------------------------------------------------------------

    async def _play(self, command: Command) -> None:
        if self.state != "connected":
            return self._refuse("NetStream.Play.Failed", "this connection already publishes or plays")
        name = stream_name(command.text(0), self.connect_query)
        try:
            session = await login.check(self.auth, name.query, PLAYER, self.address)
            profile = profile_of(name.query.get("profile"))
        except login.LoginRefused as e:
            return self._refuse("NetStream.Play.Failed", f"play {name.token}: {e}")
        except ValueError as e:
            return self._refuse("NetStream.Play.Failed", str(e))
        stream = self.gateway.stream(name.token, profile) if valid_token(name.token) else None
        if stream is None:
            return self._refuse("NetStream.Play.StreamNotFound", f"no stream {name.token[:64]!r}")
        stream.acquire()
        self.held = stream
        try:
            params = await stream.wait_ready()
            watched = for_client(stream, params, takes_hevc=False)
            if watched is not stream:
                watched.acquire()
                stream.release()
                self.held = watched
                params = await watched.wait_ready()
        except StreamNotReady as e:
            return self._refuse("NetStream.Play.Failed", str(e))
        except NoRendition as e:
            return self._refuse("NetStream.Play.Failed", f"{e}; RTMP carries H.264 only")
        if self.done.is_set():
            return None
        self._send(
            chunk_writer.user_control(message.STREAM_BEGIN, MEDIA_STREAM_ID)
            + commands.on_status(MEDIA_STREAM_ID, "status", "NetStream.Play.Reset", f"playing {name.token}")
            + commands.on_status(MEDIA_STREAM_ID, "status", "NetStream.Play.Start", f"playing {name.token}")
        )
        transport = self.writer.transport
        assert isinstance(transport, asyncio.WriteTransport)
        self._watch_session(session)
        self.player = RtmpPlayer(transport, params)
        self.feed = watched.output(FlvFeed)
        self.state = "playing"
        self.feed.subscribe(self.player)
        self.player_watch = asyncio.ensure_future(self._close_when_ended(self.player))
        log.info("%s: plays %s", self.label, name.token)
        return None

    def _watch_session(self, session: Session | None) -> None:
        """A `session=` login that ends (Logout, expiry) ends the connection, as on the
        other outputs."""
        if self.auth is not None and session is not None:
            self.forget_session = self.auth.on_end(session, lambda reason: self.close(f"session ended: {reason}"))

    async def _close_when_ended(self, player: RtmpPlayer) -> None:
        await player.ended.wait()
        self.close("the stream went away")


def _event(msg: Message) -> int:
    """A user control message's event type."""
    return int.from_bytes(msg.payload[:2], "big")
