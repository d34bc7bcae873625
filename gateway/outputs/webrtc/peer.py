"""One WebRTC viewer: an aiortc peer connection fed by the stream's RtcFeed, without re-encoding.

Per stream, one RtcFeed (feed.py) turns each frame into RTP payloads once and hands the
same RtpFrame to every peer's tracks; per peer only the RTP header fields, SRTP and the
system call remain, done by its LeanRtpSender (aiortc_compat/lean_sender.py) in one
synchronous loop per frame as the frame arrives. How aiortc and aioice are bent to this
is all in aiortc_compat/ (install.py says what and why).

Here: the peer's tracks (a bounded queue, the hub's back-pressure policy, GOP replays),
the stream it sends (the camera's, or its H.264 rendition, by the codec negotiated:
codec_choice.py), the DTLS role, the ICE host addresses, and the connection's life.
aiortc would answer a picture-loss indication (PLI/FIR) by asking its encoder for a
keyframe, which a camera cannot give: each peer answers it from the GOP cache instead
(PeerVideoTrack.resync), replayed with compressed timestamps so the decoder catches up at
once instead of adding the GOP's age to the latency. New peers start the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiortc.sdp  # its names are read when used: a missing one is named by check.py, not an ImportError
from aiortc import (
    MediaStreamError,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError

from gateway.config.settings import IceServer
from gateway.hub.backpressure import KeyframeSkip
from gateway.hub.packet import StreamParams
from gateway.hub.rendition import for_client
from gateway.hub.stream import Stream
from gateway.outputs.webrtc.aiortc_compat.connection import answer_keyframe_requests, take_server_role
from gateway.outputs.webrtc.aiortc_compat.install import LeanTrack
from gateway.outputs.webrtc.aiortc_compat.passthrough import H265, PeerItem, with_h265_level
from gateway.outputs.webrtc.codec_choice import level_id
from gateway.outputs.webrtc.feed import RtcFeed
from gateway.outputs.webrtc.rtp_frame import RtpFrame
from gateway.outputs.webrtc.sender_path import SENDER_PATH
from gateway.tasks import background

if TYPE_CHECKING:  # imported by install.py only when aiortc has what it uses
    from gateway.outputs.webrtc.aiortc_compat.lean_sender import LeanRtpSender

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 75  # ~3 s of video: a peer further behind skips to the next keyframe
RESYNC_MIN_INTERVAL = 1.0  # seconds between two GOP replays for one peer


def audio_preferences(params: StreamParams) -> list[RTCRtpCodecCapability]:
    """The camera's G.711 as it is; anything else (AAC) goes out as Opus."""
    mime = f"audio/{params.g711}" if params.g711 else "audio/opus"
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime]


def client_description(sdp: str, kind: str) -> RTCSessionDescription:
    """A client's offer or answer, parsed first: aiortc's parser meets malformed SDP with
    AssertionError, StopIteration, IndexError... which would escape as a server error."""
    try:
        aiortc.sdp.SessionDescription.parse(sdp)
    except Exception as e:
        raise ValueError(f"malformed SDP ({type(e).__name__})") from None
    return RTCSessionDescription(sdp, kind)


