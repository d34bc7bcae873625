"""WebRTC: Chromium plays a real camera over WHEP and the h5s signalling, untouched."""

from __future__ import annotations

import asyncio
import re
import struct
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.ws_client import WsViewer
from tests.test_browser import assert_smpte, bar_colours

STATS_JS = """async (pc) => {
  const out = {video: null, audio: null};
  const stats = await pc.getStats();
  stats.forEach(r => {
    if (r.type !== 'inbound-rtp') return;
    const codec = stats.get(r.codecId) || {};
    out[r.kind] = {frames: r.framesDecoded || 0, packets: r.packetsReceived, lost: r.packetsLost,
                   mime: codec.mimeType, fmtp: codec.sdpFmtpLine || ''};
  });
  return out;
}"""


SRTP_CIPHER_JS = """async (pc) => {
  let cipher = '';
  (await eval(pc).getStats()).forEach(r => { if (r.type === 'transport') cipher = r.srtpCipher; });
  return cipher;
}"""


def peer_stats(page, pc_expression: str) -> dict:
    return page.evaluate(f"async () => ({STATS_JS})({pc_expression})")


def poll(page, js: str, arg=None, timeout: float = 20.0):
    """Evaluate `js` (it may be async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(js, arg)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s: {js[:200]}")


def wait_decoding(page, pc_expression: str, frames: int = 25) -> dict:
    js = f"async () => {{ const pc = {pc_expression}; if (!pc) return null;" \
         f" const s = await ({STATS_JS})(pc); return s.video && s.video.frames >= {frames} ? s : null; }}"
    first = poll(page, js)
    time.sleep(1.5)
    second = peer_stats(page, pc_expression)
    assert second["video"]["frames"] > first["video"]["frames"] + 20, (first, second)
    return second


def test_whep_page_plays_high_profile_camera_untouched(camera_source, page):
    gw, session, _ = camera_source(profile="high", audio="pcma")
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    page.goto(f"{gw.url}/cam/")  # the MediaMTX-style URL
    stats = wait_decoding(page, "window.h5ssPeer")
    assert stats["video"]["mime"] == "video/H264"
    # Debian's Chromium offers no plain High profile: the nearest one, Main, is agreed,
    # and the camera's High bitstream decodes (the right picture, below).
    assert "profile-level-id=4d001f" in stats["video"]["fmtp"], stats
    assert stats["audio"]["mime"] == "audio/PCMA" and stats["audio"]["packets"] > 20
    # The gateway answers as the DTLS server and so picks the SRTP profile: AES-GCM,
    # which Chromium offers but would not pick itself.
    assert page.evaluate(SRTP_CIPHER_JS, "window.h5ssPeer").startswith("SRTP_AEAD_AES_"), stats
    assert_smpte(bar_colours(page))
    # PassthroughEncoder.encode raises if aiortc ever tries to encode; it never did.
    assert "never re-encodes" not in gw.log()
    assert webrtc_path(gw, session) == ("lean", 0)  # the browser's peer went through the lean sender


def test_h5srtcapi_player_plays_multi_slice_camera_intact(camera_source, page):
    gw, session, _ = camera_source(profile="high", slices=2, audio="pcma")
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => { localStorage.setItem('h5ss.session', s); localStorage.setItem('h5ss.protocol', 'rtc'); }",
                  session)
    page.goto(f"{gw.url}/player.html?token=cam")
    stats = wait_decoding(page, "window.h5ssPlayer && window.h5ssPlayer._pc")
    assert stats["video"]["mime"] == "video/H264" and stats["audio"]["mime"] == "audio/PCMA"
    for _ in range(3):  # several frames, each made of two slices
        assert_smpte(bar_colours(page))
        time.sleep(0.4)


def test_passthrough_encoder_never_encodes():
    import aiortc.rtcrtpsender
    from aiortc.codecs import CODECS

    from gateway.outputs.webrtc.aiortc_compat.install import install
    from gateway.outputs.webrtc.aiortc_compat.passthrough import PassthroughEncoder

    async def install_in_a_loop() -> None:  # as the first viewer does
        install(["127.0.0.1"])

    with ThreadPoolExecutor(1) as thread:  # its own event loop: Playwright's may run in this one
        thread.submit(asyncio.run, install_in_a_loop()).result()
    encoder = aiortc.rtcrtpsender.get_encoder(next(c for c in CODECS["video"] if c.mimeType == "video/H264"))
    assert isinstance(encoder, PassthroughEncoder)
    import av

    with pytest.raises(RuntimeError, match="never re-encodes"):
        encoder.encode(av.VideoFrame(16, 16, "yuv420p"))
    profiles = {c.parameters.get("profile-level-id") for c in CODECS["video"] if c.mimeType == "video/H264"}
    assert {"42e01f", "4d001f", "64001f"} <= profiles


@pytest.mark.unit
def test_the_check_of_aiortc_internals_names_what_is_missing(caplog):
    """Every aiortc/aioice/pylibsrtp internal the gateway uses is there in the installed
    versions; one that is not is named (module and attribute) in one log line."""
    import types

    from gateway.outputs.webrtc.aiortc_compat import check

    async def real_owners() -> dict:  # aiortc's objects are made in an event loop
        return check.real_owners()

    with ThreadPoolExecutor(1) as thread:  # its own event loop: Playwright's may run in this one
        owners = thread.submit(asyncio.run, real_owners()).result()
    assert check.missing(check.PEER_INTERNALS + check.LEAN_INTERNALS, owners) == []
    assert check.check(owners)

    def without(owner: object, name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(**{n: getattr(owner, n) for n in dir(owner) if n != name and n[:2] != "__"})

    older = dict(owners)  # as aiortc 1.9 and a sender without its packet counter would be
    older["aiortc.rtcrtpsender"] = without(owners["aiortc.rtcrtpsender"], "random_sequence_number")
    older[check.SENDER] = without(owners[check.SENDER], "_RTCRtpSender__packet_count")
    caplog.clear()
    assert not check.check(older)
    [line] = [r.getMessage() for r in caplog.records if "aiortc_compat" in r.getMessage()]
    assert "aiortc.rtcrtpsender.random_sequence_number" in line
    assert "aiortc.rtcrtpsender.RTCRtpSender()._RTCRtpSender__packet_count" in line
    assert "aiortc's own (slower) sender" in line
    del older[check.DTLS]  # an object that could not be made: all its names are missing
    assert "_set_role" in {i.name for i in check.missing(check.PEER_INTERNALS, older)}


def whep(gw, token: str, body: bytes, session: str | None, content_type: str = "application/sdp"):
    headers = {"Content-Type": content_type}
    if session:
        headers["Authorization"] = f"Bearer {session}"
    request = urllib.request.Request(f"{gw.url}/{token}/whep", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_whep_bad_input(gateway):
    session = gateway.login()
    offer = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    status, body = whep(gateway, "nope", offer, session)
    assert status == 404 and "unknown token" in body
    status, body = whep(gateway, "token1", offer, None)
    assert status == 401 and "unauthorized" in body
    status, body = whep(gateway, "token1", b"hello", session)
    assert status == 400 and "SDP" in body
    status, body = whep(gateway, "token1", offer, session)  # no ICE, no DTLS, no codecs
    assert status == 400 and "offer" in body
    status, body = whep(gateway, "token1", offer, session, content_type="text/plain")
    assert status == 415


@pytest.mark.parametrize("token,session,code,words", [
    ("token1", "forged", 4001, "unauthorized"),
    ("nope", None, 4004, "unknown token"),
])
def test_h5srtcapi_refuses_bad_session_or_token(gateway, token, session, code, words):
    viewer = WsViewer(gateway.ws_url, token, session or gateway.login())
    viewer.url = viewer.url.replace("h5swsapi", "h5srtcapi")
    viewer.start()
    viewer.join(10)
    assert viewer.close_code == code and words in viewer.close_reason


def open_sockets(pid: int) -> int:
    """The process's open sockets; a descriptor closed while they are counted is not one."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += "socket" in str(fd.readlink())
        except FileNotFoundError:
            pass
    return count


