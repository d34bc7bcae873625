"""`servertoken=` on the cloud: which commands go to an edge, and what the caller gets back
when the edge is unknown, offline, slow, or answers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.api.forward import ForwardedAnswer, forward, local_api
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit


class FakeEdge:
    def __init__(self, online: bool = True, answer: ForwardedAnswer | None = None, slow: bool = False):
        self.online = online
        self.answer = answer or ForwardedAnswer(200, "application/json", b'{"bStatus": true, "strCode": "ok"}')
        self.slow = slow
        self.asked: list[tuple[str, dict[str, str]]] = []

    async def request(self, command: str, query: dict[str, str]) -> ForwardedAnswer:
        self.asked.append((command, query))
        if self.slow:
            raise TimeoutError
        return self.answer


def call(edges: dict[str, FakeEdge], name: str, query: str) -> tuple[int, str, bytes]:
    async def main() -> tuple[int, str, bytes]:
        gw = SimpleNamespace(edges=edges)
        request = make_mocked_request("GET", f"/api/v1/{name}?{query}")
        response = await forward(gw, request, name)  # type: ignore[arg-type]
        assert response.body is not None
        return response.status, response.content_type, bytes(response.body)  # type: ignore[arg-type]

    return run_async(main)


def test_the_command_goes_to_the_edge_without_the_callers_session_and_its_answer_comes_back():
    jpeg = ForwardedAnswer(200, "image/jpeg", b"\xff\xd8jpeg")
    edge = FakeEdge(answer=jpeg)
    status, kind, body = call({"edge1": edge}, "GetImage", "token=cam&servertoken=edge1&session=secret")
    assert (status, kind, body) == (200, "image/jpeg", b"\xff\xd8jpeg")
    assert edge.asked == [("GetImage", {"token": "cam"})]


@pytest.mark.parametrize(
    ("edges", "name", "status", "words"),
    [
        ({}, "Ptz", 404, "unknown server token 'edge1'"),
        ({"edge1": FakeEdge(online=False)}, "Ptz", 503, "edge 'edge1' is offline"),
        ({"edge1": FakeEdge(slow=True)}, "Ptz", 504, "did not answer Ptz in time"),
        ({"edge1": FakeEdge()}, "UpdateUser", 400, "UpdateUser cannot be sent to an edge"),
        ({"edge1": FakeEdge()}, "DownloadRecord", 400, "cannot be sent to an edge"),
    ],
)
def test_what_cannot_be_forwarded_gets_a_clear_error(edges, name, status, words):
    got, kind, body = call(edges, name, "token=cam&servertoken=edge1&action=left")
    assert got == status and kind == "application/json"
    answer = json.loads(body)
    assert answer["bStatus"] is False and words in answer["strCode"], answer
    if status == 400:  # refused on the cloud: the edge never hears of it
        assert all(not edge.asked for edge in edges.values())


@pytest.mark.parametrize(
    ("bind", "port", "https_port", "url"),
    [
        ("0.0.0.0", 8080, 8443, "http://127.0.0.1:8080"),
        ("10.0.0.5", 8080, 0, "http://10.0.0.5:8080"),
        ("::", 0, 8443, "https://[::1]:8443"),
        ("127.0.0.1", 0, 0, None),
    ],
)
def test_the_edge_runs_a_command_on_its_own_api_where_it_listens(bind, port, https_port, url):
    http = SimpleNamespace(bind=bind, port=port, https_port=https_port)
    assert local_api(SimpleNamespace(settings=SimpleNamespace(http=http))) == url  # type: ignore[arg-type]
