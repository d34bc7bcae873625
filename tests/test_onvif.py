"""ONVIF end to end: an emulated camera (SOAP on 127.0.0.1) whose stream is the real RTSP camera.

The gateway runs as its own process and talks to the emulator over HTTP with WS-Security
digest auth; the emulator records every call, so the tests assert what really went over
the wire. Discovery probes a WS-Discovery responder on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator

import pytest

from gateway.config.file import ConfigError, load_config
from gateway.vendors.onvif.discovery import PROBE, parse_matches
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import ADMIN_MD5, md5
from tests.fixtures.onvif_device import OnvifDevice, Profile
from tests.fixtures.ws_client import WsViewer
from tests.fixtures.wsd_responder import WsdResponder
from tests.test_browser import wait_playing

SECRET = "Cam-pa55:@/x"  # needs percent-encoding in an RTSP URL
DEVICE_TIMEOUT = 5.0  # gateway.vendors.onvif.client.DEFAULT_TIMEOUT


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    """The real RTSP camera behind the emulator, with the same credentials as its ONVIF side."""
    with RtspCamera(user="admin", password=SECRET, audio="none") as cam:
        yield cam


def plain_url(camera: RtspCamera) -> str:
    return f"rtsp://127.0.0.1:{camera.port}{camera.mount}"


@pytest.fixture
def device(camera: RtspCamera) -> Iterator[OnvifDevice]:
    profiles = [
        Profile("prof_main", "mainStream", 640, 360, 25, 1000, stream_uri=plain_url(camera)),
        Profile("prof_sub", "subStream", 320, 180, 15, 256, stream_uri=plain_url(camera) + "?sub"),
    ]
    with OnvifDevice(profiles, user="admin", password=SECRET) as emulator:
        yield emulator


def with_users(make_gateway, **settings):
    """A started gateway with an admin, an Operator (op/o) and a Viewer (viewer/v)."""
    from gateway.auth import hash_md5

    gw = make_gateway(start=False, **settings)
    conf = json.loads(gw.conf_path.read_text())
    conf["user"]["users"] = [
        {"strUser": "admin", "strPasswd": hash_md5(ADMIN_MD5), "strUserType": "Administrator"},
        {"strUser": "op", "strPasswd": hash_md5(md5("o")), "strUserType": "Operator"},
        {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
    ]
    gw.conf_path.write_text(json.dumps(conf))
    return gw.start()


def add_onvif(gw, session: str, device: OnvifDevice, token: str = "cam", password: str = SECRET, **extra):
    return gw.api("AddSrcONVIF", session=session, name="Door", token=token, ip="127.0.0.1", port=device.port,
                  user="admin", password=password, **extra)


def test_add_onvif_camera_streams_with_its_credentials(make_gateway, device, camera):
    gw = make_gateway()
    session = gw.login()
    status, answer = add_onvif(gw, session, device)
    assert status == 200 and answer["bStatus"], answer
    assert answer["strOnvifProfileToken"] == "prof_main" and answer["strOnvifProfileSubToken"] == "prof_sub"
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    assert viewer.wait_frames(10, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
    viewer.stop()
    assert viewer.mime.startswith('video/mp4; codecs="avc1.')
    src = gw.api("GetSrc", session=session, token="cam")[1]["src"][0]
    assert src["nType"] == "H5_ONVIF" and src["bOnline"] is True
    assert (src["strSrcIpAddress"], src["strSrcPort"], src["strOnvifAddr"]) == ("127.0.0.1", str(device.port),
                                                                                "/onvif/device_service")
    assert (src["strOnvifProfileToken"], src["strOnvifProfileName"]) == ("prof_main", "mainStream")
    assert src["strOnvifRtspUrl"] == plain_url(camera)
    assert src["bOnvifProfileAuto"] is True and src["strPasswd"] == "*****"
    # Every ONVIF call carried a valid digest for our user; the RTSP camera accepted the same
    # credentials; the password shows nowhere.
    assert {c.operation for c in device.calls} >= {"GetServices", "GetProfiles", "GetStreamUri"}
    assert all(c.user == "admin" for c in device.calls)
    shown = gw.log() + json.dumps(gw.api("GetSrc", session=session)[1])
    assert "Cam-pa55" not in shown and "UsernameToken" not in shown


def test_an_h265_profile_is_picked_automatically_and_plays_as_it_is(make_gateway):
    """Most Hikvision cameras sold now stream H.265 on their main profile: auto picks it
    (not the JPEG one before it) and a viewer that takes H.265 gets the camera's own bytes."""
    with RtspCamera(user="admin", password=SECRET, audio="none", codec="h265") as cam, OnvifDevice(
        [
            Profile("jpeg_1", "snapshot", 640, 480, 5, 512, encoding="JPEG"),
            Profile("h265_1", "mainStream", 640, 360, 25, 1000, encoding="H265", stream_uri=plain_url(cam)),
        ],
        user="admin",
        password=SECRET,
    ) as emulator:
        gw = make_gateway()
        session = gw.login()
        status, answer = add_onvif(gw, session, emulator)
        assert status == 200 and answer["bStatus"], answer
        assert answer["strOnvifProfileToken"] == "h265_1"
        viewer = WsViewer(gw.ws_url, "cam", session, "&hevc=true")
        viewer.start()
        assert viewer.wait_frames(10, 20), (viewer.error, viewer.close_reason, gw.log()[-2000:])
        viewer.stop()
    assert viewer.mime.startswith('video/mp4; codecs="hvc1.1.6.L'), viewer.mime


