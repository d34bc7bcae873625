"""One RTSP connection and the one session it may hold: the method handlers and their states.

A connection reads (DESCRIBE, SETUP, PLAY) or publishes (ANNOUNCE, SETUP with mode=record,
RECORD: publish.py), never both.

States (RFC 2326 §A.1): init, ready (tracks set up), playing. DESCRIBE or SETUP holds the
stream (Stream.acquire: an on-demand source starts and stays up) until TEARDOWN or the
connection ends. A UDP session ends after SESSION_TIMEOUT without a request or an RTCP
packet from the client; a TCP one lasts as long as its connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from gateway.hub.stream import Stream, StreamNotReady
from gateway.ingest.publish.slot import PublishRefused
from gateway.outputs.rtsp import rtcp
from gateway.outputs.rtsp.announce import SdpRefused, announced_tracks
from gateway.outputs.rtsp.basic_auth import BasicLogin, Refused
from gateway.outputs.rtsp.feed import RtspFeed
from gateway.outputs.rtsp.publish import RtspPublish
from gateway.outputs.rtsp.reader import RtpReader, TrackCounts
from gateway.outputs.rtsp.request import BadRequest, Request, Response, read_request
from gateway.outputs.rtsp.sdp import Track, describe, tracks_of
from gateway.outputs.rtsp.target import Target, content_base, parse_target
from gateway.outputs.rtsp.transport import TcpOut, UdpOut, open_udp_pair
from gateway.outputs.rtsp.transport_header import parse_transport

if TYPE_CHECKING:
    from gateway.core import Gateway

log = logging.getLogger(__name__)

SESSION_TIMEOUT = 60  # seconds: a UDP session, or a connection without a session, without a sign of life
REQUEST_TIMEOUT = 10.0  # seconds for the whole of one request once its first byte came
READY_TIMEOUT = 10.0  # seconds DESCRIBE/SETUP waits for a cold stream's first keyframe
METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, ANNOUNCE, RECORD"
PUBLISH_ROLE = "Operator"


class Connection:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bind: str):
        self.gateway = gateway
        self.reader, self.writer = reader, writer
        self.bind = bind
        peer = writer.get_extra_info("peername") or ("", 0)
        self.address = str(peer[0])
        auth = gateway.auth if gateway.settings.http.auth else None
        self.login = BasicLogin(auth, self.address)
        self.publish_login = BasicLogin(auth, self.address, PUBLISH_ROLE)
        self.publishing: RtspPublish | None = None
        self.held: Stream | None = None  # the stream DESCRIBE or SETUP acquired
        self.session_id: str | None = None
        self.feed: RtspFeed | None = None
        self.tracks: dict[int, Track] = {}
        self.out: TcpOut | UdpOut | None = None
        self.rtp_reader: RtpReader | None = None
        self.playing = False
        self.last_seen = time.monotonic()
        self._reports: asyncio.TimerHandle | None = None

    # -- the connection's life --------------------------------------------------------

    async def run(self) -> None:
        watchdog = asyncio.get_running_loop().create_task(self._watch())
        try:
            while (request := await read_request(self.reader, REQUEST_TIMEOUT, self._frame)) is not None:
                self.last_seen = time.monotonic()
                response = await self._answer(request)
                self.writer.write(response.encode(request.cseq))
                if self.rtp_reader is not None and request.method == "PLAY" and not self.playing:
                    self._play()
        except BadRequest as e:
            self.writer.write(Response(e.status).encode("0"))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            watchdog.cancel()
            self._end_publishing("the publisher's connection ended")
            self.end_session()
            self._release()
            self.writer.close()

    async def _watch(self) -> None:
        """Close a connection whose session (or lack of one) shows no life for SESSION_TIMEOUT,
        or whose publisher sent no RTP for publish.SILENCE_TIMEOUT."""
        while True:
            await asyncio.sleep(1)
            if self.publishing is not None and self.publishing.silent():
                self.close("the publisher sent no media: dropped")
                return
            tcp_session = isinstance(self.out, TcpOut)
            publishing = self.publishing is not None  # its RTP is its sign of life
            if not tcp_session and not publishing and time.monotonic() - self.last_seen > SESSION_TIMEOUT:
                log.info("rtsp %s: no keepalive for %d s, closing", self.address, SESSION_TIMEOUT)
                self.writer.close()
                return

    def close(self, reason: str) -> None:
        log.info("rtsp %s: %s", self.address, reason)
        self.writer.close()

    # -- requests ----------------------------------------------------------------------

    async def _answer(self, request: Request) -> Response:
        try:
            if request.method == "OPTIONS":
                return Response(200, {"Public": METHODS})
            handler = {
                "DESCRIBE": self._describe,
                "SETUP": self._setup,
                "PLAY": self._play_request,
                "PAUSE": self._pause,
                "TEARDOWN": self._teardown,
                "GET_PARAMETER": self._keepalive,
                "ANNOUNCE": self._announce,
                "RECORD": self._record,
            }.get(request.method)
            if handler is None:
                return Response(501, {"Public": METHODS})
            publishing = request.method == "ANNOUNCE" or self.publishing is not None
            await (self.publish_login if publishing else self.login).check(request.header("authorization"))
            in_session = ("PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "RECORD")
            if request.method in in_session and not self._same_session(request):
                return Response(454)
            return await handler(request)
        except Refused as e:
            log.info("rtsp %s: %s %s refused: %s", self.address, request.method, request.url[:200], e)
            return Response(e.status, BasicLogin.challenge() if e.status == 401 else {}, reason=str(e))
        except ValueError as e:
            log.info("rtsp %s: bad %s: %s", self.address, request.method, e)
            return Response(400)

    def _same_session(self, request: Request) -> bool:
        given = request.header("session").split(";")[0].strip()
        return not given or given == self.session_id

    def _session_header(self) -> dict[str, str]:
        return {"Session": f"{self.session_id};timeout={SESSION_TIMEOUT}"} if self.session_id else {}

    async def _stream(self, target: Target) -> Stream | Response:
        """The target's stream, held, once it has media; or the answer saying why not."""
        stream = self.gateway.stream(target.token, target.profile)
        if stream is None:
            return Response(404)
        if self.held is not stream:
            if self.session_id is not None:
                return Response(459)  # one session per connection, on one stream
            self._release()
            stream.acquire()
            self.held = stream
        try:
            await stream.wait_ready(READY_TIMEOUT)
        except StreamNotReady as e:
            log.info("rtsp %s: %s", self.address, e)
            return Response(503)
        return stream

    async def _describe(self, request: Request) -> Response:
        stream = await self._stream(parse_target(request.url))
        if isinstance(stream, Response):
            return stream
        assert stream.params is not None
        sdp = describe(stream.params, f"h5ss {stream.label}", random.getrandbits(31))
        headers = {"Content-Type": "application/sdp", "Content-Base": content_base(request.url)}
        return Response(200, headers, sdp.encode())

    async def _setup(self, request: Request) -> Response:
        if self.publishing is not None:
            return await self._setup_record(request)
        target = parse_target(request.url)
        stream = await self._stream(target)
        if isinstance(stream, Response):
            return stream
        assert stream.params is not None
        tracks = {t.index: t for t in tracks_of(stream.params)}
        index = target.track if target.track is not None else (0 if len(tracks) == 1 else None)
        if index not in tracks:
            return Response(404)
        if self.session_id is not None and not self._same_session(request):
            return Response(454)
        wanted = parse_transport(request.header("transport"))
        if wanted is None or wanted.record or (self.out is not None and wanted.tcp != isinstance(self.out, TcpOut)):
            return Response(461)
        if self.out is None:
            self.out = (
                TcpOut(self.writer.transport)
                if wanted.tcp
                else await open_udp_pair(self.bind, self.address, self._alive)
            )
        if self.session_id is None:
            self.session_id = f"{random.getrandbits(64):016X}"
            self.feed = stream.output(RtspFeed)
            self.feed.join()
        assert self.feed is not None
        self.tracks[index] = tracks[index]
        ssrc = self.feed.tracks[tracks[index].kind].ssrc
        if isinstance(self.out, TcpOut):
            channels = wanted.ports or (2 * index, 2 * index + 1)
            self.out.add_track(index, channels[0])
            transport = f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[0] + 1}"
        else:
            assert wanted.ports is not None
            self.out.add_track(index, wanted.ports[0])
            server = self.out.server_ports
            client = f"{wanted.ports[0]}-{wanted.ports[1]}"
            transport = f"RTP/AVP;unicast;client_port={client};server_port={server[0]}-{server[1]}"
        return Response(200, {"Transport": f"{transport};ssrc={ssrc:08X}", **self._session_header()})

    async def _play_request(self, request: Request) -> Response:
        if self.feed is None or self.out is None or not self.tracks:
            return Response(455)
        headers = {"Range": "npt=0.000-", **self._session_header()}
        if not self.playing:
            base = content_base(request.url)
            infos = []
            for index, track in sorted(self.tracks.items()):
                seq, rtptime = self.feed.next_batch(track.kind)
                info = f"url={base}trackID={index};seq={seq}"
                infos.append(info + (f";rtptime={rtptime}" if rtptime is not None else ""))
            headers["RTP-Info"] = ",".join(infos)
            counts = {i: TrackCounts(self.feed.tracks[t.kind].ssrc, t.clock_rate) for i, t in self.tracks.items()}
            self.rtp_reader = RtpReader(self.out, counts, self.close)
        return Response(200, headers)

    def _play(self) -> None:
        """After PLAY's answer is written: the cached GOP, then live; sender reports every few seconds."""
        assert self.feed is not None and self.rtp_reader is not None
        self.playing = True
        self.feed.add_reader(self.rtp_reader)
        self._reports = asyncio.get_running_loop().call_later(1.0, self._report)

    def _report(self) -> None:
        if self.rtp_reader is not None and self.playing:
            self.rtp_reader.report()
            self._reports = asyncio.get_running_loop().call_later(rtcp.INTERVAL, self._report)

    async def _pause(self, request: Request) -> Response:
        if self.feed is None:
            return Response(455)
        self._stop_playing()
        return Response(200, self._session_header())

    async def _teardown(self, request: Request) -> Response:
        self._end_publishing("the publisher said TEARDOWN")
        self.end_session()
        self._release()
        return Response(200)

    async def _keepalive(self, request: Request) -> Response:
        return Response(200, self._session_header())

    # -- publishing -------------------------------------------------------------------------

    async def _announce(self, request: Request) -> Response:
        if self.session_id is not None or self.held is not None or self.publishing is not None:
            return Response(455, reason="this connection already reads or publishes")
        token = parse_target(request.url).token
        try:
            announced = announced_tracks(request.body)
        except SdpRefused as e:
            log.info("rtsp %s: ANNOUNCE %s refused: %s", self.address, token[:100], e)
            return Response(e.status, reason=str(e))
        try:
            publisher = self.gateway.publisher(token, f"rtsp from {self.address}")
        except PublishRefused as e:
            log.info("rtsp %s: ANNOUNCE refused: %s", self.address, e)
            return Response(e.status, reason=str(e))
        publisher.on_kick = lambda: self.close("its source was removed")
        try:
            self.publishing = RtspPublish(publisher, announced, self.bind, self.address)
        except Exception:
            publisher.close("the gateway could not take its media")
            raise
        return Response(200)

    async def _setup_record(self, request: Request) -> Response:
        assert self.publishing is not None
        if self.session_id is not None and not self._same_session(request):
            return Response(454)
        wanted = parse_transport(request.header("transport"))
        if wanted is None:
            return Response(461, reason="publishing needs RTP/AVP/TCP interleaved or RTP/AVP unicast with mode=record")
        answer = await self.publishing.setup(request.url, wanted)
        if isinstance(answer, Response):
            return answer
        if self.session_id is None:
            self.session_id = f"{random.getrandbits(64):016X}"
        return Response(200, {"Transport": answer, **self._session_header()})

    async def _record(self, request: Request) -> Response:
        if self.publishing is None:
            return Response(455, reason="ANNOUNCE before RECORD")
        refused = self.publishing.record()
        return refused or Response(200, self._session_header())

    def _frame(self, channel: int, data: bytes) -> None:
        if self.publishing is not None:
            self.publishing.frame(channel, data)

    def _end_publishing(self, reason: str) -> None:
        if self.publishing is not None:
            self.publishing.close(reason)
            self.publishing = None
            self.session_id = None

    def _alive(self) -> None:
        self.last_seen = time.monotonic()

    # -- ending ---------------------------------------------------------------------------

    def _stop_playing(self) -> None:
        if self.feed is not None and self.rtp_reader is not None:
            self.feed.remove_reader(self.rtp_reader)
        if self._reports is not None:
            self._reports.cancel()
            self._reports = None
        self.playing = False
        self.rtp_reader = None

    def end_session(self) -> None:
        self._stop_playing()
        if self.feed is not None:
            self.feed.leave()
            self.feed = None
        if self.out is not None:
            self.out.close()
            self.out = None
        self.session_id = None
        self.tracks = {}

    def _release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None
