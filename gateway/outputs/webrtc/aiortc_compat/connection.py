"""What a peer sets on its own aiortc objects, through their private names (check.py lists them).

- A picture-loss indication (PLI/FIR): aiortc would ask its encoder for a keyframe, which
  a camera cannot give; the peer answers it itself (from the GOP cache).
- The DTLS role: aiortc answers `active` to an `actpass` offer and has no public way to
  choose; the peer takes the server role to pick the SRTP profile (peer.py).
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCDtlsTransport, RTCRtpSender

from gateway.outputs.webrtc.aiortc_compat.install import replace


def answer_keyframe_requests(sender: RTCRtpSender, answer: Callable[[], None]) -> None:
    """Have `answer` called, instead of aiortc's encoder, when the peer asks `sender` for a keyframe."""
    replace(sender, "_send_keyframe", answer)  # on this sender only


def take_server_role(transport: RTCDtlsTransport) -> None:
    """Make `transport` the DTLS server (`a=setup:passive` in the answer)."""
    transport._set_role("server")
