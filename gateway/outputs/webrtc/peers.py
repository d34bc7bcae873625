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
from gateway.hub.rendition import for_client
from gateway.hub.stream import Stream
from gateway.tasks import background

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import RtcPeer

DISABLED = "WebRTC is turned off (webrtc.bWebRTCSink)"


async def new_peer(
    gw: Gateway, stream: Stream, session: Session | None, audio: bool = True, offer: str | None = None
) -> RtcPeer:
    """A set-up peer for a ready stream (`audio`: the client takes audio too), owned by
    `session` (None: logins are off) and closed when it ends; StreamNotReady if the
    source gives no video.

    `offer`: the client's offer (WHEP), which says whether it takes H.265, and so which
    stream the peer sends: the stream or its H.264 rendition (NoRendition if it has none).
    None: the peer offers (h5s), and the client's answer will say (RtcPeer.accept_answer)."""
    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.codec_choice import offers_h265, video_codecs
    from gateway.outputs.webrtc.peer import RtcPeer, ice_host_addresses

    install(ice_host_addresses(gw.settings.webrtc.bind))
    stream.acquire()  # hold the stream while waiting, so an on-demand source starts
    try:
        params = await stream.wait_ready()
    finally:
        stream.release()
    takes_hevc = None if offer is None else offers_h265(offer)
    codecs = video_codecs(stream, params, takes_hevc)
    peer = RtcPeer(uuid.uuid4().hex, stream, gw.settings.webrtc.ice_servers, stream.conf.enable_audio and audio)
    peer.owner = None if session is None else session.id
    await peer.setup(params, codecs)
    if takes_hevc is not None:
        peer.serve(for_client(stream, params, takes_hevc))
    gw.rtc_peers[peer.id] = peer
    unregister = gw.auth.on_end(session, lambda _: background(peer.close()))
    background(_forget_when_closed(gw, peer, unregister))
    return peer


async def _forget_when_closed(gw: Gateway, peer: RtcPeer, unregister: Callable[[], None]) -> None:
    await peer.closed.wait()
    gw.rtc_peers.pop(peer.id, None)
    unregister()
