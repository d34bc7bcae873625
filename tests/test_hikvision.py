"""HikCentral Connect end to end: the gateway against an emulated platform (OpenAPI over
HTTP on 127.0.0.1) whose RTMP URLs really expire (nginx-rtmp asks the emulator on play and
every second while playing, and cuts a player whose URL expired).

Client tests drive gateway.vendors.hikvision.client against the emulator directly; the others run
the real gateway process, import the cameras and watch them over h5swsapi.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from gateway.vendors.hikvision.client import HikClient, HikError, HikUnavailable, PlatformSettings
from tests.fixtures.hikcentral import HikCentralEmulator
from tests.fixtures.net import run_async
from tests.fixtures.rtmp_origin import RtmpOrigin
from tests.fixtures.ws_client import WsViewer, fragment_info

APP_KEY = "test-appkey-7Q2W"  # fake keys, searched for in logs and answers
SECRET_KEY = "test-secretkey-Z9X8"
CAMERAS = {"D0001": [("cam1", "Gate"), ("cam2", "Yard")], "D0002": [("cam3", "Hall")], "D0003": []}


@pytest.fixture
def platform(tmp_path) -> Iterator[HikCentralEmulator]:
    """The emulated platform with 3 devices and 3 cameras, and its RTMP origin with a live feed."""
    with HikCentralEmulator(APP_KEY, SECRET_KEY) as emulator:
        for serial, cameras in CAMERAS.items():
            emulator.add_device(serial, f"NVR {serial}", cameras)
        origin = RtmpOrigin(workdir=tmp_path / "rtmp", notify=emulator.notify_url)
        try:
            emulator.rtmp_port = origin.port
            origin.publish(emulator.feed, width=320, height=180, play_url=emulator.signed_url("cam1", 30))
            yield emulator
        finally:
            origin.stop()


def settings(emulator: HikCentralEmulator, validity: int = 120) -> PlatformSettings:
    return PlatformSettings(emulator.url, APP_KEY, SECRET_KEY, validity, "main")


def hik_gateway(make_gateway, emulator: HikCentralEmulator, validity: int = 120):
    return make_gateway(hikvision__strHost=emulator.url, hikvision__strAppKey=APP_KEY,
                        hikvision__strSecretKey=SECRET_KEY, hikvision__nUrlValiditySec=validity)


def post(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert APP_KEY not in text and SECRET_KEY not in text and "sig=" not in text


# -- the client -------------------------------------------------------------------------


def test_client_pages_paces_and_survives_faults(platform):
    async def unreachable() -> None:
        """Nobody there at all: HikUnavailable within the call's budget (runs beside the rest)."""
        gone = HikClient(PlatformSettings("http://127.0.0.1:9", APP_KEY, SECRET_KEY, 120, "main"))
        try:
            with pytest.raises(HikUnavailable, match="cannot connect"):
                await gone.devices()
        finally:
            await gone.close()

    async def run() -> None:
        nobody = asyncio.create_task(unreachable())
        client = HikClient(settings(platform))
        try:
            devices = await client.devices()  # 3 devices at 2 a page: two pages
            assert [d.serial for d in devices] == ["D0001", "D0002", "D0003"]
            assert len(platform.calls_to("devices/get")) == 2
            assert [c.id for c in await client.cameras("D0001")] == ["cam1", "cam2"]
            # Token expiry mid-run: OPEN000006, a new token, the call retried once.
            platform.expire_tokens()
            address = await client.live_address("D0001", "cam1")
            assert address.url.startswith(f"rtmp://127.0.0.1:{platform.rtmp_port}/")
            assert 100 < address.expires_at - time.time() <= 120
            assert [c[2] for c in platform.calls_to("token/get")] == ["0", "0"]
            assert "OPEN000006" in [c[2] for c in platform.calls]
            # 5xx for a while: retried with backoff inside the call's time budget.
            platform.fail_for(1.5)
            assert (await client.live_address("D0002", "cam3")).url
            # A platform that does not answer: the request times out and is retried.
            platform.hang_for(2)
            started = time.monotonic()
            assert (await client.live_address("D0002", "cam3")).url
            assert time.monotonic() - started < 10
            # Platform errors name the code and the call.
            platform.set_offline("cam3")
            with pytest.raises(HikError, match=r"live/address/get: EVZ20007") as offline:
                await client.live_address("D0002", "cam3")
            assert offline.value.code == "EVZ20007"
            with pytest.raises(HikError, match="EVZ20002"):
                await client.live_address("D0002", "nope")
            # A burst is spaced to at most 5 requests a second (6 allows for arrival jitter).
            await asyncio.gather(*(client.cameras("D0002") for _ in range(12)))
            assert platform.max_rate() <= 6, platform.max_rate()
        finally:
            await client.close()
        # A wrong secret: a clear error, the keys in no message.
        bad = HikClient(PlatformSettings(platform.url, APP_KEY, "wrong-" + SECRET_KEY, 120, "main"))
        try:
            with pytest.raises(HikError, match="token/get: OPEN000001") as refused:
                await bad.devices()
            assert_no_secret(str(refused.value), repr(bad), repr(bad.settings))
        finally:
            await bad.close()
        await nobody

    run_async(run, timeout=120)


