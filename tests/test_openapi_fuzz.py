"""Property-based fuzz of /api/v1 from its own description (/api/v1/openapi.json), with
schemathesis against a real gateway process: every command, valid and invalid calls
(schemathesis' positive and negative modes), at least 2,000 requests in all.

What must hold for every answer: no 5xx but the ones the document declares for that
command (502/503, when a camera or stream it depends on fails), never a traceback, the
JSON envelope on JSON answers, and the status, content type and answer schema the
document gives. `-m fuzz` selects it.

Everything stays on 127.0.0.1: the ONVIF camera, the WS-Discovery responder and the
HikCentral platform are the loopback emulators of tests/fixtures, and the case's address
parameters are pointed at them (or at a closed loopback port) before each call; waits
(OnvifSearch timeout, Record duration) are cut to a second or two.
"""

from __future__ import annotations

import json
import random
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from gateway.auth import hash_md5
from tests.conftest import FILE_SOURCE
from tests.fixtures.gateway import ADMIN_MD5, Gateway, md5
from tests.fixtures.hikcentral import HikCentralEmulator
from tests.fixtures.net import free_port
from tests.fixtures.onvif_device import OnvifDevice, Profile
from tests.fixtures.wsd_responder import WsdResponder

pytestmark = pytest.mark.fuzz

EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 40}  # per operation
# OnvifSearch waits its timeout (cut to 0.5 s) for answers; AddDeviceHik, without
# parameters, asks the platform for the same cameras each time (~0.4 s).
FEWER = {"OnvifSearch": 10, "AddDeviceHik": 20}
MIN_REQUESTS = 2000
APP_KEY, SECRET_KEY, ONVIF_PASSWORD = "fuzz-app", "fuzz-secret", "secret"
# Commands that wait for the stream's media: only token1 (the sample file, ready within a
# second) is handed to them, not the unreachable cameras (a 10 s wait each).
WAIT_FOR_MEDIA = {"Record", "PathRecord", "ManualRecordStart", "Snapshot", "PathSnapshot", "GetImage"}
ONVIF_COMMANDS = {"Ptz", "GetPresets", "SetPreset", "DelPreset"}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# aiohttp refuses a request line longer than this with its own text/plain 400, before any
# route (a negative case's over-long value, percent-encoded, can make one).
MAX_LINE = 8190


@dataclass
class Loopback:
    """Where the fuzz may send the gateway: the emulators and a closed loopback port."""

    onvif_port: int
    closed_port: int
    rng: random.Random = field(default_factory=lambda: random.Random(17))

    def port(self) -> str:
        return str(self.rng.choice([self.onvif_port, self.closed_port]))

    def camera_url(self, generated: Any) -> str:
        """A camera URL on loopback; the generated text goes in its path (it may still be
        invalid there, which is what a fuzz wants), never in its host."""
        scheme = self.rng.choice(["rtsp", "rtmp"])
        return f"{scheme}://127.0.0.1:{self.closed_port}/{urllib.parse.quote(str(generated), safe='')}"


def capped(value: Any, high: float) -> Any:
    """`high` for a value the gateway would read as a larger number (a negative case's
    "1e1" or "86400" too); other values as they are."""
    try:
        return high if float(str(value)) > high else value
    except ValueError:
        return value


@dataclass
class Sessions:
    """The Administrator's session (renewed if a call ended it) and a Viewer's, for UpdateUser."""

    gw: Gateway
    admin: str = ""
    viewer: str = ""

    def __post_init__(self) -> None:
        self.admin, self.viewer = self.gw.login(), self.gw.login("viewer", "v")

    def fresh_admin(self) -> str:
        return self.gw.login()


@pytest.fixture
def fuzz_target(make_gateway: Callable[..., Gateway]) -> Iterator[tuple[Gateway, Loopback]]:
    closed_port = free_port()
    profiles = [Profile("prof_main", "mainStream", stream_uri=f"rtsp://127.0.0.1:{closed_port}/main")]
    with (
        OnvifDevice(profiles, user="admin", password=ONVIF_PASSWORD) as camera,
        HikCentralEmulator(APP_KEY, SECRET_KEY) as platform,
    ):
        responder = WsdResponder([camera.xaddr])
        try:
            platform.rtmp_port = closed_port  # the cameras' live URLs lead nowhere, on loopback
            platform.add_device("FUZZ1", "NVR", [("hik1", "Hik 1")])
            gw = make_gateway(
                [dict(FILE_SOURCE)],
                start=False,
                onvif__strDiscoveryTarget=responder.target,
                hikvision__strHost=platform.url,
                hikvision__strAppKey=APP_KEY,
                hikvision__strSecretKey=SECRET_KEY,
                system__nLoginFailLimit=1000,
            )
            conf = json.loads(gw.conf_path.read_text())
            conf["user"]["users"] = [
                {"strUser": "admin", "strPasswd": hash_md5(ADMIN_MD5), "strUserType": "Administrator"},
                {"strUser": "viewer", "strPasswd": hash_md5(md5("v")), "strUserType": "Viewer"},
            ]
            gw.conf_path.write_text(json.dumps(conf))
            gw.start()
            status, answer = gw.api(
                "AddSrcONVIF",
                session=gw.login(),
                name="Fuzz ONVIF",
                token="onvifcam",
                ip="127.0.0.1",
                port=camera.port,
                user="admin",
                password=ONVIF_PASSWORD,
            )
            assert status == 200, answer
            yield gw, Loopback(camera.port, closed_port)
        finally:
            responder.stop()