class PeerTrack(LeanTrack):
    """One peer's view of a stream's frames, sent as they come by its LeanRtpSender.

    Until aiortc starts the sender (or for good, if the lean sender cannot be used) the
    frames wait in a bounded queue, which aiortc's own sender reads through recv(). A full
    queue is the hub's back-pressure policy at work: video drops it and skips to the next
    keyframe; audio frames stand alone, so audio just drops its oldest.
    """

    def __init__(self, kind: str, on_fallback: Callable[[], None]):
        super().__init__()
        self.kind = kind
        self.queue: deque[PeerItem] = deque()
        self.wakeup = asyncio.Event()
        self.lean: LeanRtpSender | None = None
        self.skip = KeyframeSkip()
        self.on_fallback = on_fallback

    def start(self, lean: LeanRtpSender) -> None:
        """From now on frames go out through `lean`, at once; the queued ones first."""
        self.lean = lean
        self._flush(lean)

    def fall_back(self) -> None:
        self.on_fallback()

    @property
    def bytes_sent(self) -> int:
        """The SRTP bytes its lean sender sent (what aiortc's own sender sends is not counted)."""
        return self.lean.sent_bytes if self.lean is not None else 0

    def push(self, frame: RtpFrame, timestamp: int) -> None:
        if len(self.queue) >= MAX_QUEUED_FRAMES:
            if self.kind == "audio":
                self.queue.popleft()
            else:
                self._fall_behind()
        if self.skip.skipping and not self.skip.admit(frame.keyframe):
            return
        lean = self.lean
        if lean is not None and not self.queue:
            self._send(lean, frame, timestamp)  # the usual case: out at once, nothing waits
            return
        self.queue.append(PeerItem(frame, timestamp))
        if lean is not None:
            self._flush(lean)
        else:
            self.wakeup.set()

    def _fall_behind(self) -> None:
        """Drop what waits and everything up to the next keyframe."""
        self.queue.clear()
        self.skip.fall_behind()

    def _flush(self, lean: LeanRtpSender) -> None:
        while self.queue:
            item = self.queue.popleft()
            self._send(lean, item.frame, item.timestamp)

    def _send(self, lean: LeanRtpSender, frame: RtpFrame, timestamp: int) -> None:
        if self.readyState != "live":
            return
        try:
            taken = lean.send(frame, timestamp)
        except Exception:  # one peer's failure must not reach the stream and its other viewers
            log.exception("%s RTP sender failed: the track stops, as aiortc's would", self.kind)
            self.stop()
            return
        if not taken and self.kind == "video":
            self._fall_behind()  # the socket cannot keep up

    async def recv(self) -> PeerItem:  # type: ignore[override]
        """aiortc's sender loop: served frames only while the lean sender is not started."""
        while not self.queue or self.lean is not None:
            if self.readyState != "live":
                raise MediaStreamError
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.queue.popleft()

    def stop(self) -> None:
        super().stop()
        self.wakeup.set()


class PeerVideoTrack(PeerTrack):
    """Video for one peer: its own RTP timestamp offset, so GOP replays stay in order."""

    def __init__(self, on_fallback: Callable[[], None]):
        super().__init__("video", on_fallback)
        self.feed: RtcFeed | None = None  # the feed of the stream the peer sends, once chosen
        self.offset: int | None = None  # peer timestamp = stream timestamp + offset
        self.last_timestamp = 0
        self.last_resync = 0.0

    def send(self, frame: RtpFrame) -> None:
        if self.offset is None:
            if not frame.keyframe:
                return  # a peer starts at a keyframe
            self.offset = self.last_timestamp + 1 - frame.timestamp
        timestamp = frame.timestamp + self.offset
        if timestamp <= self.last_timestamp:
            self.offset += self.last_timestamp + 1 - timestamp
            timestamp = self.last_timestamp + 1
        self.last_timestamp = timestamp
        self.push(frame, timestamp)

    def resync(self) -> None:
        """Replay the cached GOP from its keyframe, one tick apart, then go on live."""
        now = time.monotonic()
        if self.feed is None:
            return
        gop = self.feed.gop.items
        if now - self.last_resync < RESYNC_MIN_INTERVAL or not gop:
            return
        self.last_resync = now
        self.queue.clear()
        self.skip.restart()  # the replay starts at its keyframe
        base = self.last_timestamp + 1
        for i, frame in enumerate(gop):
            self.push(frame, base + i)
        self.last_timestamp = base + len(gop) - 1
        self.offset = self.last_timestamp - gop[-1].timestamp