def test_twenty_peers_then_all_closed_back_to_baseline(camera_source, browser):
    gw, session, _ = camera_source(audio="pcma")
    assert gw.get(f"/api/v1/GetImage?token=cam&session={session}")[0] == 200  # warm the stream
    baseline = open_sockets(gw.proc.pid)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gw.url}/login.html")
    page.evaluate(
        """async ([session, count]) => {
             window.pcs = [];
             for (let i = 0; i < count; i++) {
               const pc = new RTCPeerConnection();
               pc.addTransceiver('video', {direction: 'recvonly'});
               pc.addTransceiver('audio', {direction: 'recvonly'});
               await pc.setLocalDescription(await pc.createOffer());
               const r = await fetch('/cam/whep', {method: 'POST', body: pc.localDescription.sdp,
                 headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + session}});
               await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
               window.pcs.push(pc);
             }
           }""",
        [session, 20],
    )
    poll(page, "async () => { let n = 0; for (const pc of window.pcs) { const s = await pc.getStats();"
               " s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 5) n++; }); }"
               " return n === 20; }", timeout=60)
    src = gw.api("GetSrc", session=session, token="cam")[1]["src"][0]
    assert src["nRtcPeers"] == 20
    context.close()  # the browser goes away without saying goodbye
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        src = gw.api("GetSrc", session=session, token="cam")[1]["src"][0]
        if src["nRtcPeers"] == 0 and open_sockets(gw.proc.pid) <= baseline:
            break
        time.sleep(1)
    assert src["nRtcPeers"] == 0
    assert open_sockets(gw.proc.pid) <= baseline