# -- import --------------------------------------------------------------------------------


def test_import_is_idempotent_and_reports_changes(make_gateway, platform):
    gw = hik_gateway(make_gateway, platform)
    session = gw.login()
    status, first = gw.api("AddDeviceHik", session=session)
    assert status == 200 and first["bStatus"], first
    assert (first["nAdded"], first["nUpdated"], first["nUnchanged"], first["nFailed"]) == (3, 0, 0, 0)
    src = {s["strToken"]: s for s in gw.api("GetSrc", session=session)[1]["src"] if s["nType"] == "H5_HIKVISION"}
    assert {t: (s["strName"], s["strHikDeviceSerial"], s["strHikCameraId"]) for t, s in src.items()} == {
        "cam1": ("Gate", "D0001", "cam1"), "cam2": ("Yard", "D0001", "cam2"), "cam3": ("Hall", "D0002", "cam3")}
    assert all(s["strUrl"] == "" and s["bOnline"] is False for s in src.values())
    assert not platform.issued  # on demand: no URL asked for while nobody watches

    saved = gw.conf_path.read_bytes()
    platform.expire_tokens()  # a second run after the token died: a new token, same result
    status, second = gw.api("AddDeviceHik", session=session)
    assert status == 200 and (second["nAdded"], second["nUpdated"], second["nUnchanged"]) == (0, 0, 3), second
    assert gw.conf_path.read_bytes() == saved  # nothing changed, nothing written

    # The platform changes: a camera renamed, one removed. The old frontend's POST call.
    platform.cameras["cam2"].name = "Back yard"
    platform.remove_camera("cam3")
    status, third = post(f"{gw.url}/api/hikvision/initialize?session={session}")
    assert status == 200 and third["bStatus"], third
    assert (third["nAdded"], third["nUpdated"], third["nUnchanged"], third["nGone"]) == (0, 1, 1, 1), third
    assert third["updated"] == ["cam2"] and third["gone"] == [{"strToken": "cam3", "strName": "Hall"}]
    assert gw.api("GetSrc", session=session, token="cam2")[1]["src"][0]["strName"] == "Back yard"
    assert json.loads(gw.conf_path.read_text())["source"]["src"][-2]["strName"] == "Back yard"

    # Refusals: no session, a platform that is down, a token another source holds.
    assert post(f"{gw.url}/api/hikvision/initialize")[0] == 401
    platform.fail_for(30)
    status, down = gw.api("AddDeviceHik", session=session)
    assert status == 502 and "unavailable" in down["strCode"], down
    platform.fail_for(0)
    gw.api("DelSrc", session=session, token="cam1")
    gw.api("AddSrcFile", session=session, name="clip", token="cam1", url="h5ss-sample.mp4")
    status, clash = gw.api("AddDeviceHik", session=session)
    assert clash["nFailed"] == 1 and "already used by an H5_FILE source" in clash["failed"][0]["strReason"]
    assert_no_secret(gw.log(), json.dumps(first), json.dumps(gw.api("GetSrc", session=session)[1]))


def test_import_needs_a_configured_platform(make_gateway):
    gw = make_gateway()
    status, answer = gw.api("AddDeviceHik", session=gw.login())
    assert status == 400 and "not configured" in answer["strCode"]


# -- streaming --------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Polls GetSrc for one token every 0.25 s: (time, bOnline, strLastError)."""

    def __init__(self, gw, session: str, token: str):
        super().__init__(daemon=True)
        self.gw, self.session, self.token = gw, session, token
        self.samples: list[tuple[float, bool, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.25):
            src = self.gw.api("GetSrc", session=self.session, token=self.token)[1]["src"][0]
            self.samples.append((time.monotonic(), src["bOnline"], src["strLastError"]))

    def wait_for(self, online: bool, timeout: float, error: str = "") -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][1] is online and error in self.samples[-1][2]:
                return True
            time.sleep(0.1)
        return False


def video_gaps(viewer: WsViewer) -> list[tuple[float, float]]:
    """(arrival time, seconds since the previous video fragment) for each video fragment."""
    times = [t for t, _ in viewer.video_fragments()]
    return [(b, b - a) for a, b in zip(times, times[1:])]