def test_onvif_sources_from_the_config_file(make_gateway, device):
    onvif = {"nType": "H5_ONVIF", "strSrcIpAddress": "127.0.0.1", "strSrcPort": str(device.port),
             "strUser": "admin", "strPasswd": SECRET}
    gw = make_gateway([
        onvif | {"strName": "Door", "strToken": "door", "nConnectType": "H5_ALWAYS"},
        onvif | {"strName": "Bad", "strToken": "bad", "strSrcPort": "http"},
        onvif | {"strName": "Gone", "strToken": "gone", "nConnectType": "H5_ALWAYS", "bOnvifProfileAuto": False,
                 "strOnvifProfileMain": "nope"},
    ])
    session = gw.login()

    def src(token: str) -> dict:
        return gw.api("GetSrc", session=session, token=token)[1]["src"][0]

    assert wait_until(lambda: src("door")["bOnline"], 15), src("door")
    assert src("door")["strOnvifProfileToken"] == "prof_main"
    assert src("bad")["strState"] == "disabled"
    assert "strSrcPort 'http' is not a port number" in gw.log()
    assert wait_until(lambda: "'nope' not found" in src("gone")["strLastError"]), src("gone")


def test_profiles_by_name_and_bad_profile(make_gateway, device):
    gw = make_gateway()
    session = gw.login()
    status, answer = add_onvif(gw, session, device, main="subStream", sub="prof_main")
    assert status == 200, answer
    src = gw.api("GetSrc", session=session, token="cam")[1]["src"][0]
    assert src["bOnvifProfileAuto"] is False and src["strOnvifProfileMain"] == "subStream"
    assert src["strOnvifProfileToken"] == "prof_sub" and src["strOnvifProfileSubToken"] == "prof_main"
    assert device.calls_of("GetStreamUri")[-1].params["ProfileToken"] == "prof_sub"
    status, answer = add_onvif(gw, session, device, token="cam2", main="nope")
    assert status == 400 and "'nope' not found" in answer["strCode"] and "prof_main (mainStream)" in answer["strCode"]
    assert [s["strToken"] for s in gw.api("GetSrc", session=session)[1]["src"]] == ["cam"]


def test_wrong_password_unreachable_and_silent_devices_fail_clearly(make_gateway, device):
    gw = make_gateway()
    session = gw.login()
    before = gw.conf_path.read_text()
    status, answer = add_onvif(gw, session, device, password="wrong-" + SECRET)
    assert status == 502 and answer["bStatus"] is False
    assert answer["strCode"].startswith("unauthorized") and "'admin'" in answer["strCode"], answer
    status, answer = gw.api("OnvifProbe", session=session, ip="127.0.0.1", port=device.port, user="admin",
                            password="nope")
    assert status == 502 and answer["strCode"].startswith("unauthorized"), answer

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (in the kernel) and never answers
    try:
        for sock, words in ((closed, "cannot reach ONVIF device"), (silent, f"did not answer within {DEVICE_TIMEOUT:g} s")):
            started = time.monotonic()
            status, answer = gw.api("AddSrcONVIF", session=session, name="x", token="x", ip="127.0.0.1",
                                    port=sock.getsockname()[1], user="admin", password=SECRET)
            elapsed = time.monotonic() - started
            assert status == 502 and words in answer["strCode"], answer
            assert elapsed < DEVICE_TIMEOUT + 1.5, elapsed
    finally:
        closed.close()
        silent.close()
    assert gw.conf_path.read_text() == before
    assert gw.api("GetSrc", session=session)[1]["src"] == []
    assert "Cam-pa55" not in gw.log()


