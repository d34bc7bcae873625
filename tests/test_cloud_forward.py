"""h5stream's `servertoken=` through a real cloud link: two gateway processes, an ONVIF
camera (the emulator, over a real GStreamer camera) that only the edge has as a source.
The cloud's users call commands with the edge's server token; the emulator records what
reached the camera."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import ADMIN_MD5, md5
from tests.fixtures.onvif_device import OnvifDevice, Profile
from tests.test_onvif import SECRET, add_onvif, plain_url, with_users
from tests.test_record import wait_for

EDGE = "edge1"


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    with RtspCamera(user="admin", password=SECRET, audio="none") as cam:
        yield cam


@pytest.fixture
def device(camera: RtspCamera) -> Iterator[OnvifDevice]:
    profiles = [Profile("prof_main", "mainStream", 640, 360, 25, 1000, stream_uri=plain_url(camera))]
    with OnvifDevice(profiles, user="admin", password=SECRET) as emulator:
        yield emulator


def edge_of(make_gateway, cloud, password_md5: str = ADMIN_MD5):
    """An edge gateway linked to `cloud` as its admin."""
    return make_gateway(
        cloud__bEnable=True,
        cloud__strServerName="Edge One",
        cloud__strServerToken=EDGE,
        cloud__strCloudIp="127.0.0.1",
        cloud__strCloudPort=str(cloud.port),
        cloud__strUser="admin",
        cloud__strPasswd=password_md5,
    )


def edge_online(cloud, session: str) -> bool:
    status, answer = cloud.api("GetServerList", session=session)
    return status == 200 and any(s["strServerToken"] == EDGE and s["bOnline"] for s in answer["server"])


def test_ptz_and_source_commands_with_servertoken_run_on_the_edge(make_gateway, device):
    cloud = with_users(make_gateway)
    edge = edge_of(make_gateway, cloud)
    assert add_onvif(edge, edge.login(), device)[0] == 200
    admin = cloud.login()
    assert wait_for(lambda: edge_online(cloud, admin), 10), edge.log()[-2000:]
    op, viewer = cloud.login("op", "o"), cloud.login("viewer", "v")

    # An Operator of the cloud moves the camera behind the edge (whose ONVIF client
    # connects to the camera on this first PTZ call).
    assert device.calls_of("ContinuousMove") == []
    status, answer = cloud.api("Ptz", session=op, servertoken=EDGE, token="cam", action="left", speed="0.5")
    assert status == 200 and answer["bStatus"], answer
    [move] = device.calls_of("ContinuousMove")
    assert move.params["Velocity/PanTilt@x"] == "-0.5" and move.params["ProfileToken"] == "prof_main"
    sent = len(device.calls)

    # The cloud's roles hold: a Viewer may not, and the edge never hears of it.
    status, answer = cloud.api("Ptz", session=viewer, servertoken=EDGE, token="cam", action="stop")
    assert status == 403 and "Operator" in answer["strCode"], answer
    assert len(device.calls) == sent

    # The edge's own answers come back as they are: its sources, its errors, a JPEG.
    status, answer = cloud.api("GetSrc", session=viewer, servertoken=EDGE)
    assert status == 200 and [s["strToken"] for s in answer["src"]] == ["cam"], answer
    status, answer = cloud.api("Ptz", session=op, servertoken=EDGE, token="nope", action="left")
    assert status == 404 and "nope" in answer["strCode"], answer
    status, kind, body = cloud.get(f"/api/v1/GetImage?session={viewer}&servertoken={EDGE}&token=cam")
    assert status == 200 and kind.startswith("image/jpeg") and body[:2] == b"\xff\xd8", (status, kind, body[:200])

    # What is not the edge's: an unknown server token, a command that stays on the cloud.
    status, answer = cloud.api("Ptz", session=op, servertoken="edge9", token="cam", action="left")
    assert status == 404 and "edge9" in answer["strCode"], answer
    status, answer = cloud.api("UpdateUser", session=admin, servertoken=EDGE, user="admin", oldpassword="x",
                               newpassword=md5("y"))
    assert status == 400 and "cannot be sent to an edge" in answer["strCode"], answer

    # The edge offline: 503 at once, nothing sent.
    edge.stop()
    assert wait_for(lambda: not edge_online(cloud, admin), 15)
    started = time.monotonic()
    status, answer = cloud.api("Ptz", session=op, servertoken=EDGE, token="cam", action="left")
    assert status == 503 and "offline" in answer["strCode"] and time.monotonic() - started < 2, answer
