"""HTTPS and WSS on nHTTPSPort once gencert.sh has made a certificate."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request

import aiohttp

from tests.fixtures.gateway import ADMIN_MD5, REPO
from tests.fixtures.net import free_port, run_async


def test_gencert_then_https_and_wss(make_gateway, tmp_path):
    gw = make_gateway(start=False)
    result = subprocess.run(["bash", str(REPO / "gencert.sh"), "localhost", "127.0.0.1"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "CERT_DIR": str(gw.root / "certs")})
    assert result.returncode == 0, result.stderr
    https_port = free_port()
    conf = json.loads(gw.conf_path.read_text())
    conf["http"]["nHTTPSPort"] = https_port
    conf["source"]["src"] = [{"strName": "S", "strToken": "token1", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}]
    gw.conf_path.write_text(json.dumps(conf))
    gw.start()
    context = ssl.create_default_context(cafile=str(gw.root / "certs" / "server.crt"))
    with urllib.request.urlopen(
        f"https://127.0.0.1:{https_port}/api/v1/Login?user=admin&password={ADMIN_MD5}", context=context, timeout=10
    ) as r:
        session = json.loads(r.read())["strSession"]

    async def first_frames() -> tuple[str, bytes]:
        async with aiohttp.ClientSession() as http:
            url = f"wss://127.0.0.1:{https_port}/api/v1/h5swsapi?token=token1&session={session}"
            async with http.ws_connect(url, ssl=context) as ws:
                mime = (await ws.receive(timeout=20)).data.decode()
                init = (await ws.receive(timeout=20)).data
                return mime, init

    mime, init = run_async(first_frames)
    assert mime.startswith("video/mp4; codecs=")
    assert init[4:8] == b"ftyp"
