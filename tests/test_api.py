"""The /api/v1 REST API against a real gateway process: sessions, roles, sources, errors."""

from __future__ import annotations

import json
import time

import pytest

import gateway.app  # noqa: F401 - imports every api module, which registers its commands
from gateway.api.commands import COMMANDS
from tests.fixtures.gateway import ADMIN_MD5, md5


def test_login_returns_session_and_timeout(gateway):
    status, answer = gateway.api("Login", user="admin", password=ADMIN_MD5)
    assert status == 200
    assert answer["bStatus"] is True and answer["nTimeout"] == 600
    assert len(answer["strSession"]) == 36


def test_wrong_password_is_refused_and_lock_after_five(gateway):
    for attempt in range(4):
        status, answer = gateway.api("Login", user="admin", password=md5("wrong"))
        assert status == 401 and answer["bStatus"] is False
        assert "tries left" in answer["strCode"]
    status, answer = gateway.api("Login", user="admin", password=md5("wrong"))
    assert status == 401 and "locked" in answer["strCode"]
    # Even the right password is refused while locked, and the answer says so.
    status, answer = gateway.api("Login", user="admin", password=ADMIN_MD5)
    assert status == 401 and "locked" in answer["strCode"]


def test_passwords_are_stored_as_salted_kdf(gateway):
    conf = json.loads(gateway.conf_path.read_text())
    stored = conf["user"]["users"][0]["strPasswd"]
    assert stored.startswith("pbkdf2_sha256$") and ADMIN_MD5 not in stored


@pytest.mark.parametrize("session", [None, "", "not-a-session", "00000000-0000-0000-0000-000000000000"])
def test_every_command_but_login_needs_a_session(gateway, session):
    public = {"login", "getloadingimage"}
    for name in COMMANDS:
        if name in public:
            continue
        status, answer = gateway.api(name, session=session, token="token1")
        assert status == 401, (name, answer)
        assert answer["bStatus"] is False and "session" in answer["strCode"]


def test_session_expires_without_keepalive(make_gateway):
    gw = make_gateway(system__nSessionTimeout=2)
    session = gw.login()
    time.sleep(1.2)
    assert gw.api("Keepalive", session=session)[0] == 200  # extends to 2 s from now
    time.sleep(1.2)
    assert gw.api("GetSrc", session=session)[0] == 200
    time.sleep(2.5)
    status, answer = gw.api("GetSrc", session=session)
    assert status == 401 and "expired" in answer["strCode"]


def test_logout_ends_session(gateway):
    session = gateway.login()
    assert gateway.api("Logout", session=session)[0] == 200
    assert gateway.api("GetSrc", session=session)[0] == 401


def test_unknown_command_is_json_404(gateway):
    status, answer = gateway.api("NoSuchThing", session=gateway.login())
    assert status == 404 and answer["bStatus"] is False


def test_system_and_run_info_are_real_numbers(gateway):
    session = gateway.login()
    status, info = gateway.api("GetSystemInfo", session=session)
    assert status == 200 and info["strVersion"] and len(info["strHostId"]) == 16
    time.sleep(2.5)  # one sampling period for the rates
    status, run = gateway.api("GetRunInfo", session=session)
    assert status == 200
    assert run["nTotalMemoryByte"] > 100 * 2**20
    assert 0 < run["nMemoryUsage"] < 100
    assert 0 <= run["nCPUUsage"] <= 100
    assert run["nTotalSpaceByte"] > run["nFreeSpaceByte"] > 0
    assert run["strRunTime"].startswith("0d ")


def test_get_src_masks_password_and_reports_state(make_gateway):
    gw = make_gateway()
    session = gw.login()
    status, answer = gw.api(
        "AddSrcRTSP", session=session, name="Cam", token="cam1", url="rtsp://127.0.0.1:9/x",
        user="u", password="s3cret!",
    )
    assert status == 200 and answer["bStatus"], answer
    status, answer = gw.api("GetSrc", session=session, token="cam1")
    src = answer["src"][0]
    assert src["strPasswd"] == "*****" and src["strUser"] == "u"
    assert "s3cret" not in json.dumps(answer)
    assert src["bOnline"] is False and src["nType"] == "H5_STREAM"


def _state(gw):
    return gw.conf_path.read_bytes()


