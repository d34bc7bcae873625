"""The cloud link's wire format (formats/cloud_link.py) and the `cloud` config section."""

from __future__ import annotations

import hashlib
import json

import pytest

from gateway.auth import hash_md5
from gateway.config.file import ConfigError, load_config
from gateway.formats import cloud_link
from gateway.formats.cloud_link import LinkFormatError
from gateway.hub.packet import AudioParams, MediaPacket, StreamParams, VideoParams
from tests.fixtures.gateway import REPO

pytestmark = pytest.mark.unit

SPS = bytes.fromhex("6764000aacd9442684000003000400000300c83c489658")  # x264's 64x64 High profile
PPS = bytes.fromhex("68ebe3cb22c0")
MD5 = hashlib.md5(b"12345").hexdigest()


def test_media_frame_round_trip_keeps_every_field():
    for packet in (
        MediaPacket("video", 2**40, 2**40 + 3003, 3003, True, b"\x00\x00\x00\x02\x65\x88"),
        MediaPacket("audio", -1024, -1024, 1024, False, b"\x21\x10"),
        MediaPacket("g711", 0, 0, 160, False, bytes(160)),
    ):
        frame = cloud_link.pack_media(7, packet)
        assert frame[:4] == b"\x00\x00\x00\x07" and len(frame) == 26 + len(packet.data)
        assert cloud_link.unpack_media(frame) == (7, packet)


def test_media_header_layout_is_the_documented_one():
    frame = cloud_link.pack_media(1, MediaPacket("audio", 5, 6, 7, True, b"x"))
    assert frame == bytes.fromhex("00000001" "01" "01" "0000000000000005" "0000000000000006" "00000007") + b"x"


@pytest.mark.parametrize("frame,words", [
    (b"\x00" * 10, "shorter than its header"),
    (bytes.fromhex("00000001" "09" "00") + bytes(20), "unknown kind 9"),
])
def test_bad_media_frames_are_refused(frame, words):
    with pytest.raises(LinkFormatError, match=words):
        cloud_link.unpack_media(frame)


def test_params_round_trip_through_json():
    params = StreamParams(
        VideoParams.from_h264(SPS, PPS), AudioParams("aac", 48000, 2, bytes.fromhex("1190")), "PCMA"
    )
    text = json.dumps(cloud_link.params_to_json(params))
    assert cloud_link.params_from_json(json.loads(text)) == params
    video_only = StreamParams(VideoParams("h265", b"s", b"p", 1920, 1080, b"v"), None)
    assert cloud_link.params_from_json(cloud_link.params_to_json(video_only)) == video_only


@pytest.mark.parametrize("message,words", [
    ({"video": {"codec": "vp8"}}, "codec h264 or h265"),
    ({"video": {"codec": "h264", "sps": "!!", "pps": "", "vps": "", "width": 1, "height": 1}}, "'sps' is not base64"),
    ({"video": {"codec": "h264", "sps": "", "pps": "", "vps": "", "width": "1", "height": 1}}, "'width' must be a int"),
    ({"audio": {"codec": "opus"}}, "codec aac"),
    ({"g711": "G722"}, "g711 must be"),
])
def test_bad_params_are_refused(message, words):
    with pytest.raises(LinkFormatError, match=words):
        cloud_link.params_from_json(message)


def test_control_messages():
    assert cloud_link.decode(cloud_link.encode("subscribe", channel=3, token="cam")) == {
        "type": "subscribe", "channel": 3, "token": "cam"
    }
    for text in ("[1]", "{}", '{"type": 1}', "not json"):
        with pytest.raises(LinkFormatError):
            cloud_link.decode(text)
    with pytest.raises(LinkFormatError, match="'channel' must be a int"):
        cloud_link.field({"type": "unsubscribe", "channel": True}, "channel", int)


def test_proof_key_is_the_digest_the_cloud_stores():
    """The edge derives from the MD5 the same key the cloud keeps, so a proof checks out
    against the stored hash alone, and a wrong password or another nonce or token does not."""
    stored = hash_md5(MD5, "00112233445566778899aabbccddeeff", 1000)
    _, iterations, salt, digest = stored.split("$")
    key = cloud_link.link_key(MD5.upper(), salt, int(iterations))
    assert key == bytes.fromhex(digest)
    good = cloud_link.proof(key, "cn", "en", "edge-1")
    assert good == cloud_link.proof(bytes.fromhex(digest), "cn", "en", "edge-1")
    assert good != cloud_link.proof(cloud_link.link_key(hashlib.md5(b"x").hexdigest(), salt, 1000), "cn", "en", "edge-1")
    assert good != cloud_link.proof(key, "cn2", "en", "edge-1")
    assert good != cloud_link.proof(key, "cn", "en", "edge-2")


def write_conf(tmp_path, **cloud):
    conf = json.loads((REPO / "conf" / "h5ss.conf").read_text())
    conf["cloud"].update(cloud)
    path = tmp_path / "conf" / "h5ss.conf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(conf))
    return path


EDGE = dict(bEnable=True, strServerToken="edge-1", strCloudIp="127.0.0.1", strCloudPort="8080", strUser="admin",
            strPasswd=MD5)


def test_cloud_settings_typed(tmp_path):
    settings = load_config(write_conf(tmp_path, **(EDGE | dict(strCloudPort=9000, bSSL=True)))).settings.cloud
    assert settings.enable and settings.server_token == "edge-1" and settings.cloud_port == 9000
    assert settings.url == "wss://127.0.0.1:9000/api/v1/h5scloudlink" and settings.ssl_verify
    default = load_config(REPO / "conf" / "h5ss.conf").settings.cloud
    assert not default.enable and default.cloud_port == 0


@pytest.mark.parametrize("change,words", [
    (dict(strServerToken="edge_1"), "cloud.strServerToken: 'edge_1' must be 1-32 letters, digits or '-' (no '_')"),
    (dict(strServerToken="x" * 33), "cloud.strServerToken"),
    (dict(strServerToken=""), "cloud.strServerToken: must be set"),
    (dict(strCloudIp=""), "cloud.strCloudIp: must be set"),
    (dict(strCloudPort="80a"), "cloud.strCloudPort: '80a' is not a port number"),
    (dict(strCloudPort="70000"), "cloud.strCloudPort: '70000'"),
    (dict(strUser=""), "cloud.strUser: must be set"),
    (dict(strPasswd="12345"), "cloud.strPasswd: must be the MD5 hex"),
    (dict(bSSLVerify="no"), "cloud.bSSLVerify: expected true or false"),
])
def test_bad_cloud_config_names_the_key(tmp_path, change, words):
    with pytest.raises(ConfigError) as info:
        load_config(write_conf(tmp_path, **(EDGE | change)))
    assert words in str(info.value)


def test_disabled_cloud_section_is_not_checked_beyond_the_token(tmp_path):
    load_config(write_conf(tmp_path, bEnable=False, strCloudPort="", strPasswd="nope"))
    with pytest.raises(ConfigError, match="cloud.strServerToken"):
        load_config(write_conf(tmp_path, bEnable=False, strServerToken="a_b"))
