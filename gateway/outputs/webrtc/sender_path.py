"""Which RTP sender the gateway's WebRTC peers use, for GetRunInfo.

Peers send through the gateway's lean sender (aiortc_compat/lean_sender.py) when the
aiortc, aioice and pylibsrtp internals it relies on are there, else through aiortc's own,
several times slower. This module imports none of them: aiortc (~20 MB) loads only with
the first WebRTC viewer, and GetRunInfo must not load it. The state is the process's, as
the patches that decide it are.
"""

from __future__ import annotations


class SenderPath:
    """`path`: "idle" until the first WebRTC viewer installs the patches, then "lean"
    (every internal the lean sender needs is there) or "aiortc" (some missing: logged at
    install); `fallbacks`: peers that went through aiortc's sender all the same."""

    def __init__(self) -> None:
        self.path = "idle"
        self.fallbacks = 0

    def run_info(self) -> dict[str, str | int]:
        return {"strWebRtcPath": self.path, "nWebRtcFallbacks": self.fallbacks}


SENDER_PATH = SenderPath()
