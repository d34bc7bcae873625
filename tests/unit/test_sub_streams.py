"""Main and sub streams: the profile a client asks for, which sources have a sub stream and
from what, the manager's lookup, and the profile in HLS playlist URIs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.hub.output import OutputRegistry
from gateway.hub.profile import MAIN, SUB, profile_of
from gateway.hub.streams import StreamManager
from gateway.ingest import SourceError, make_source, make_sub_source
from gateway.ingest import onvif as onvif_ingest
from gateway.ingest.hikvision import HikvisionSource
from gateway.ingest.onvif import OnvifSource
from gateway.ingest.stream import StreamSource
from gateway.outputs.hls.http import Ask, uri_query
from gateway.vendors.hikvision.client import HikClient, PlatformSettings
from gateway.vendors.onvif.client import Profile
from tests.fixtures.hub import RecordingInput
from tests.fixtures.net import run_async


def conf(**raw: Any) -> SourceConf:
    return SourceConf.from_json({"strToken": "t", **raw}, "t")


# -- profile= ----------------------------------------------------------------------------


@pytest.mark.parametrize("value,profile", [(None, MAIN), ("", MAIN), ("main", MAIN), ("sub", SUB)])
def test_profile_is_main_by_default_or_sub(value, profile):
    assert profile_of(value) == profile


@pytest.mark.parametrize("value", ["Main", "sd", "undefined", "sub " * 20])
def test_any_other_profile_is_refused_with_its_reason(value):
    with pytest.raises(ValueError, match=r"^profile must be main or sub, not '") as refused:
        profile_of(value)
    assert len(str(refused.value)) < 80


# -- which sources have a sub stream ---------------------------------------------------------


def test_strurlsub_is_an_h5_stream_field_only():
    assert conf(nType="H5_STREAM", strUrl="rtsp://cam/main").raw["strUrlSub"] == ""
    assert conf(nType="H5_STREAM", strUrl="rtsp://cam/main").url_sub == ""
    assert "strUrlSub" not in conf(nType="H5_FILE", strUrl="a.mp4").raw
    assert conf(nType="H5_FILE", strUrl="a.mp4").url_sub == ""


def test_an_rtsp_source_has_a_sub_stream_from_its_sub_url_with_the_same_credentials():
    c = conf(nType="H5_STREAM", strUrl="rtsp://cam/main", strUrlSub="rtmp://cam/live/sub", strUser="u",
             strPasswd="p", nRTSPType="H5_RTSP_UDP")
    sub = make_sub_source(c)
    assert isinstance(sub, StreamSource)
    assert (sub.url, sub.user, sub.password, sub.rtsp_type) == ("rtmp://cam/live/sub", "u", "p", "H5_RTSP_UDP")
    assert make_sub_source(conf(nType="H5_STREAM", strUrl="rtsp://cam/main")) is None
    with pytest.raises(SourceError, match="scheme file: is not allowed"):
        make_sub_source(conf(nType="H5_STREAM", strUrl="rtsp://cam/main", strUrlSub="file:/etc/passwd"))


def test_files_have_no_sub_stream(tmp_path: Path):
    assert make_sub_source(conf(nType="H5_FILE", strUrl="a.mp4")) is None
    assert make_source(conf(nType="H5_FILE", strUrl="a.mp4"), tmp_path) is not None


ONVIF = {"nType": "H5_ONVIF", "strSrcIpAddress": "127.0.0.1", "strSrcPort": "8000"}


def test_an_onvif_source_has_a_sub_stream_when_a_sub_profile_is_named_or_picked():
    auto = make_sub_source(conf(**ONVIF))
    assert isinstance(auto, OnvifSource) and auto.profile == SUB and auto.auto
    named = make_sub_source(conf(**ONVIF, bOnvifProfileAuto=False, strOnvifProfileMain="a", strOnvifProfileSub="b"))
    assert isinstance(named, OnvifSource) and named.wanted_sub == "b"
    assert make_sub_source(conf(**ONVIF, bOnvifProfileAuto=False, strOnvifProfileMain="a")) is None


def test_a_hikcentral_source_asks_for_the_sub_quality_for_its_sub_stream():
    client = HikClient(PlatformSettings("http://127.0.0.1:9", "k", "s", 120, "main"))
    c = conf(nType="H5_HIKVISION", strHikDeviceSerial="D1", strHikCameraId="cam1")
    sub = make_sub_source(c, client)
    assert isinstance(sub, HikvisionSource) and sub.quality == "sub"
    assert HikvisionSource.from_conf(c, client).quality == "main"
    assert set(sub.describe()) == {"strHikSubUrlExpires", "nHikSubUrlsFetched"}
    assert set(HikvisionSource.from_conf(c, client).describe()) == {"strHikUrlExpires", "nHikUrlsFetched"}


class FakeDevice:
    """OnvifDevice's calls the source makes, over a fixed list of profiles."""

    def __init__(self, profiles: list[Profile]):
        self.listed = profiles

    def __call__(self, endpoint: Any) -> FakeDevice:
        return self

    async def __aenter__(self) -> FakeDevice:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def profiles(self) -> list[Profile]:
        return self.listed

    async def stream_uri(self, token: str) -> str:
        return f"rtsp://127.0.0.1/{token}"


