"""/metrics on a real gateway: scraped with Prometheus' own text parser while a WebSocket
viewer and an HLS client play, and who may read it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FILE_SOURCE
from tests.fixtures.gateway import ADMIN_MD5, Gateway, md5
from tests.fixtures.net import run_async
from tests.test_playback import _get, _stalled_download, big_recordings, h5_time  # noqa: F401  (a fixture)

SCRAPER_TOKEN = "scrape-me-7f3a"
Samples = dict[tuple[str, frozenset], float]


def scrape(gw: Gateway, query: str = "", bearer: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET /metrics."""
    request = urllib.request.Request(f"{gw.url}/metrics{query}")
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def metrics_gateway(make_gateway: Any, **settings: Any) -> Gateway:
    """token1 (the sample clip), an admin and a Viewer, the scraper's token configured."""
    from gateway.auth import hash_md5

    gw = make_gateway([dict(FILE_SOURCE)], start=False, http__strMetricsToken=SCRAPER_TOKEN, **settings)
    conf = json.loads(gw.conf_path.read_text())
    conf["user"]["users"] = [
        {"strUser": "admin", "strPasswd": hash_md5(ADMIN_MD5), "strUserType": "Administrator"},
        {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
    ]
    gw.conf_path.write_text(json.dumps(conf))
    return gw.start()


def test_who_may_read_the_metrics(make_gateway):
    gw = metrics_gateway(make_gateway)
    status, kind, body = scrape(gw)
    assert status == 401 and json.loads(body)["bStatus"] is False
    assert scrape(gw, "?session=forged")[0] == 401
    status, kind, body = scrape(gw, f"?session={gw.login('viewer', 'v')}")
    assert status == 200 and kind.startswith("text/plain") and "h5ss_source_online" in body
    assert scrape(gw, bearer=SCRAPER_TOKEN)[0] == 200
    assert scrape(gw, bearer="wrong")[0] == 401
    # A wrong bearer token is refused even beside a good session: the header decides.
    assert scrape(gw, f"?session={gw.login()}", bearer="wrong")[0] == 401
    assert SCRAPER_TOKEN not in gw.log()


def test_no_token_configured_accepts_no_bearer(make_gateway):
    gw = make_gateway([dict(FILE_SOURCE)])
    assert scrape(gw, bearer="")[0] == 401
    assert scrape(gw, f"?session={gw.login()}")[0] == 200


def test_metrics_are_open_when_logins_are_off(make_gateway):
    gw = make_gateway([dict(FILE_SOURCE)], http__bAuth=False)
    assert scrape(gw)[0] == 200


def test_metrics_move_while_clients_play(make_gateway):
    gw = metrics_gateway(make_gateway)
    session = gw.login("viewer", "v")
    main = {"token": "token1", "profile": "main"}
    ws = {**main, "output": "ws_fmp4"}
    hls = {**main, "output": "hls"}

    async def play() -> tuple[Samples, Samples]:
        url = f"{gw.ws_url}/api/v1/h5swsapi?token=token1&session={session}"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, heartbeat=None) as socket:
                got = 0
                while got < 30:  # the MIME, the init segment, then frames
                    message = await asyncio.wait_for(socket.receive(), 15)
                    assert message.type == aiohttp.WSMsgType.BINARY, message
                    got += 1
                async with http.get(f"{gw.url}/hls/v2/token1/hls.m3u8?session={session}") as response:
                    assert response.status == 200, await response.text()
                    playlist = await response.text()
                segment = [line for line in playlist.splitlines() if line.startswith("seg")][-1]
                async with http.get(f"{gw.url}/hls/v2/token1/{segment}") as response:
                    assert response.status == 200
                    await response.read()
                async with http.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"}) as r:
                    playing = samples(await r.text())
            for _ in range(50):  # the viewer's handler ends a moment after the socket closes
                async with http.get(f"{gw.url}/metrics?session={session}") as r:
                    after = samples(await r.text())
                if value(after, "h5ss_output_clients", **ws) == 0:
                    break
                await asyncio.sleep(0.1)
            return playing, after

    playing, after = run_async(play)
    assert value(playing, "h5ss_source_online", **main) == 1
    assert value(playing, "h5ss_source_state", state="online", **main) == 1
    assert value(playing, "h5ss_ingest_bytes_total", **main) > 0
    assert value(playing, "h5ss_ingest_packets_total", **main) >= 28
    assert value(playing, "h5ss_output_clients", **ws) == 1
    ws_bytes = value(playing, "h5ss_output_bytes_total", **ws)
    assert ws_bytes > 10_000
    assert value(playing, "h5ss_output_requests_total", **hls) == 2
    assert value(playing, "h5ss_output_held_requests_total", **hls) >= 1  # a cold segmenter's first playlist
    assert value(playing, "h5ss_output_bytes_total", **hls) > 1000
    assert value(playing, "h5ss_event_loop_lag_seconds") < 1.0
    assert value(playing, "h5ss_process_resident_memory_bytes") > 10e6
    assert value(playing, "h5ss_process_open_fds") > 5
    assert value(playing, "h5ss_process_cpu_seconds_total") > 0
    assert value(playing, "h5ss_process_threads") >= 2  # the loop and the demux thread at least

    assert value(after, "h5ss_output_clients", **ws) == 0
    assert value(after, "h5ss_output_bytes_total", **ws) >= ws_bytes