def test_add_onvif_bad_input_asks_no_camera(gateway, device):
    session = gateway.login()
    base = {"name": "x", "token": "x", "ip": "127.0.0.1", "port": device.port, "user": "admin", "password": SECRET}
    for params, words in (
        ({"ip": "127.0.0.1 ; rm"}, "not a host name"),
        ({"ip": None}, "missing parameter 'ip'"),
        ({"port": "0"}, "port 0 is not 1-65535"),
        ({"port": "http"}, "parameter 'port' must be a number"),
        ({"onvifaddr": "onvif"}, "must be a URL path"),
        ({"rtsptype": "H5_RTSP_XXX"}, "parameter 'rtsptype' must be one of"),
        ({"token": "../x"}, "token must be"),
        ({"token": "token1"}, "already exists"),
    ):
        status, answer = gateway.api("AddSrcONVIF", session=session, **(base | params))
        assert status == 400 and words in answer["strCode"], (params, answer)
    assert device.calls == []
    assert [s["strToken"] for s in gateway.api("GetSrc", session=session)[1]["src"]] == ["token1"]


def test_onvif_probe_lists_profiles_at_any_service_path(make_gateway, camera):
    profiles = [
        Profile("h264_1", "main", 1920, 1080, 30, 4096, stream_uri=plain_url(camera)),
        Profile("jpeg_1", "snapshot", 640, 480, 5, 512, encoding="JPEG"),  # no RTSP URI
    ]
    with OnvifDevice(profiles, user="admin", password=SECRET, device_path="/cam/onvif") as emulator:
        gw = make_gateway()
        status, answer = gw.api("OnvifProbe", session=gw.login(), ip="127.0.0.1", port=emulator.port, user="admin",
                                password=SECRET, onvifaddr="/cam/onvif")
    assert status == 200, answer
    assert answer["profile"] == [
        {"strToken": "h264_1", "strName": "main", "strCodecName": "H264", "strRtspUrl": plain_url(camera),
         "nWidth": 1920, "nHeight": 1080, "nFps": 30, "nBandwidth": 4096, "bGotUrl": True, "bPtz": True},
        {"strToken": "jpeg_1", "strName": "snapshot", "strCodecName": "JPEG", "strRtspUrl": "",
         "nWidth": 640, "nHeight": 480, "nFps": 5, "nBandwidth": 512, "bGotUrl": False, "bPtz": True},
    ]


def test_ptz_moves_presets_and_roles(make_gateway, device):
    gw = with_users(make_gateway)
    admin = gw.login()
    assert add_onvif(gw, admin, device)[0] == 200
    op = gw.login("op", "o")

    def ptz(**params):
        started = time.monotonic()
        status, answer = gw.api("Ptz", session=op, token="cam", **params)
        assert status == 200 and answer["bStatus"], answer
        return time.monotonic() - started, device.calls[-1]

    latencies = []
    for params, operation, expected in (
        ({"action": "left", "speed": "0.5"}, "ContinuousMove", {"Velocity/PanTilt@x": "-0.5", "Velocity/PanTilt@y": "0.0"}),
        ({"action": "up"}, "ContinuousMove", {"Velocity/PanTilt@x": "0.0", "Velocity/PanTilt@y": "0.5"}),
        ({"action": "right", "speed": "1"}, "ContinuousMove", {"Velocity/PanTilt@x": "1.0"}),
        ({"action": "zoomout", "speed": "0.25"}, "ContinuousMove", {"Velocity/Zoom@x": "-0.25"}),
        ({"action": "stop"}, "Stop", {"PanTilt": "true", "Zoom": "true"}),
    ):
        latency, call = ptz(**params)
        latencies.append(latency)
        assert call.operation == operation and call.params["ProfileToken"] == "prof_main"
        assert {k: call.params.get(k) for k in expected} == expected, call.params
    print(f"Ptz latency (gateway API round trip): median {sorted(latencies)[2] * 1000:.0f} ms")
    assert "Velocity/Zoom@x" not in device.calls_of("ContinuousMove")[0].params  # only the axis asked for

    # Presets: set, list, go, delete, and a deleted one is refused by the camera.
    status, answer = gw.api("SetPreset", session=op, token="cam", presetname="Gate")
    assert status == 200, answer
    preset = answer["strPresetToken"]
    assert device.presets[preset] == "Gate"
    presets = gw.api("GetPresets", session=op, token="cam")[1]["preset"]
    assert {"strToken": preset, "strName": "Gate"} in presets
    _, call = ptz(action="preset", preset=preset)
    assert (call.operation, call.params["PresetToken"]) == ("GotoPreset", preset)
    status, answer = gw.api("SetPreset", session=op, token="cam", presetname="Gate 2", presettoken=preset)
    assert status == 200 and answer["strPresetToken"] == preset and device.presets[preset] == "Gate 2"
    assert gw.api("DelPreset", session=op, token="cam", presettoken=preset)[0] == 200
    assert preset not in device.presets
    status, answer = gw.api("Ptz", session=op, token="cam", action="preset", preset=preset)
    assert status == 502 and "refused GotoPreset" in answer["strCode"], answer

    # A Viewer cannot move the camera or touch presets; nothing reaches the camera.
    viewer = gw.login("viewer", "v")
    sent = len(device.calls)
    for command, params in (("Ptz", {"action": "left"}), ("SetPreset", {"presetname": "x"}),
                            ("DelPreset", {"presettoken": "1"}), ("GetPresets", {})):
        status, answer = gw.api(command, session=viewer, token="cam", **params)
        assert status == 403 and "Operator" in answer["strCode"], answer
    assert len(device.calls) == sent