def profile(token: str, codec: str = "H264") -> Profile:
    return Profile(token, token, codec, 640, 360, 25, 1000, False)


@pytest.mark.parametrize("listed,main_url,sub_url", [
    (["big", "small"], "rtsp://127.0.0.1/big", "rtsp://127.0.0.1/small"),
    (["jpeg", "big", "small"], "rtsp://127.0.0.1/big", "rtsp://127.0.0.1/small"),
    (["big"], "rtsp://127.0.0.1/big", "rtsp://127.0.0.1/big"),  # no second H.264 profile: the sub stream is main
])
def test_an_onvif_sub_stream_streams_the_sub_profile_or_else_the_main_one(monkeypatch, listed, main_url, sub_url):
    profiles = [profile(t, "JPEG" if t == "jpeg" else "H264") for t in listed]
    monkeypatch.setattr(onvif_ingest, "OnvifDevice", FakeDevice(profiles))
    main, sub = OnvifSource.from_conf(conf(**ONVIF)), OnvifSource.from_conf(conf(**ONVIF), SUB)
    assert run_async(main.stream_url) == main_url
    assert run_async(sub.stream_url) == sub_url
    assert sub.describe() == {"strOnvifSubRtspUrl": sub_url}
    assert main.describe()["strOnvifRtspUrl"] == main_url


# -- the manager ---------------------------------------------------------------------------


def test_the_manager_serves_a_sub_stream_or_else_the_main_one_and_closes_both():
    manager = StreamManager(SourceSettings(1.0), OutputRegistry())
    main_input, sub_input, other = RecordingInput(), RecordingInput(), RecordingInput()
    always = conf(nConnectType="H5_ALWAYS")
    main = manager.add(always, main_input, sub_input)
    sub = manager.get("t", SUB)
    assert sub is not None and sub is not main and sub.profile == SUB and main.profile == MAIN
    assert manager.get("t") is main and manager.get("t", MAIN) is main and manager.sub("t") is sub
    assert sub.conf is always and sub.token == "t" and sub.label == "t/sub" and main.label == "t"
    # H5_ALWAYS holds the main stream up; the sub stream is on demand.
    assert main_input.running and not sub_input.starts and not sub.always_on

    lone = manager.add(SourceConf.from_json({"strToken": "u"}, "u"), other)
    assert manager.get("u", SUB) is lone and manager.sub("u") is None

    renamed = conf(nConnectType="H5_ALWAYS", strName="new name")
    manager.rename(renamed)
    assert main.conf is renamed and sub.conf is renamed

    sub.start()
    manager.remove("t")
    assert not main_input.running and not sub_input.running
    assert manager.get("t") is None and manager.get("t", SUB) is None and manager.sub("t") is None


# -- HLS playlist URIs -------------------------------------------------------------------------


def ask(query: dict[str, str], auth: bool = True) -> Ask:
    gw: Any = SimpleNamespace(settings=SimpleNamespace(http=SimpleNamespace(auth=auth)))
    no_signer: Any = None  # uri_query only copies an hlstoken, it never checks one
    no_grants: Any = None  # uri_query reads only the query
    return Ask(gw, no_signer, no_grants, "v2", "t", "hls.m3u8", query, b"", lambda response: None)


def test_hls_playlist_uris_carry_the_sub_profile_beside_the_credential():
    assert uri_query(ask({"session": "S"})) == b"?session=S"
    assert uri_query(ask({"session": "S", "profile": "main"})) == b"?session=S"
    assert uri_query(ask({"session": "S", "profile": "sub"})) == b"?session=S&profile=sub"
    assert uri_query(ask({"hlstoken": "1.ab", "profile": "sub"})) == b"?hlstoken=1.ab&profile=sub"
    assert uri_query(ask({"profile": "sub"}, auth=False)) == b"?profile=sub"
    assert uri_query(ask({}, auth=False)) == b""
    assert uri_query(ask({"profile": "sub"})) == b"?profile=sub"  # granted by the socket's cookie