def test_a_webrtc_peer_is_counted_while_it_plays(make_gateway):
    """A real WHEP peer (aiortc as the client): the peer, its stream's WebRTC clients and
    the bytes its lean sender sent."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    gw = metrics_gateway(make_gateway)
    session = gw.login("viewer", "v")
    rtc = {"token": "token1", "profile": "main", "output": "webrtc"}

    async def play() -> Samples:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        connected = asyncio.Event()
        frames = asyncio.Event()
        readers: list[asyncio.Future[None]] = []

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState == "connected":
                connected.set()

        @pc.on("track")
        def track(received: Any) -> None:
            async def read() -> None:
                for _ in range(10):
                    await received.recv()
                frames.set()

            readers.append(asyncio.ensure_future(read()))

        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {session}"}
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{gw.url}/token1/whep", data=pc.localDescription.sdp, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    answer = await r.text()
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                await asyncio.wait_for(connected.wait(), 20)
                await asyncio.wait_for(frames.wait(), 20)
                async with http.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"}) as r:
                    return samples(await r.text())
        finally:
            await pc.close()

    playing = run_async(play)
    assert value(playing, "h5ss_webrtc_peers") == 1
    assert value(playing, "h5ss_output_clients", **rtc) == 1
    assert value(playing, "h5ss_output_bytes_total", **rtc) > 10_000


def test_downloads_and_a_dropped_download_are_counted(request):
    gw, _, viewer, start, end = request.getfixturevalue("big_recordings")
    download = {"token": "cam", "profile": "main", "output": "download"}
    stalled = _stalled_download(gw, viewer, start, end)  # reads nothing: dropped after 2 s
    deadline = time.monotonic() + 15
    while "read nothing for 2 s; dropped" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    stalled.close()
    found = samples(scrape(gw, f"?session={viewer}")[2])
    assert value(found, "h5ss_output_dropped_clients_total", **download) == 1
    assert value(found, "h5ss_output_clients", **download) == 0
    before = value(found, "h5ss_output_bytes_total", **download)
    status, _, body = _get(f"{gw.url}/api/v1/DownloadRecord?token=cam&session={viewer}"
                           f"&start={h5_time(start)}&end={h5_time(end)}")
    assert status == 200
    found = samples(scrape(gw, f"?session={viewer}")[2])
    assert value(found, "h5ss_output_bytes_total", **download) == before + len(body)
    assert value(found, "h5ss_output_dropped_clients_total", **download) == 1
