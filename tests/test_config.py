"""Config loading: one clear error naming the key, comments kept, atomic saves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.file import ConfigError, load_config
from tests.fixtures.gateway import REPO


def write_conf(tmp_path: Path, change) -> Path:
    conf = json.loads((REPO / "conf" / "h5ss.conf").read_text())
    change(conf)
    path = tmp_path / "conf" / "h5ss.conf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(conf))
    return path


def set_key(section, key, value):
    return lambda conf: conf[section].__setitem__(key, value)


def add_src(**fields):
    base = {"strName": "x", "strToken": "x", "nType": "H5_STREAM", "strUrl": "rtsp://127.0.0.1/x"}
    return lambda conf: conf["source"]["src"].append(base | fields)


@pytest.mark.parametrize("change,words", [
    (set_key("http", "nHTTPPort", "8080"), "http.nHTTPPort: expected a whole number"),
    (set_key("http", "bAuth", "yes"), "http.bAuth: expected true or false"),
    (set_key("hls", "nHLSSinkType", "H5_HLS_V9"), "hls.nHLSSinkType: 'H5_HLS_V9' is not one of"),
    (set_key("http", "nHTTPSPort", 8080), "http.nHTTPSPort: port 8080 is already used by http.nHTTPPort"),
    (set_key("rtsp", "nRTSPPort", 70000), "rtsp.nRTSPPort: 70000 is not a port number"),
    (add_src(strToken="token1"), "source.src[1].strToken: duplicate token 'token1'"),
    (add_src(nConnectType="SOMETIMES"), "source.src[1].nConnectType: 'SOMETIMES' is not one of"),
    (add_src(strToken="a/b"), "source.src[1].strToken"),
    (set_key("system", "nSessionTimeout", 0), "system.nSessionTimeout: must be greater than 0"),
    (set_key("hls", "nHLSDuration", 0), "hls.nHLSDuration: must be greater than 0"),
    (set_key("system", "nRecordSegmentSec", 0), "system.nRecordSegmentSec: must be greater than 0"),
    (set_key("system", "nDiskFullPercent", 101), "system.nDiskFullPercent: must be 1-100"),
    (add_src(bRec="yes"), "source.src[1].bRec: expected true or false"),
    (set_key("hikvision", "strHost", "ftp://platform.example"), "hikvision.strHost: 'ftp://platform.example': expected"),
    (set_key("hikvision", "strHost", "https://h.example/api"), "hikvision.strHost: 'https://h.example/api': give only"),
    (set_key("hikvision", "nUrlValiditySec", 5), "hikvision.nUrlValiditySec: must be at least 10"),
    (set_key("hikvision", "strQuality", "best"), "hikvision.strQuality: 'best' is not one of main, sub"),
    (add_src(nType="H5_HIKVISION", strHikCameraId=7), "source.src[1].strHikCameraId: expected a string"),
])
def test_bad_config_names_the_key(tmp_path, change, words):
    path = write_conf(tmp_path, change)
    with pytest.raises(ConfigError, match=None) as info:
        load_config(path)
    assert words in str(info.value)
    # The command line stops with exit code 2 and the same one-line message.
    result = subprocess.run([sys.executable, "-m", "gateway", "--conf", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == f"h5ss: config error: {info.value}"


@pytest.mark.unit
def test_not_json_says_where(tmp_path):
    path = tmp_path / "h5ss.conf"
    path.write_text('{"http": {"nHTTPPort": 80,}}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1, column 27"):
        load_config(path)


@pytest.mark.unit
def test_save_keeps_comments_and_unknown_keys_and_is_atomic(tmp_path):
    path = write_conf(tmp_path, lambda conf: conf["http"].__setitem__("xVendorKey", 7))
    config = load_config(path)
    config.save()
    saved = json.loads(path.read_text())
    assert saved["http"]["xVendorKey"] == 7
    assert saved["http"]["nHTTPPortComment"].startswith("Plain HTTP")
    assert saved["source"]["src"][0]["strUrlComment"]
    assert [p.name for p in path.parent.iterdir()] == ["h5ss.conf"]  # no temp file left


@pytest.mark.unit
def test_default_config_loads():
    config = load_config(REPO / "conf" / "h5ss.conf")
    assert list(config.sources) == ["token1"]
    assert config.settings.root == REPO