def test_ptz_bad_input_sends_nothing(gateway, device):
    session = gateway.login()
    assert add_onvif(gateway, session, device)[0] == 200
    sent = len(device.calls)
    for params, status, words in (
        ({"action": "spin"}, 400, "parameter 'action' must be one of"),
        ({"action": None}, 400, "parameter 'action' must be one of"),
        ({"action": "left", "speed": "2"}, 400, "parameter 'speed' must be a number from 0.01 to 1"),
        ({"action": "left", "speed": "nan"}, 400, "parameter 'speed'"),
        ({"action": "left", "speed": "0"}, 400, "parameter 'speed'"),
        ({"action": "preset"}, 400, "missing parameter 'preset'"),
        ({"action": "left", "token": "token1"}, 400, "not an ONVIF camera"),
        ({"action": "left", "token": "nope"}, 404, "unknown token"),
    ):
        got, answer = gateway.api("Ptz", session=session, **({"token": "cam"} | params))
        assert got == status and words in answer["strCode"], (params, answer)
    for command, params, words in (
        ("SetPreset", {"presetname": " "}, "presetname must not be empty"),
        ("SetPreset", {}, "missing parameter 'presetname'"),
        ("DelPreset", {}, "missing parameter 'presettoken'"),
    ):
        got, answer = gateway.api(command, session=session, token="cam", **params)
        assert got == 400 and words in answer["strCode"], (command, answer)
    assert len(device.calls) == sent


def test_stream_uri_is_asked_again_when_the_stream_fails(make_gateway, device, camera_factory):
    """A rebooted camera hands out a different URI: the gateway follows it."""
    first = camera_factory(user="admin", password=SECRET, audio="none")
    device.profile("prof_main").stream_uri = plain_url(first)
    gw = make_gateway()
    session = gw.login()
    assert add_onvif(gw, session, device)[0] == 200
    viewer = WsViewer(gw.ws_url, "cam", session)
    viewer.start()
    try:
        assert viewer.wait_frames(10, 20), gw.log()[-2000:]
        second = camera_factory(user="admin", password=SECRET, audio="none")
        device.profile("prof_main").stream_uri = plain_url(second)
        asked = len(device.calls_of("GetStreamUri"))
        first.stop()
        moved = time.monotonic()
        before = len(viewer.frames)
        assert viewer.wait_frames(before + 10, 15), gw.log()[-2000:]
        print(f"stream back from the new URI after {time.monotonic() - moved:.2f} s")
    finally:
        viewer.stop()
    assert len(device.calls_of("GetStreamUri")) > asked
    assert viewer.connections == 1
    src = gw.api("GetSrc", session=session, token="cam")[1]["src"][0]
    assert src["strOnvifRtspUrl"] == plain_url(second) and src["bOnline"] is True


