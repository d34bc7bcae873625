"""WebRTC output: the camera's H.264 (and G.711) sent to aiortc peers without re-encoding.

Per stream, one RtcFeed turns each frame into RTP payloads once (rtp_h264.packetize,
SPS+PPS ahead of every IDR) and hands the same RtpFrame to every peer; its packets are
laid out once for all peers alike, so per peer only the RTP header fields, SRTP and the
system call remain, done by LeanRtpSender (rtp_sender.py) in one synchronous loop per
frame as the frame arrives.

How aiortc is bent to this, in one place (`install_passthrough`):
- Once aiortc has started a sender for one of our tracks (`RTCRtpSender.send`: its RTCP
  task, NACK/PLI routing, SRTP session all set up), the track sends its own RTP through a
  LeanRtpSender, and NACKs are answered from that sender's history. aiortc's per-packet
  coroutine chain cost ~3 % of a core per 4 Mbit/s peer. aiortc's own RTP loop still runs
  and waits on the track (recv), so aiortc stops it as usual; if aiortc's or aioice's
  internals are not as LeanRtpSender expects, the track serves that loop instead. The
  peer's incoming RTCP is read as it arrives by RtcpReader (rtcp_reader.py), which leaves
  aiortc only what the gateway acts on (NACK, PLI, FIR, BYE); sender reports go out with
  the frames (rtp_sender.py), so aiortc's RTCP task (`run_rtcp`) only sends the final BYE.
- aiortc's sender asks `get_encoder(codec)` for an encoder and calls `encoder.pack(item)`
  for anything a track returns that is not a decoded Frame (only on that fallback path).
  We hand it PassthroughEncoder, whose pack() returns the ready payloads: no encoder is
  ever created.
- aiortc only advertises H.264 Constrained Baseline/Baseline (42001f/42e01f) and its
  negotiation compares profiles, so a camera in Main or High profile would be refused or
  mislabelled. We add Main (4d001f) and High (64001f) to its codec table, and each peer
  prefers the profile the camera really sends, or the nearest one the browser offers
  (`video_preferences`).
- aiortc offers the abs-send-time header extension for video; it is taken out (it only
  serves the browser's bandwidth estimate, which a gateway that never re-encodes cannot
  act on), so a frame's packets are the same for every peer but for the header fields.
- aioice leaves out 127.0.0.1 from host candidates; we gather on the address the gateway
  listens on (all addresses, loopback included, for 0.0.0.0), so local clients connect.
  Its consent checks are made faster, so a vanished peer is cleaned up in ~5 s.
- aiortc would answer a picture-loss indication (PLI/FIR) by asking its encoder for a
  keyframe, which a camera cannot give. Each peer answers it from the GOP cache instead
  (PeerVideoTrack.resync), replayed with compressed timestamps so the decoder catches up
  at once instead of adding the GOP's age to the latency. New peers start the same way.

Audio: the camera's G.711 goes out as it is; AAC sources are transcoded to Opus once per
stream, in a worker thread, only while peers watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

import aioice.ice
import aiortc.clock
import aiortc.rtcrtpsender
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCSessionDescription,
)
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpSendParameters
from aiortc.rtp import RtcpByePacket
from aiortc.sdp import SessionDescription, candidate_from_sdp

from gateway.config.settings import IceServer
from gateway.hub.packet import StreamParams
from gateway.hub.stream import Stream
from gateway.outputs.webrtc.aiortc_compat.lean_sender import LeanRtpSender, ntp_now
from gateway.outputs.webrtc.aiortc_compat.rtcp_reader import RtcpReader
from gateway.outputs.webrtc.feed import RtcFeed
from gateway.outputs.webrtc.rtp_frame import RtpFrame
from gateway.tasks import background

log = logging.getLogger(__name__)

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MAX_QUEUED_FRAMES = 75  # ~3 s of video: a peer further behind skips to the next keyframe
RESYNC_MIN_INTERVAL = 1.0  # seconds between two GOP replays for one peer
# Camera profile_idc -> profile-level-ids to offer/accept, best first.
PROFILE_ORDER = {
    100: ["64001f", "4d001f", "42e01f", "42001f"],
    77: ["4d001f", "64001f", "42e01f", "42001f"],
    66: ["42e01f", "42001f", "4d001f", "64001f"],
}


@dataclass(frozen=True, slots=True)
class PeerItem:
    """What a peer's track gives aiortc: a shared frame, this peer's RTP timestamp."""

    frame: RtpFrame
    timestamp: int


class PassthroughEncoder:
    """Stands in for aiortc's encoders: the payloads are already made."""

    def pack(self, item: PeerItem) -> tuple[list[bytes], int]:
        return item.frame.payloads, item.timestamp

    def encode(self, frame, force_keyframe: bool = False):
        raise RuntimeError("h5ss never re-encodes video or audio for WebRTC")


_installed_addresses: list[str] | None = None


