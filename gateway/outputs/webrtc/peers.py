"""The gateway's WebRTC peers: made for a ready stream, set up, and forgotten once closed.

Both signalling fronts (signalling.py, whep.py) make their peers here. aiortc is imported
on the first WebRTC viewer (~20 MB a gateway without one never needs), and its patches
installed then (aiortc_compat/install.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.auth import Session
from gateway.core import Gateway
from gateway.hub.stream import Stream
from gateway.tasks import background

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import RtcPeer

DISABLED = "WebRTC is turned off (webrtc.bWebRTCSink)"


async def new_peer(gw: Gateway, stream: Stream, session: Session | None, audio: bool = True) -> RtcPeer:
    """A set-up peer for a ready stream (`audio`: the client takes audio too), owned by
    `session` (None: logins are off) and closed when it ends; StreamNotReady if the
    source gives no video."""
    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.peer import RtcPeer, ice_host_addresses

    install(ice_host_addresses(gw.settings.webrtc.bind))
    stream.acquire()  # hold the stream while waiting, so an on-demand source starts
    try:
        params = await stream.wait_ready()
    finally:
        stream.release()
    peer = RtcPeer(uuid.uuid4().hex, stream, gw.settings.webrtc.ice_servers, stream.conf.enable_audio and audio)
    peer.owner = None if session is None else session.id
    await peer.setup(params)
    gw.rtc_peers[peer.id] = peer
    unregister = gw.auth.on_end(session, lambda _: background(peer.close()))
    background(_forget_when_closed(gw, peer, unregister))
    return peer


async def _forget_when_closed(gw: Gateway, peer: RtcPeer, unregister: Callable[[], None]) -> None:
    await peer.closed.wait()
    gw.rtc_peers.pop(peer.id, None)
    unregister()