def take_dtls_server_role(pc: RTCPeerConnection) -> None:
    """Answer an `actpass` offer as the DTLS server (`a=setup:passive`), so we pick the SRTP profile.

    The DTLS server chooses among the profiles the client lists, in its own order;
    aiortc's order puts AES-GCM first. Chromium lists AES-GCM but, as the server, picks
    AES-CM + HMAC-SHA1 (its own order puts GCM last): ~2.0 µs per 1.2 KB packet in
    libsrtp on this project's box against ~1.1-1.3 µs for AES-GCM. A client that lists
    no GCM gets AES-CM all the same. aiortc answers `active` for `actpass` unless told
    otherwise; an offer that is itself `active` or `passive` keeps the role aiortc
    derived from it.
    """
    remote = pc.remoteDescription
    offered = aiortc.sdp.SessionDescription.parse(remote.sdp).media if remote else []
    if not offered or any(media.dtls is None or media.dtls.role != "auto" for media in offered):
        return
    for transceiver in pc.getTransceivers():
        take_server_role(transceiver.receiver.transport)


def ice_host_addresses(bind: str) -> list[str]:
    """Host candidates: the address we listen on, or every IPv4 address (with loopback)."""
    if bind not in ("0.0.0.0", ""):
        return [bind]
    import ifaddr

    return [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if isinstance(ip.ip, str)]