@pytest.mark.parametrize(
    "command,params,status,words",
    [
        ("AddSrcRTSP", {"name": "x", "token": "token1", "url": "rtsp://127.0.0.1/a"}, 400, "already exists"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "file:///etc/passwd"}, 400, "not allowed"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "concat:/a.ts|/b.ts"}, 400, "not allowed"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "subfile:,,start,0,end,0,,:/etc/passwd"}, 400, "not allowed"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "rtsp://127.0.0.1:abc/x"}, 400, "port"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "rtsp:///nohost"}, 400, "host"),
        ("AddSrcRTSP", {"name": "x", "token": "../t2", "url": "rtsp://127.0.0.1/a"}, 400, "token"),
        ("AddSrcRTSP", {"name": "x", "token": "t2"}, 400, "url"),
        ("AddSrcRTSP", {"name": "x", "token": "t2", "url": "rtsp://h/a", "rtsptype": "bogus"}, 400, "rtsptype"),
        ("AddSrcFile", {"name": "x", "token": "t2", "url": "../conf/h5ss.conf"}, 400, "outside"),
        ("AddSrcFile", {"name": "x", "token": "t2", "url": "../../etc/passwd.mp4"}, 400, "outside"),
        ("AddSrcFile", {"name": "x", "token": "t2", "url": "/etc/hosts.mp4"}, 400, "outside"),
        ("AddSrcFile", {"name": "x", "token": "t2", "url": "file:h5ss-sample.mp4"}, 400, "plain file"),
        ("AddSrcFile", {"name": "x", "token": "t2", "url": "notes.txt"}, 400, "file type"),
        ("DelSrc", {"token": "nope"}, 404, "unknown token"),
        ("GetSrc", {"token": "nope"}, 404, "unknown token"),
        ("GetImage", {"token": "nope"}, 404, "unknown token"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(gateway, command, params, status, words):
    session = gateway.login()
    before = _state(gateway)
    got, answer = gateway.api(command, session=session, **params)
    assert got == status, answer
    assert answer["bStatus"] is False and words in answer["strCode"], answer
    assert _state(gateway) == before
    tokens = [s["strToken"] for s in gateway.api("GetSrc", session=session)[1]["src"]]
    assert tokens == ["token1"]


def test_sources_added_through_api_survive_restart(gateway):
    session = gateway.login()
    status, answer = gateway.api("AddSrcRTSP", session=session, name="Door", token="door", url="rtsp://127.0.0.1:9/s")
    assert status == 200, answer
    status, answer = gateway.api("AddSrcFile", session=session, name="Clip 2", token="clip2", url="h5ss-sample.mp4")
    assert status == 200, answer
    conf = json.loads(gateway.conf_path.read_text())
    assert any(k.endswith("Comment") for k in conf["http"])  # comments kept on save
    gateway.restart()
    session = gateway.login()
    tokens = [s["strToken"] for s in gateway.api("GetSrc", session=session)[1]["src"]]
    assert tokens == ["token1", "door", "clip2"]
    assert gateway.api("DelSrc", session=session, token="door")[0] == 200
    gateway.restart()
    session = gateway.login()
    tokens = [s["strToken"] for s in gateway.api("GetSrc", session=session)[1]["src"]]
    assert tokens == ["token1", "clip2"]


def test_viewer_and_operator_cannot_change_sources_or_users(make_gateway):
    from gateway.auth import hash_md5

    users = [
        {"strUser": "admin", "strPasswd": hash_md5(ADMIN_MD5), "strUserType": "Administrator"},
        {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
        {"strUser": "op", "strPasswd": hash_md5(md5("o")), "strUserType": "Operator"},
    ]
    gw = make_gateway(start=False)
    conf = json.loads(gw.conf_path.read_text())
    conf["user"]["users"] = users
    gw.conf_path.write_text(json.dumps(conf))
    gw.start()
    for name, password in (("viewer", "v"), ("op", "o")):
        session = gw.login(name, password)
        assert gw.api("GetSrc", session=session)[0] == 200
        status, answer = gw.api("AddSrcRTSP", session=session, name="x", token="x", url="rtsp://127.0.0.1/a")
        assert status == 403 and "Administrator" in answer["strCode"]
        assert gw.api("DelSrc", session=session, token="x")[0] in (403, 404)
        status, _ = gw.api("UpdateUser", session=session, user="admin", oldpassword=ADMIN_MD5, newpassword=md5("p"))
        assert status == 403
    # A user may change their own password.
    session = gw.login("viewer", "v")
    status, answer = gw.api("UpdateUser", session=session, user="viewer", oldpassword=md5("v"), newpassword=md5("n"))
    assert status == 200, answer
    assert gw.api("Login", user="viewer", password=md5("n"))[0] == 200


def test_get_image_is_a_jpeg_of_the_stream(gateway):
    session = gateway.login()
    status, ctype, body = gateway.get(f"/api/v1/GetImage?token=token1&session={session}")
    assert status == 200 and ctype == "image/jpeg"
    import av, io

    with av.open(io.BytesIO(body)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (640, 360)


def test_loading_image_and_static_pages(gateway):
    status, ctype, _ = gateway.get("/api/v1/GetLoadingImage")
    assert status == 200 and ctype.startswith("image/")
    status, ctype, body = gateway.get("/")
    assert status == 200 and b"<html" in body.lower()
    status, _, _ = gateway.get("/js/h5splayer.js")
    assert status == 200


def test_openapi_document_is_served_without_a_session_and_names_every_command(gateway):
    status, content_type, body = gateway.get("/api/v1/openapi.json")
    assert status == 200 and content_type.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    described = {path.removeprefix("/api/v1/").lower() for path in doc["paths"]} - {"openapi.json"}
    assert described == set(COMMANDS)