@dataclass
class Fuzz:
    """Sends each generated case, the way a client would, and checks the answer."""

    gw: Gateway
    loopback: Loopback
    sessions: Sessions
    http: requests.Session = field(default_factory=requests.Session)
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    added: list[str] = field(default_factory=list)
    too_long: int = 0
    seconds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def prepare(self, name: str, query: dict[str, Any]) -> str:
        """Point the case at loopback, shorten waits, pick tokens that exist; the session to send."""
        rng, loopback = self.loopback.rng, self.loopback
        if "ip" in query:
            query["ip"] = "127.0.0.1"
        if "port" in query and str(query["port"]).isdigit():
            query["port"] = loopback.port()  # not another local service
        for key in ("url", "suburl"):
            if name in ("AddSrcRTSP", "AddSrcONVIF") and key in query:
                query[key] = loopback.camera_url(query[key])
        if name == "OnvifSearch":  # (its default is 5 s)
            query["timeout"] = capped(query.get("timeout", 0.5), 0.5)
        if "duration" in query:
            query["duration"] = capped(query["duration"], 2)
        if "token" in query and rng.random() < 0.6:
            if name in WAIT_FOR_MEDIA:
                query["token"] = "token1"
            elif name in ONVIF_COMMANDS:
                query["token"] = "onvifcam"
            elif name == "DelSrc":
                if self.added:
                    query["token"] = self.added.pop(rng.randrange(len(self.added)))
            elif not name.startswith("Add"):
                query["token"] = rng.choice(["token1", "onvifcam", *self.added[-3:]])
        if name == "Logout":
            return self.sessions.fresh_admin()
        if name == "UpdateUser":
            return self.sessions.viewer
        return self.sessions.admin

    def run(self, case: schemathesis.Case) -> None:
        """Send and check one case; a failure is kept (not raised: Hypothesis would replay it)."""
        name = case.operation.definition.raw["operationId"]
        query = dict(case.query or {})
        session = self.prepare(name, query)
        case.query = query
        started = time.monotonic()
        response = case.call(base_url=self.gw.url, session=self.http, params={"session": session}, timeout=60)
        self.seconds[name] += time.monotonic() - started
        self.sent[name] += 1
        try:
            self.check(name, query, case, response)
        except (AssertionError, BaseExceptionGroup) as e:
            self.failures.append(f"{name}: {e}"[:3000])

    def check(self, name: str, query: dict[str, Any], case: schemathesis.Case, response: schemathesis.Response) -> None:
        self.statuses[response.status_code] += 1
        where = f"{name} {response.status_code} {response.request.url[:300]}"
        assert b"Traceback" not in response.content, where
        if len(f"GET {response.request.path_url} HTTP/1.1") > MAX_LINE:
            assert response.status_code == 400, where
            self.too_long += 1
            return
        if response.status_code >= 500:
            declared = case.operation.definition.raw["responses"]
            assert str(response.status_code) in declared, f"undeclared server error: {where}: {response.text[:300]}"
        if response.headers.get("Content-Type", "").startswith("application/json"):
            body = response.json()
            assert isinstance(body.get("bStatus"), bool) and isinstance(body.get("strCode"), str), where
            if name.startswith("Add") and body["bStatus"] and query.get("token"):
                self.added.append(str(query["token"]))
            if response.status_code == 401 and name not in ("Login", "Logout"):
                self.sessions.admin = self.sessions.fresh_admin()  # a call ended it; go on
        case.validate_response(response, checks=CHECKS)


def run_operation(fuzz: Fuzz, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FEWER.get(operation.definition.raw["operationId"], EXAMPLES[mode]),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def each(case: schemathesis.Case) -> None:
        fuzz.run(case)

    try:
        each()
    except Unsatisfiable:
        pass  # nothing to negate (no parameters) or nothing valid left: the other mode covers it


@pytest.mark.timeout(600)
def test_fuzz_every_command_from_the_openapi_document(fuzz_target: tuple[Gateway, Loopback]):
    gw, loopback = fuzz_target
    schema = schemathesis.openapi.from_url(f"{gw.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzz = Fuzz(gw, loopback, Sessions(gw))
    started = time.monotonic()
    for operation in operations:
        for mode in EXAMPLES:
            run_operation(fuzz, operation, mode)
    elapsed = time.monotonic() - started
    total = sum(fuzz.sent.values())
    print(f"\nfuzz: {total} requests in {elapsed:.0f} s; statuses {dict(sorted(fuzz.statuses.items()))}")
    print(f"fuzz: per command {dict(sorted(fuzz.sent.items()))}; request line too long: {fuzz.too_long}")
    print(f"fuzz: slowest {[(n, round(s)) for n, s in fuzz.seconds.most_common(6)]}")
    assert not fuzz.failures, "\n\n".join(fuzz.failures)
    described = {op.definition.raw["operationId"] for op in operations}
    assert set(fuzz.sent) == described, "every command was called"
    assert total >= MIN_REQUESTS
    refusals = protocol_refusals(gw.log())
    print(f"fuzz: aiohttp's logged refusals of malformed requests: {refusals}")
    assert refusals <= fuzz.too_long


def protocol_refusals(log: str) -> int:
    """The tracebacks in the log, each of which must be aiohttp refusing a malformed request
    (an over-long request line): an error of the gateway's own fails the test."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    for i in starts:
        assert "aiohttp.server: Error handling request" in lines[i - 1], "\n".join(lines[i - 1 : i + 20])
        end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")), len(lines))
        assert lines[end].startswith("aiohttp.http_exceptions."), "\n".join(lines[i - 1 : end + 2])
    return len(starts)