class RtcPeer:
    """One WebRTC viewer: an aiortc connection fed by the RtcFeed of the stream it sends.

    It is made for the stream a client asks for (`stream`) and holds it (acquire/release)
    from setup on; once the video codec is known (before a WHEP answer, or from the h5s
    player's answer) it sends `stream` itself or its H.264 rendition (`serve`), and then
    holds exactly that one. It cleans itself up when the connection fails, closes, or
    never connects.
    """

    CONNECT_TIMEOUT = 20.0

    def __init__(self, peer_id: str, stream: Stream, ice_servers: tuple[IceServer, ...], enable_audio: bool):
        self.id = peer_id
        self.stream = stream  # the stream asked for (its token names a WHEP session)
        self.held: Stream | None = None  # the stream held: `stream` until served, then the one sent
        self.feed: RtcFeed | None = None  # the feed of the stream sent, once chosen
        self.params: StreamParams | None = None  # the parameters of `stream`
        self.ice_servers = ice_servers
        self.enable_audio = enable_audio
        self.pc: RTCPeerConnection | None = None
        self.video: PeerVideoTrack | None = None
        self.audio: PeerTrack | None = None
        self.connected = False
        self.closed = asyncio.Event()
        self.owner: str | None = None  # the id of the session that made it (WHEP DELETE asks for it)
        self.fell_back = False  # a sender of this peer is aiortc's own (counted once in SENDER_PATH)
        self._timeout: asyncio.TimerHandle | None = None

    async def setup(self, params: StreamParams, video_codecs: list[RTCRtpCodecCapability]) -> None:
        """Create the connection with video senders of `video_codecs` (best first), and the
        camera's G.711 or Opus; `params` are the stream's."""
        servers = [
            RTCIceServer(
                urls=s.urls if isinstance(s.urls, str) else list(s.urls), username=s.username, credential=s.credential
            )
            for s in self.ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.params = params
        self._hold(self.stream)
        self.video = PeerVideoTrack(self._fall_back)
        transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
        transceiver.setCodecPreferences(video_codecs)
        answer_keyframe_requests(transceiver.sender, self.video.resync)  # PLI/FIR: replay the cached GOP
        if self.enable_audio and (params.g711 or params.audio):
            self.audio = PeerTrack("audio", self._fall_back)
            self.pc.addTransceiver(self.audio, direction="sendonly").setCodecPreferences(audio_preferences(params))
        self.pc.on("connectionstatechange", self._on_state)
        self._timeout = asyncio.get_running_loop().call_later(self.CONNECT_TIMEOUT, self._connect_timeout)

    def _hold(self, stream: Stream) -> None:
        """Hold `stream`, and let go of the one held before (if another)."""
        if stream is self.held:
            return
        stream.acquire()
        if self.held is not None:
            self.held.release()
        self.held = stream

    def serve(self, stream: Stream) -> None:
        """Send `stream` (`self.stream` or its rendition): hold it, and join its feed once connected."""
        assert self.video is not None and self.feed is None
        self._hold(stream)
        self.feed = self.video.feed = stream.output(RtcFeed)
        self._join_feed()

    def video_codec(self) -> str | None:
        """The MIME type of the video codec negotiated (the one sent), None before."""
        assert self.pc is not None
        codecs = self.pc.getTransceivers()[0]._codecs
        return codecs[0].mimeType if codecs else None

    def _join_feed(self) -> None:
        """Once connected and the stream chosen, frames flow."""
        if self.connected and self.feed is not None and self.video is not None and not self.closed.is_set():
            self.feed.add_peer(self.video, self.audio)

    def _on_state(self) -> None:
        assert self.pc is not None
        state = self.pc.connectionState
        log.debug("peer %s: %s", self.id, state)
        if state == "connected" and not self.connected:
            if self._timeout:
                self._timeout.cancel()
            self.connected = True
            self._join_feed()
        elif state in ("failed", "closed"):
            background(self.close())

    def _fall_back(self) -> None:
        """A track of this peer goes through aiortc's own sender."""
        if not self.fell_back:
            self.fell_back = True
            SENDER_PATH.fallbacks += 1

    def _connect_timeout(self) -> None:
        if self.pc is not None and self.pc.connectionState != "connected":
            log.info("peer %s: no connection within %.0f s", self.id, self.CONNECT_TIMEOUT)
            background(self.close())

    async def answer(self, offer_sdp: str) -> str:
        """WHEP: the client offers, we answer (ValueError: no codec in common)."""
        assert self.pc is not None
        try:
            await self.pc.setRemoteDescription(client_description(offer_sdp, "offer"))
        except OperationError as e:
            raise ValueError(str(e)) from None
        take_dtls_server_role(self.pc)
        await self.pc.setLocalDescription(self._with_camera_level(await self.pc.createAnswer()))
        return self.pc.localDescription.sdp

    async def offer(self) -> str:
        """h5s RTC signalling: the server offers."""
        assert self.pc is not None
        await self.pc.setLocalDescription(self._with_camera_level(await self.pc.createOffer()))
        return self.pc.localDescription.sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        """h5s: the client's answer, whose video codec picks the stream sent: the camera's
        own, or its H.264 rendition (NoRendition: the client takes no H.265, and there is
        none; ValueError: no codec in common)."""
        assert self.pc is not None and self.params is not None
        try:
            await self.pc.setRemoteDescription(client_description(answer_sdp, "answer"))
        except OperationError as e:
            for_client(self.stream, self.params, takes_hevc=False)  # NoRendition says why, for an H.265 stream
            raise ValueError(str(e)) from None
        if self.feed is None:
            self.serve(for_client(self.stream, self.params, takes_hevc=self.video_codec() == H265))

    def _with_camera_level(self, description: RTCSessionDescription) -> RTCSessionDescription:
        """Our offer or answer, its H265 `level-id` the camera's (RFC 7798 §7.1)."""
        video = self.params.video if self.params is not None else None
        if video is None or not video.hevc:
            return description
        return RTCSessionDescription(with_h265_level(description.sdp, level_id(video)), description.type)

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        assert self.pc is not None
        if not candidate:
            return
        if not isinstance(sdp_mid, str | None) or not (
            sdp_mline_index is None or (type(sdp_mline_index) is int and 0 <= sdp_mline_index < 1024)
        ):
            raise ValueError("sdpMid must be a string and sdpMLineIndex a small number")
        try:
            parsed = aiortc.sdp.candidate_from_sdp(
                candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate
            )
        except Exception as e:  # aiortc's parser meets malformed input with assert, IndexError...
            raise ValueError(f"malformed candidate ({type(e).__name__})") from None
        parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._timeout:
            self._timeout.cancel()
        if self.video is not None:
            if self.feed is not None:
                self.feed.remove_peer(self.video, self.audio)
            self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.pc is not None:
            await self.pc.close()
        if self.held is not None:
            self.held.release()
            self.held = None