def imported_and_watched(make_gateway, platform) -> tuple:
    """(gateway, session, viewer): the platform's cameras imported with 15 s URLs, and a WS
    viewer playing cam1."""
    gw = hik_gateway(make_gateway, platform, validity=15)
    session = gw.login()
    assert gw.api("AddDeviceHik", session=session)[1]["nAdded"] == 3
    viewer = WsViewer(gw.ws_url, "cam1", session)
    viewer.start()
    assert viewer.wait_frames(10, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    return gw, session, viewer


def test_url_renewal_is_seamless(make_gateway, platform):
    """URLs valid 15 s, renewed make-before-break: over 5+ renewals the viewer's one
    WebSocket never sees a gap over 1 s, and no expired URL is ever cut by the origin."""
    gw, session, viewer = imported_and_watched(make_gateway, platform)
    deadline = time.monotonic() + 80
    while gw.log().count("source cam1: switched to") < 5 and time.monotonic() < deadline and viewer.is_alive():
        time.sleep(0.5)
    time.sleep(1)  # a little after the last switch
    status, answer = gw.api("GetSrc", session=session, token="cam1")
    viewer.stop()
    src = answer["src"][0]
    assert src["bOnline"] is True and src["strState"] == "online" and src["strUrl"] == ""
    assert src["nHikUrlsFetched"] >= 6 and src["strHikUrlExpires"].endswith("+00:00")
    issued = platform.issued_for("cam1")
    assert gw.log().count("source cam1: switched to") >= 5, gw.log()[-3000:]
    assert len(issued) >= 6  # the first URL and 5 renewals
    assert viewer.connections == 1 and viewer.close_code is None and viewer.error is None
    gaps = video_gaps(viewer)
    worst = max(gap for _, gap in gaps)
    print(f"renewals {len(issued) - 1}, video fragments {len(gaps) + 1}, max gap {worst:.3f} s")
    assert worst <= 1.0, sorted(gap for _, gap in gaps)[-10:]
    # One continuous timeline: decode times only go forward, by about a frame.
    times = [fragment_info(f)[1] for _, f in viewer.video_fragments()]
    steps = [b - a for a, b in zip(times, times[1:])]
    assert min(steps) > 0 and max(steps) <= 90000 // 2, (min(steps), max(steps))
    assert platform.dropped_plays == 0  # every URL was let go before it expired
    assert_no_secret(gw.log(), json.dumps(answer))


def test_platform_faults_and_offline_camera_recover(make_gateway, platform):
    """Token expiry, 10 s of platform 5xx, the camera offline and back, the camera removed:
    the viewer's one WebSocket survives all of it and GetSrc's bOnline tells the truth."""
    gw, session, viewer = imported_and_watched(make_gateway, platform)
    sampler = Sampler(gw, session, "cam1")
    sampler.start()
    try:
        assert sampler.wait_for(True, 5)
        # Token expiry, then 10 s of 5xx: the URL in use runs out during the outage.
        platform.expire_tokens()
        platform.fail_for(10)
        time.sleep(10)
        deadline = time.monotonic() + 15  # the next renewal meets the dead token after the outage
        while "OPEN000006" not in [c[2] for c in platform.calls] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "OPEN000006" in [c[2] for c in platform.calls]
        assert sampler.wait_for(True, 20), gw.log()[-3000:]
        frames = len(viewer.frames)
        assert viewer.wait_frames(frames + 25, 10)
        # The camera goes offline: the origin cuts it, the platform says EVZ20007.
        platform.set_offline("cam1")
        assert sampler.wait_for(False, 10, "EVZ20007"), sampler.samples[-3:]
        time.sleep(3)
        platform.set_offline("cam1", False)
        assert sampler.wait_for(True, 20), gw.log()[-3000:]
        frames = len(viewer.video_fragments())
        assert viewer.wait_frames(len(viewer.frames) + 25, 10)
        assert len(viewer.video_fragments()) > frames
        # The camera is removed from the platform: offline with the platform's reason.
        platform.remove_camera("cam1")
        assert sampler.wait_for(False, 10, "EVZ20002"), sampler.samples[-3:]
    finally:
        sampler.halt.set()
        sampler.join(5)
        viewer.stop()
    assert viewer.connections == 1 and viewer.close_code is None and viewer.error is None
    # Truthful bOnline: whenever it said online, video had arrived within the last 2 s.
    arrivals = [t for t, _ in viewer.video_fragments()]
    for when, online, _ in sampler.samples:
        if online:
            before = [t for t in arrivals if t <= when]
            assert before and when - before[-1] < 2.0, (when - before[-1]) if before else "no video yet"
    assert_no_secret(gw.log())


def test_the_sub_stream_asks_for_the_sub_quality(make_gateway, platform):
    """profile=sub is the camera's own sub stream: its URL is asked for with quality 2,
    the main stream's with quality 1, each only while someone watches it."""
    gw = hik_gateway(make_gateway, platform)
    session = gw.login()
    assert gw.api("AddDeviceHik", session=session)[1]["nAdded"] == 3
    sub = WsViewer(gw.ws_url, "cam1", session, "&profile=sub")
    sub.start()
    assert sub.wait_frames(3, 20), (sub.error, sub.close_reason, gw.log()[-2000:])
    assert [i.quality for i in platform.issued_for("cam1")] == [2]
    main = WsViewer(gw.ws_url, "cam1", session)
    main.start()
    assert main.wait_frames(3, 20), (main.error, main.close_reason, gw.log()[-2000:])
    sub.stop(), main.stop()
    assert sorted(i.quality for i in platform.issued_for("cam1")) == [1, 2]
    src = gw.api("GetSrc", session=session, token="cam1")[1]["src"][0]
    assert src["bSubStream"] is True and src["bSubOnline"] is True and src["bOnline"] is True
    assert src["nHikSubUrlsFetched"] == 1 and src["nHikUrlsFetched"] == 1 and src["strHikSubUrlExpires"]
    assert_no_secret(gw.log(), json.dumps(src))