def test_onvif_search_finds_the_loopback_responder_within_the_timeout(make_gateway, device):
    responder = WsdResponder([device.xaddr], model="H5SS EMU 1", name="Front door")
    try:
        gw = with_users(make_gateway, onvif__strDiscoveryTarget=responder.target)
        session = gw.login()
        timeout = 1.5
        started = time.monotonic()
        status, answer = gw.api("OnvifSearch", session=session, timeout=timeout)
        elapsed = time.monotonic() - started
        print(f"OnvifSearch timeout={timeout} took {elapsed:.2f} s")
        assert status == 200, answer
        assert answer["device"] == [{"strIp": "127.0.0.1", "strPort": str(device.port),
                                     "strOnvifAddr": "/onvif/device_service", "strModel": "H5SS EMU 1",
                                     "strName": "Front door"}]
        assert timeout <= elapsed < timeout + 1.0
        assert len(responder.probes) == 2 and b"NetworkVideoTransmitter" in responder.probes[0]
        for params, code in (({"timeout": "99"}, 400), ({"timeout": "x"}, 400)):
            status, answer = gw.api("OnvifSearch", session=session, **params)
            assert status == code and "parameter 'timeout'" in answer["strCode"]
        assert gw.api("OnvifSearch", session=gw.login("viewer", "v"), timeout=1)[0] == 403
    finally:
        responder.stop()


@pytest.mark.unit
def test_probe_matches_to_other_probes_are_ignored():
    ours, theirs = "urn:uuid:ours", "urn:uuid:theirs"
    responder = WsdResponder(["http://127.0.0.1:8000/onvif/device_service http://[::1]:8000/x"])
    try:
        answer = responder._matches(ours)
    finally:
        responder.stop()
    assert [d.port for d in parse_matches(answer, ours)] == [8000]
    assert parse_matches(answer, theirs) == []
    assert parse_matches(b"<not xml", ours) == []
    assert b"NetworkVideoTransmitter" in PROBE.encode()


@pytest.mark.unit
def test_discovery_target_is_checked_at_start(tmp_path):
    path = tmp_path / "h5ss.conf"
    for target in ("239.255.255.250", "nowhere:3702", "127.0.0.1:0"):
        path.write_text(json.dumps({"onvif": {"strDiscoveryTarget": target}}))
        with pytest.raises(ConfigError, match="onvif.strDiscoveryTarget"):
            load_config(path)
    path.write_text("{}")
    assert load_config(path).settings.onvif.discovery_target == ("239.255.255.250", 3702)


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def open_player_as(gw, page, user: str, password: str, role: str, token: str) -> None:
    status, answer = gw.api("Login", user=user, password=md5(password))
    assert status == 200, answer
    page.goto(f"{gw.url}/login.html")
    page.evaluate("([s, r]) => { localStorage.setItem('h5ss.session', s); localStorage.setItem('h5ss.usertype', r) }",
                  [answer["strSession"], role])
    page.goto(f"{gw.url}/player.html?token={token}")


def test_player_plays_onvif_camera_and_its_ptz_buttons_move_it(make_gateway, device, page, browser):
    gw = with_users(make_gateway)
    assert add_onvif(gw, gw.login(), device)[0] == 200
    open_player_as(gw, page, "op", "o", "Operator", "cam")
    state = wait_playing(page)
    assert (state["width"], state["height"]) == (640, 360)

    # Hold "left": the camera moves at the slider's speed (0.5) until the button is let go.
    page.locator("#ptz").wait_for(state="visible")
    page.locator("[data-ptz=left]").hover()
    page.mouse.down()
    assert wait_until(lambda: device.calls_of("ContinuousMove"))
    assert not device.calls_of("Stop")
    page.mouse.up()
    assert wait_until(lambda: device.calls_of("Stop"))
    move = device.calls_of("ContinuousMove")[0]
    assert move.params["Velocity/PanTilt@x"] == "-0.5"
    assert device.calls.index(move) < device.calls.index(device.calls_of("Stop")[0])

    # Presets: save the position under a name, go to it, delete it.
    page.fill("#ptz-name", "Gate")
    page.click("#ptz-save")
    page.wait_for_function("() => [...document.querySelectorAll('#ptz-presets option')]"
                           ".some(o => o.textContent === 'Gate' && o.selected)")
    preset = page.eval_on_selector("#ptz-presets", "s => s.value")
    assert device.presets[preset] == "Gate"
    page.click("#ptz-goto")
    assert wait_until(lambda: [c.params["PresetToken"] for c in device.calls_of("GotoPreset")] == [preset])
    page.click("#ptz-delete")
    assert wait_until(lambda: preset not in device.presets)
    page.wait_for_function("t => ![...document.querySelectorAll('#ptz-presets option')].some(o => o.value === t)",
                           arg=preset)

    # A Viewer watches the same camera without the controls.
    context = browser.new_context()
    try:
        viewer_page = context.new_page()
        open_player_as(gw, viewer_page, "viewer", "v", "Viewer", "cam")
        viewer_page.wait_for_function("() => document.getElementById('src-name').textContent === 'Door'")
        assert viewer_page.locator("#ptz").is_hidden()
    finally:
        context.close()