def install_passthrough(host_addresses: list[str]) -> None:
    """Point aiortc at PassthroughEncoder, Main/High H.264 and our ICE addresses (once)."""
    global _installed_addresses
    if _installed_addresses is None:
        aiortc.rtcrtpsender.get_encoder = lambda codec: PassthroughEncoder()
        payload_type = max(c.payloadType for c in CODECS["video"]) + 1
        for profile in ("4d001f", "64001f"):
            CODECS["video"] += [
                RTCRtpCodecParameters(
                    mimeType="video/H264",
                    clockRate=90000,
                    payloadType=payload_type,
                    rtcpFeedback=[RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")],
                    parameters={"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": profile},
                ),
                RTCRtpCodecParameters(
                    mimeType="video/rtx",
                    clockRate=90000,
                    payloadType=payload_type + 1,
                    parameters={"apt": payload_type},
                ),
            ]
            payload_type += 2
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(_installed_addresses or [])
        # abs-send-time: see the module docstring.
        HEADER_EXTENSIONS["video"][:] = [e for e in HEADER_EXTENSIONS["video"] if e.uri != ABS_SEND_TIME]
        # aiortc reads its NTP clock through datetime objects (RTCP; per packet on its own
        # RTP path); the same 64-bit NTP time straight from time.time() costs far less.
        aiortc.clock.current_ntp_time = ntp_now
        aiortc_send = aiortc.RTCRtpSender.send

        async def send(sender: aiortc.RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
            """aiortc starts the sender (RTCP, NACK, PLI routing); our track sends the RTP."""
            await aiortc_send(sender, parameters)
            track = sender.track
            if isinstance(track, PeerTrack) and track.lean is None:
                lean = LeanRtpSender.for_sender(sender, parameters)
                if lean is not None:
                    sender._retransmit = lean.retransmit  # NACK: from the lean sender's history
                    RtcpReader.install(sender.transport)
                    track.start(lean)
                else:
                    log.warning("aiortc/aioice internals not as expected: RTP goes through aiortc")

        aiortc.RTCRtpSender.send = send
        aiortc_run_rtcp = aiortc.RTCRtpSender._run_rtcp

        async def run_rtcp(sender: aiortc.RTCRtpSender) -> None:
            """aiortc's RTCP task; for a lean sender (reports go out with its frames) only
            its start and, when aiortc stops the sender, the BYE."""
            track = sender.track
            if not (isinstance(track, PeerTrack) and track.lean is not None):
                await aiortc_run_rtcp(sender)
                return
            sender._RTCRtpSender__rtcp_started.set()
            try:
                await asyncio.get_running_loop().create_future()  # until aiortc cancels it
            except asyncio.CancelledError:
                pass
            await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
            sender._RTCRtpSender__rtcp_exited.set()

        aiortc.RTCRtpSender._run_rtcp = run_rtcp
        # A viewer that vanishes (tab closed, network gone) is noticed by ICE consent
        # checks: every second, given up after 4 misses, instead of aioice's 5 s x 6.
        aioice.ice.CONSENT_INTERVAL = 1
        aioice.ice.CONSENT_FAILURES = 4
    _installed_addresses = host_addresses


def video_preferences(params: StreamParams) -> list[RTCRtpCodecCapability]:
    """H.264 codecs (packetization-mode 1) in the order to negotiate them for this camera.

    The camera's own profile comes first. A browser that does not offer it (Debian's
    Chromium offers no plain High, 64001f) gets the nearest profile it does offer; its
    decoder takes the camera's real bitstream all the same, since profiles only add
    tools and the decoders browsers use implement them all.
    """
    profile_idc = params.video.sps[1] if params.video else 66
    order = PROFILE_ORDER.get(profile_idc, PROFILE_ORDER[66])
    h264_codecs = [
        c
        for c in aiortc.RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType == "video/H264" and c.parameters.get("packetization-mode") == "1"
    ]
    h264_codecs.sort(key=lambda c: order.index(c.parameters.get("profile-level-id", "42e01f")))
    return h264_codecs


def audio_preferences(params: StreamParams) -> list[RTCRtpCodecCapability]:
    """The camera's G.711 as it is; anything else (AAC) goes out as Opus."""
    mime = f"audio/{params.g711}" if params.g711 else "audio/opus"
    return [c for c in aiortc.RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime]


class PeerTrack(MediaStreamTrack):
    """One peer's view of a stream's frames, sent as they come by its LeanRtpSender.

    Until aiortc starts the sender (or for good, if the lean path is not available) the
    frames wait in a bounded queue, which aiortc's own sender reads through recv().
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.queue: deque[PeerItem] = deque()
        self.wakeup = asyncio.Event()
        self.lean: LeanRtpSender | None = None
        self.skipping = False
        self.skips = 0

    def start(self, lean: LeanRtpSender) -> None:
        """From now on frames go out through `lean`, at once; the queued ones first."""
        self.lean = lean
        self._flush()

    def push(self, frame: RtpFrame, timestamp: int) -> None:
        if len(self.queue) >= MAX_QUEUED_FRAMES:
            if self.kind == "audio":  # audio frames stand alone: just drop the oldest
                self.queue.popleft()
            else:
                self._skip()
        if self.skipping and not frame.keyframe:
            return
        self.skipping = False
        if self.lean is not None and not self.queue:
            self._send(frame, timestamp)  # the usual case: out at once, nothing waits
            return
        self.queue.append(PeerItem(frame, timestamp))
        if self.lean is not None:
            self._flush()
        else:
            self.wakeup.set()

    def _skip(self) -> None:
        """Drop what waits and everything up to the next keyframe."""
        self.queue.clear()
        self.skipping = True
        self.skips += 1

    def _flush(self) -> None:
        while self.queue:
            item = self.queue.popleft()
            self._send(item.frame, item.timestamp)

    def _send(self, frame: RtpFrame, timestamp: int) -> None:
        if self.readyState != "live":
            return
        try:
            taken = self.lean.send(frame, timestamp)
        except Exception:  # one peer's failure must not reach the stream and its other viewers
            log.exception("%s RTP sender failed: the track stops, as aiortc's would", self.kind)
            self.stop()
            return
        if not taken and self.kind == "video":
            self._skip()  # the socket cannot keep up

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

    def __init__(self, feed: RtcFeed):
        super().__init__("video")
        self.feed = feed
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
        gop = self.feed.gop.items
        if now - self.last_resync < RESYNC_MIN_INTERVAL or not gop:
            return
        self.last_resync = now
        self.queue.clear()
        self.skipping = False
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
    libsrtp on this project's box against ~1.1-1.3 µs for AES-GCM. A client that lists no GCM gets AES-CM all the same. aiortc
    answers `active` for `actpass` unless told otherwise; an offer that is itself
    `active` or `passive` keeps the role aiortc derived from it.
    """
    remote = pc.remoteDescription
    offered = SessionDescription.parse(remote.sdp).media if remote else []
    if not offered or any(media.dtls is None or media.dtls.role != "auto" for media in offered):
        return
    for transceiver in pc.getTransceivers():
        transceiver.receiver.transport._set_role("server")


def ice_host_addresses(bind: str) -> list[str]:
    """Host candidates: the address we listen on, or every IPv4 address (with loopback)."""
    if bind not in ("0.0.0.0", ""):
        return [bind]
    import ifaddr

    return [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if isinstance(ip.ip, str)]


class RtcPeer:
    """One WebRTC viewer: an aiortc connection fed by the stream's RtcFeed.

    Holds the stream (acquire/release) for its lifetime and cleans itself up when the
    connection fails, closes, or never connects.
    """

    CONNECT_TIMEOUT = 20.0

    def __init__(self, peer_id: str, stream: Stream, ice_servers: tuple[IceServer, ...], enable_audio: bool):
        self.id = peer_id
        self.stream = stream
        self.feed = stream.output(RtcFeed)
        self.ice_servers = ice_servers
        self.enable_audio = enable_audio
        self.pc: RTCPeerConnection | None = None
        self.video: PeerVideoTrack | None = None
        self.audio: PeerTrack | None = None
        self.closed = asyncio.Event()
        self._timeout: asyncio.TimerHandle | None = None

    async def setup(self, params: StreamParams) -> None:
        """Create the connection with H.264 (camera profile first) and G.711 senders."""
        servers = [
            RTCIceServer(
                urls=s.urls if isinstance(s.urls, str) else list(s.urls), username=s.username, credential=s.credential
            )
            for s in self.ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.stream.acquire()
        self.video = PeerVideoTrack(self.feed)
        transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
        transceiver.setCodecPreferences(video_preferences(params))
        transceiver.sender._send_keyframe = self.video.resync  # PLI/FIR: replay the cached GOP
        if self.enable_audio and (params.g711 or params.audio):
            self.audio = PeerTrack("audio")
            self.pc.addTransceiver(self.audio, direction="sendonly").setCodecPreferences(audio_preferences(params))
        self.pc.on("connectionstatechange", self._on_state)
        self._timeout = asyncio.get_running_loop().call_later(self.CONNECT_TIMEOUT, self._connect_timeout)

    def _on_state(self) -> None:
        assert self.pc is not None
        state = self.pc.connectionState
        log.debug("peer %s: %s", self.id, state)
        if state == "connected":
            if self._timeout:
                self._timeout.cancel()
            self.feed.add_peer(self.video, self.audio)
        elif state in ("failed", "closed"):
            background(self.close())

    def _connect_timeout(self) -> None:
        if self.pc is not None and self.pc.connectionState != "connected":
            log.info("peer %s: no connection within %.0f s", self.id, self.CONNECT_TIMEOUT)
            background(self.close())

    async def answer(self, offer_sdp: str) -> str:
        """WHEP: the client offers, we answer."""
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        take_dtls_server_role(self.pc)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def offer(self) -> str:
        """h5s RTC signalling: the server offers."""
        assert self.pc is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        assert self.pc is not None
        if not candidate:
            return
        parsed = candidate_from_sdp(candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate)
        parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._timeout:
            self._timeout.cancel()
        if self.video is not None:
            self.feed.remove_peer(self.video, self.audio)
            self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.pc is not None:
            await self.pc.close()
            self.stream.release()
