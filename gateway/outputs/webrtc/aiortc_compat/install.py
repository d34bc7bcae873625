"""The process-wide patches of aiortc and aioice, installed once, by the first WebRTC viewer.

aiortc is imported only then (~20 MB a gateway without WebRTC viewers never needs), and
check.py first checks every internal name the gateway relies on, logging what is missing.
- Once aiortc has started a sender for one of our tracks (`RTCRtpSender.send`: its RTCP
  task, NACK/PLI routing, SRTP session all set up), a LeanRtpSender sends the track's RTP
  (takeover.py): aiortc's per-packet coroutine chain cost ~3 % of a core per 4 Mbit/s
  peer. If the check found something missing, or the lean sender cannot take a sender
  over, the track feeds aiortc's own sender instead, and SENDER_PATH counts it.
- aiortc's encoders are replaced by PassthroughEncoder, Main and High H.264 are added to
  its codec table, H265 codecs match only their own profile and tier, abs-send-time is
  taken out (passthrough.py).
- aioice leaves out 127.0.0.1 from host candidates; it gathers on the address the gateway
  listens on (all addresses, loopback included, for 0.0.0.0), so local clients connect.
  A viewer that vanishes (tab closed, network gone) is noticed by ICE consent checks:
  every second, given up after 4 misses (~5 s), instead of aioice's 5 s x 6.
- aiortc reads its NTP clock through datetime objects (RTCP; per packet on its own RTP
  path); the same 64-bit NTP time comes straight from time.time().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aioice.ice
import aiortc.clock
import aiortc.rtcpeerconnection
import aiortc.rtcrtpsender
from aiortc import MediaStreamTrack, RTCRtpSender

from gateway.outputs.webrtc.aiortc_compat.check import check
from gateway.outputs.webrtc.aiortc_compat.passthrough import (
    add_h264_profiles,
    drop_abs_send_time,
    h265_compatible,
    passthrough_encoder,
)
from gateway.outputs.webrtc.sender_path import SENDER_PATH

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpSendParameters

    from gateway.outputs.webrtc.aiortc_compat.lean_sender import LeanRtpSender

log = logging.getLogger(__name__)

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
CONSENT_INTERVAL = 1  # seconds between ICE consent checks
CONSENT_FAILURES = 4  # missed checks before the peer is given up

_host_addresses: list[str] = []  # where aioice gathers host candidates
_installed = False


def replace(owner: object, name: str, value: object) -> None:
    """Replace `name` on a module, a class or one object: the one way aiortc and aioice are
    patched (every such name is listed in check.py)."""
    setattr(owner, name, value)


def ntp_now() -> int:
    """The 64-bit NTP time (what aiortc.clock.current_ntp_time gives, without datetime)."""
    return int((time.time() + NTP_EPOCH_OFFSET) * 2**32)


class LeanTrack(MediaStreamTrack):
    """A track that a LeanRtpSender sends once aiortc has started its sender, or that feeds
    aiortc's own sender (`recv`) when the lean one cannot."""

    lean: LeanRtpSender | None = None

    def start(self, lean: LeanRtpSender) -> None:
        """From now on, frames go out through `lean`."""
        raise NotImplementedError

    def fall_back(self) -> None:
        """aiortc's own sender sends this track."""
        raise NotImplementedError


def install(host_addresses: list[str]) -> None:
    """Check aiortc's internals and patch aiortc and aioice (once; in the event loop, where
    the check makes aiortc's objects); gather ICE host candidates on `host_addresses` from now on."""
    global _installed
    _host_addresses[:] = host_addresses
    if _installed:
        return
    _installed = True
    lean_available = check()
    replace(aiortc.rtcrtpsender, "get_encoder", passthrough_encoder)
    add_h264_profiles()
    compatible = h265_compatible(aiortc.rtcpeerconnection.is_codec_compatible)
    replace(aiortc.rtcpeerconnection, "is_codec_compatible", compatible)
    drop_abs_send_time()
    replace(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: list(_host_addresses))
    replace(aioice.ice, "CONSENT_INTERVAL", CONSENT_INTERVAL)
    replace(aioice.ice, "CONSENT_FAILURES", CONSENT_FAILURES)
    replace(aiortc.clock, "current_ntp_time", ntp_now)
    hook_sender_start(lean_available)
    SENDER_PATH.path = "lean" if lean_available else "aiortc"


def hook_sender_start(lean_available: bool) -> None:
    """When aiortc starts a sender for a LeanTrack, a LeanRtpSender takes it over."""
    aiortc_send = RTCRtpSender.send
    take_over: Callable[[RTCRtpSender, RTCRtpSendParameters], LeanRtpSender] | None = None
    if lean_available:
        # Imported only now that the check has found every name they use.
        from gateway.outputs.webrtc.aiortc_compat import takeover

        takeover.hook_rtcp_task()
        take_over = takeover.take_over

    async def send(sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        """aiortc starts the sender (RTCP, NACK, PLI routing); the track sends the RTP."""
        await aiortc_send(sender, parameters)
        track = sender.track
        if isinstance(track, LeanTrack) and track.lean is None:
            if take_over is None:
                track.fall_back()
                return
            try:
                lean = take_over(sender, parameters)
            except Exception as e:  # anything unexpected: this sender stays aiortc's, and it is said
                log.warning("a %s sender cannot go lean, aiortc's own (slower) one sends: %r", sender.kind, e)
                track.fall_back()
                return
            track.start(lean)

    replace(RTCRtpSender, "send", send)
