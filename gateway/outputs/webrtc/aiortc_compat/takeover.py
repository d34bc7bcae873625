"""How a LeanRtpSender takes over a sender aiortc has just started.

- RTP: the track sends its frames through the lean sender (lean_sender.py). aiortc's own
  RTP loop still runs and waits on the track (recv), so aiortc stops it as usual.
- NACK: aiortc's RTCP handling calls the sender's `_retransmit`, which the lean sender
  answers from its history.
- Incoming RTCP is read as it arrives by RtcpReader (rtcp_reader.py), which leaves aiortc
  only what the gateway acts on (NACK, PLI, FIR, BYE).
- Outgoing RTCP: sender reports go out with the frames (lean_sender.py), so aiortc's RTCP
  task (`_run_rtcp`) only says it started and, when aiortc stops the sender, sends the BYE.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RtcpByePacket

from gateway.outputs.webrtc.aiortc_compat.install import LeanTrack, replace
from gateway.outputs.webrtc.aiortc_compat.lean_sender import LeanRtpSender
from gateway.outputs.webrtc.aiortc_compat.rtcp_reader import RtcpReader


class RtcpTaskEvents(Protocol):
    """The private events aiortc's RTCP task sets (RTCRtpSender.stop waits on them)."""

    _RTCRtpSender__rtcp_started: asyncio.Event
    _RTCRtpSender__rtcp_exited: asyncio.Event


def take_over(sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> LeanRtpSender:
    """A lean sender for `sender`, answering its NACKs, its transport's RTCP read as it comes."""
    lean = LeanRtpSender(sender, parameters)
    RtcpReader.install(sender.transport)
    replace(sender, "_retransmit", lean.retransmit)  # on this sender only
    return lean


def hook_rtcp_task() -> None:
    """aiortc's RTCP task, for a lean sender only its start and, when aiortc stops the sender, the BYE."""
    aiortc_run_rtcp = RTCRtpSender._run_rtcp

    async def run_rtcp(sender: RTCRtpSender) -> None:
        track = sender.track
        if not (isinstance(track, LeanTrack) and track.lean is not None):
            await aiortc_run_rtcp(sender)
            return
        events = cast(RtcpTaskEvents, sender)
        events._RTCRtpSender__rtcp_started.set()
        try:
            await asyncio.get_running_loop().create_future()  # until aiortc cancels it
        except asyncio.CancelledError:
            pass
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        events._RTCRtpSender__rtcp_exited.set()

    replace(RTCRtpSender, "_run_rtcp", run_rtcp)