def test_aac_source_goes_out_as_opus(gateway, page):
    """The sample clip (H.264 + AAC) over WebRTC: AAC is made into Opus once per stream."""
    page.goto(f"{gateway.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", gateway.login())
    page.goto(f"{gateway.url}/token1/")
    wait_decoding(page, "window.h5ssPeer")
    stats = poll(page, f"async () => {{ const s = await ({STATS_JS})(window.h5ssPeer);"
                       " return s.audio && s.audio.packets > 50 ? s : null; }")
    assert stats["audio"]["mime"] == "audio/opus"


def test_mediamtx_port_and_switch(make_gateway):
    from tests.fixtures.net import free_port

    port = free_port()
    gw = make_gateway([{"strName": "S", "strToken": "token1", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}],
                      webrtc__nWebRTCPort=port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/token1/", timeout=10) as r:
        assert r.status == 200 and b"/whep" in r.read()
    gw.stop()
    gw2 = make_gateway(webrtc__bWebRTCSink=False)
    status, body = whep(gw2, "x", b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", gw2.login())
    assert status == 403 and "turned off" in body


def test_deleting_a_source_closes_its_peers(camera_source, page):
    gw, session, _ = camera_source(audio="none")
    page.goto(f"{gw.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    page.goto(f"{gw.url}/cam/")
    wait_decoding(page, "window.h5ssPeer")
    assert gw.api("DelSrc", session=session, token="cam")[0] == 200
    poll(page, "() => ['closed', 'failed', 'disconnected'].includes(window.h5ssPeer.connectionState)"
               " || document.getElementById('msg').textContent !== ''", timeout=15)
    assert "cam" not in {s["strToken"] for s in gw.api("GetSrc", session=session)[1]["src"]}


async def receive_dropping_packets(gw, session: str, seconds: float, every: int, with_audio: bool = True,
                                   srtp_profiles: list | None = None, pli_after: float | None = None) -> dict:
    """An aiortc WHEP client that loses every `every`-th video packet, as a network would.

    The packets are thrown away before SRTP sees them (a retransmission of a packet the
    receiver has decrypted once is refused as a replay). Recorded: the media packets that
    reach the client's RTP receiver, the sequence numbers lost, the decoded frames and the
    RTCP sender reports. `srtp_profiles`: the SRTP profiles the client offers (aiortc's
    own: AES-GCM and AES-CM); `srtp_profile` in the result is the one agreed. `pli_after`:
    seconds after which the client sends a picture loss indication (`pli_time` in the result).
    """
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.rtp import RtcpSrPacket, is_rtcp

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    if with_audio:
        pc.addTransceiver("audio", direction="recvonly")  # the sample has audio: offer for it, as browsers do
    if srtp_profiles is not None:
        for transceiver in pc.getTransceivers():
            transceiver.receiver.transport._srtp_profiles = srtp_profiles
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/token1/whep", data=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {session}"}) as r:
            assert r.status == 201, await r.text()
            answer = await r.text()
    video_ssrc = int(re.search(r"m=video.*?a=ssrc:(\d+)", answer, re.S).group(1))
    received: dict[int, list[tuple[float, int]]] = {}  # sequence number -> [(arrival, RTP timestamp)]
    lost: list[int] = []
    reports: list[tuple[float, int, int, int]] = []  # (arrival, NTP time, RTP timestamp, packets)
    receiver = pc.getTransceivers()[0].receiver
    ice = receiver.transport.transport
    ice_recv, handle_rtp, handle_rtcp = ice._recv, receiver._handle_rtp_packet, receiver._handle_rtcp_packet
    arrived = 0

    async def lossy_recv() -> bytes:
        nonlocal arrived
        while True:
            data = await ice_recv()
            if 127 < data[0] < 192 and not is_rtcp(data) and struct.unpack_from("!I", data, 8)[0] == video_ssrc:
                sequence = struct.unpack_from("!H", data, 2)[0]
                arrived += 1
                if arrived % every == 0 and sequence not in lost:  # the header is in clear in SRTP
                    lost.append(sequence)
                    continue
            return data

    async def on_rtp(packet, arrival_time_ms):
        if packet.ssrc == video_ssrc:
            received.setdefault(packet.sequence_number, []).append((time.time(), packet.timestamp))
        await handle_rtp(packet, arrival_time_ms)

    async def on_rtcp(packet):
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == video_ssrc:
            info = packet.sender_info
            reports.append((time.time(), info.ntp_timestamp, info.rtp_timestamp, info.packet_count))
        await handle_rtcp(packet)

    ice._recv, receiver._handle_rtp_packet, receiver._handle_rtcp_packet = lossy_recv, on_rtp, on_rtcp
    frames = 0

    async def decode() -> None:
        nonlocal frames
        while True:
            await receiver.track.recv()
            frames += 1

    decoding = asyncio.ensure_future(decode())
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    pli_time = None
    if pli_after is not None:
        await asyncio.sleep(pli_after)
        pli_time = time.time()
        await receiver._send_rtcp_pli(video_ssrc)
    await asyncio.sleep(seconds - (pli_after or 0))
    decoding.cancel()
    srtp_profile = receiver.transport._ssl.get_selected_srtp_profile()
    await pc.close()
    return {"received": received, "lost": lost, "reports": reports, "frames": frames, "answer": answer,
            "srtp_profile": srtp_profile, "pli_time": pli_time}


def webrtc_path(gw, session: str) -> tuple[str, int]:
    """GetRunInfo's word on the WebRTC sender: (path, peers that fell back to aiortc's)."""
    status, answer = gw.api("GetRunInfo", session=session)
    assert status == 200, answer
    return answer["strWebRtcPath"], answer["nWebRtcFallbacks"]


def test_lost_packets_come_back_on_nack_and_sender_reports_match(gateway):
    """What the per-peer RTP sender keeps of aiortc: NACKs answered, gap-free sequence
    numbers, decodable frames, RTCP sender reports whose counts and clocks match the stream."""
    session = gateway.login()
    assert webrtc_path(gateway, session) == ("idle", 0)  # aiortc not even loaded yet
    with ThreadPoolExecutor(1) as thread:  # its own event loop: Playwright's may run in this one
        result = thread.submit(asyncio.run, receive_dropping_packets(gateway, session, seconds=6, every=40)).result()
    # The peer went through the lean sender: a fallback to aiortc's (several times the CPU) fails here.
    assert webrtc_path(gateway, session) == ("lean", 0)
    received, lost = result["received"], result["lost"]
    numbers = sorted(received)
    assert len(lost) >= 10 and numbers[-1] - numbers[0] < 30000  # no wrap-around in this window
    lost_for_good = [seq for seq in lost[:-2] if seq not in received]  # the last may still be on their way
    assert not lost_for_good, f"{len(lost_for_good)} of {len(lost)} lost packets never resent"
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a gap in sequence numbers"
    for seq in lost[:-2]:  # a resent packet is the same packet: its frame's timestamp
        assert received[seq - 1][0][1] <= received[seq][0][1] <= received[seq + 1][0][1]
        assert received[seq][0][0] >= received[seq + 1][0][0]  # ...and it came after its successor
    assert result["frames"] > 50
    assert len(result["reports"]) >= 3
    first_by_arrival = sorted((arrivals[0][0], arrivals[0][1]) for arrivals in received.values())
    for arrival, ntp_time, rtp_timestamp, packets in result["reports"]:
        assert abs(ntp_time / 2**32 - 2208988800 - arrival) < 1.0  # the sender's wall clock, now
        # the SR's RTP time is the media clock of the packets sent at that moment
        recent = [ts for t, ts in first_by_arrival if abs(t - arrival) < 0.3]
        assert recent and min(abs(ts - rtp_timestamp) for ts in recent) < 90000 * 0.3, (rtp_timestamp, recent[:3])
        sent_by_then = sum(1 for t, _ in first_by_arrival if t <= arrival) + sum(1 for s in lost if s not in received)
        assert 0.8 * sent_by_then - 30 <= packets <= sent_by_then + 30, (packets, sent_by_then)


def test_a_picture_loss_indication_replays_the_cached_gop(gateway):
    """A client's PLI reaches the peer (the gateway reads incoming RTCP itself and hands
    on what it acts on): the cached GOP comes again from its keyframe at once, its frames
    one RTP tick apart, where live frames are 3600 apart (25 fps)."""
    session = gateway.login()
    with ThreadPoolExecutor(1) as thread:
        result = thread.submit(asyncio.run, receive_dropping_packets(gateway, session, seconds=4, every=10**6,
                                                                     pli_after=2.5)).result()
    arrivals = sorted((t, ts) for packets in result["received"].values() for t, ts in packets)
    frames_before = [ts for t, ts in arrivals if t < result["pli_time"]]
    frames_after = [ts for t, ts in arrivals if t >= result["pli_time"]]
    steps_before = [(b - a) & 0xFFFFFFFF for a, b in zip(frames_before, frames_before[1:]) if b != a]
    steps_after = [(b - a) & 0xFFFFFFFF for a, b in zip(frames_after, frames_after[1:]) if b != a]
    assert steps_before[-10:] == [3600] * 10  # live by then (the start's replay is long over)
    assert 1 in steps_after[:30], steps_after[:30]  # replayed right after the PLI
    assert result["frames"] >= 50


def test_a_video_only_whep_offer_gets_a_video_only_answer(gateway):
    """Some WHEP clients offer no audio section; the stream has audio, the peer still plays."""
    session = gateway.login()
    with ThreadPoolExecutor(1) as thread:
        result = thread.submit(asyncio.run, receive_dropping_packets(gateway, session, seconds=3, every=10**6,
                                                                     with_audio=False)).result()
    assert "m=audio" not in result["answer"] and "H264" in result["answer"]
    assert result["frames"] >= 25


def test_a_client_without_aes_gcm_gets_aes_cm(gateway):
    """The gateway prefers AES-GCM as DTLS server; a client that offers only AES-CM +
    HMAC-SHA1 (as older stacks do) gets that profile, and its frames decode."""
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80

    session = gateway.login()
    with ThreadPoolExecutor(1) as thread:
        default, cm_only = (
            thread.submit(asyncio.run, receive_dropping_packets(gateway, session, seconds=2.5, every=10**6,
                                                                srtp_profiles=profiles)).result()
            for profiles in (None, [SRTP_AES128_CM_SHA1_80]))
    assert "a=setup:passive" in default["answer"]
    assert default["srtp_profile"].startswith(b"SRTP_AEAD_AES_") and default["frames"] >= 25
    assert cm_only["srtp_profile"] == b"SRTP_AES128_CM_SHA1_80" and cm_only["frames"] >= 25
