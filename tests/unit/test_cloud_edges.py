"""The cloud link's moving parts without sockets: the cloud's Edge (remote sources as hub
Streams, channels, what an edge may say, requests), the edge's LinkChannel (bounded queue,
skip to a keyframe), LinkSession's narrow set of cloud commands, and Auth's
challenge-response check with its lockout."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.auth import Auth, AuthError, hash_md5
from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.formats import cloud_link
from gateway.formats.cloud_link import LinkFormatError
from gateway.hub.output import OutputRegistry
from gateway.hub.packet import MediaPacket, StreamParams, VideoParams
from gateway.hub.streams import StreamManager
from gateway.ingest.cloud import edges
from gateway.ingest.cloud.edges import Edge, EdgeRegistry
from gateway.outputs.cloud import channel as channel_module
from gateway.outputs.cloud import session as session_module
from gateway.outputs.cloud.channel import LinkChannel
from gateway.outputs.cloud.session import LinkSession
from tests.fixtures.net import run_async

pytestmark = pytest.mark.unit

SPS = bytes.fromhex("6764000aacd9442684000003000400000300c83c489658")
PPS = bytes.fromhex("68ebe3cb22c0")
PARAMS = StreamParams(VideoParams.from_h264(SPS, PPS), None)
MD5 = hashlib.md5(b"12345").hexdigest()


def frame(dts: int, keyframe: bool, size: int = 2) -> MediaPacket:
    return MediaPacket("video", dts, dts, 3600, keyframe, b"\x00\x00\x00\x02\x65\x88" + bytes(size))


def source(token: str, sub: bool = False, name: str = "Cam") -> dict[str, Any]:
    return {"token": token, "name": name, "nType": "H5_STREAM", "bOnline": True, "codec": "h264", "width": 64,
            "height": 64, "bSubStream": sub}


class Cloud:
    """A registry over a real StreamManager, with one edge whose link is a list of sent messages."""

    def __init__(self, local: tuple[str, ...] = ()) -> None:
        self.streams = StreamManager(SourceSettings(0.05), OutputRegistry())
        config: Any = SimpleNamespace(sources={t: None for t in local})
        self.registry = EdgeRegistry(self.streams, config)
        self.sent: list[dict[str, Any]] = []
        self.edge = self.registry.edge("edge1")
        self.edge.attach(lambda text: self.sent.append(json.loads(text)), "127.0.0.1", "Edge One")

    def say(self, kind: str, **fields: Any) -> None:
        self.edge.on_control({"type": kind, **fields})


def test_remote_sources_become_cloud_streams_and_follow_the_edge_list() -> None:
    async def main() -> None:
        cloud = Cloud(local=("edge1_taken",))
        cloud.say("sources", src=[source("cam", sub=True), source("taken"), source("x" * 64)])
        # Served as {serverToken}_{token}; not a local token, not one too long to be a token.
        assert cloud.registry.remote_tokens() == ["edge1_cam"]
        stream = cloud.streams.get("edge1_cam")
        assert stream is not None and stream.describe() == {"strServerToken": "edge1", "strOriginalToken": "cam"}
        assert cloud.streams.sub("edge1_cam") is not None and not stream.running  # on demand
        assert cloud.registry.source("edge1_cam") == (cloud.edge, cloud.edge.sources["cam"])
        assert cloud.registry.source("edge2_cam") is None and cloud.registry.source("edge1") is None
        cloud.say("sources", src=[source("cam", sub=True, name="Renamed")])
        assert cloud.streams.get("edge1_cam") is stream and stream.conf.name == "Renamed"
        local = cloud.streams.add(SourceConf.from_json({"strToken": "edge1_taken"}, "x"), object())  # type: ignore[arg-type]
        cloud.say("sources", src=[])
        assert cloud.streams.get("edge1_cam") is None and cloud.registry.remote_tokens() == []
        assert cloud.streams.get("edge1_taken") is local  # an edge never removes the cloud's own source

    run_async(main)


def test_a_cloud_stream_subscribes_while_it_runs_and_resubscribes_when_the_edge_returns() -> None:
    async def main() -> None:
        cloud = Cloud()
        cloud.say("sources", src=[source("cam")])
        stream = cloud.streams.get("edge1_cam")
        assert stream is not None
        stream.acquire()
        assert cloud.sent == [{"type": "subscribe", "channel": 1, "token": "cam", "profile": "main"}]
        cloud.say("params", channel=1, **cloud_link.params_to_json(PARAMS))
        cloud.edge.on_media(cloud_link.pack_media(1, frame(0, True)))
        cloud.edge.on_media(cloud_link.pack_media(9, frame(0, True)))  # a channel not open: ignored
        assert stream.online and stream.params == PARAMS and stream.packets_in == 1
        assert cloud.edge.channels == 1 and cloud.edge.frames_in == 2

        cloud.edge.detach()  # the link drops: offline, the viewer stays
        assert stream.state == "offline" and stream.last_error == "edge edge1 offline" and stream.viewers == 1
        cloud.edge.attach(lambda text: cloud.sent.append(json.loads(text)), "127.0.0.1", "Edge One")
        assert cloud.sent[-1] == {"type": "subscribe", "channel": 2, "token": "cam", "profile": "main"}
        cloud.say("params", channel=2, **cloud_link.params_to_json(PARAMS))
        cloud.edge.on_media(cloud_link.pack_media(1, frame(3600, True)))  # the old channel: ignored
        cloud.edge.on_media(cloud_link.pack_media(2, frame(0, True)))
        assert stream.online and stream.packets_in == 2 and stream.reconnects == 1

        cloud.say("end", channel=2, reason="camera gone")
        assert stream.state == "offline" and stream.last_error == "edge edge1: camera gone"
        cloud.say("params", channel=2, **cloud_link.params_to_json(PARAMS))  # a new session on the channel
        cloud.edge.on_media(cloud_link.pack_media(2, frame(3600, True)))
        assert stream.online and stream.packets_in == 3
        stream.release()
        await asyncio.sleep(0.1)  # the linger
        assert not stream.running and cloud.edge.channels == 0
        assert cloud.sent[-1] == {"type": "unsubscribe", "channel": 2}
        stream.acquire()
        stream.stop()
        assert cloud.sent[-1] == {"type": "unsubscribe", "channel": 3}

    run_async(main)


@pytest.mark.parametrize("message", [
    {"type": "subscribe", "channel": 1, "token": "cam"},
    {"type": "request", "id": "1", "command": "DelSrc", "query": {}},
    {"type": "hello"},
    {"type": "sources", "src": [{"token": "../x"}]},
    {"type": "sources", "src": "cam"},
    {"type": "params", "channel": "1"},
])
def test_an_edge_may_say_only_what_concerns_its_own_channels(message: dict[str, Any]) -> None:
    async def main() -> None:
        with pytest.raises(LinkFormatError):
            Cloud().edge.on_control(message)

    run_async(main)


def test_requests_are_answered_by_id_and_fail_in_time() -> None:
    async def main() -> None:
        cloud = Cloud()
        ask = asyncio.ensure_future(cloud.edge.request("GetSrc", {"token": "cam"}))
        await asyncio.sleep(0)
        request = cloud.sent[-1]
        assert request == {"type": "request", "id": request["id"], "command": "GetSrc", "query": {"token": "cam"}}
        cloud.say("response", id="999", status=200, contentType="text/plain", body="")  # nobody asked: ignored
        cloud.say("response", id=request["id"], status=404, contentType="application/json",
                  body=base64.b64encode(b'{"bStatus":false}').decode())
        answer = await ask
        assert (answer.status, answer.content_type, answer.body) == (404, "application/json", b'{"bStatus":false}')

        ask = asyncio.ensure_future(cloud.edge.request("GetSrc", {}))
        await asyncio.sleep(0)
        cloud.edge.detach()
        with pytest.raises(TimeoutError):
            await ask
        with pytest.raises(TimeoutError):  # offline
            await cloud.edge.request("GetSrc", {})

    run_async(main)


def test_a_request_with_no_answer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edges, "REQUEST_TIMEOUT", 0.05)

    async def main() -> None:
        cloud = Cloud()
        with pytest.raises(TimeoutError):
            await cloud.edge.request("Ptz", {})
        assert cloud.edge._pending == {}

    run_async(main)


def test_a_slow_link_channel_skips_to_the_next_keyframe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_module, "QUEUE_BYTES", 1000)
    control: list[str] = []
    stream: Any = SimpleNamespace(token="cam", profile="main")
    channel = LinkChannel(4, "cam", "main", stream, control.append, lambda: None)
    channel.on_params(PARAMS)
    assert json.loads(control[0])["type"] == "params" and json.loads(control[0])["channel"] == 4
    channel.on_packet(frame(0, True, 400))
    channel.on_packet(frame(1, False, 400))
    channel.on_packet(frame(2, False, 400))  # would pass 1000 bytes: dropped, and so are the rest of the GOP
    channel.on_packet(MediaPacket("audio", 3, 3, 1024, True, b"aac"))
    channel.on_packet(frame(4, False, 10))
    assert [cloud_link.unpack_media(f)[1].dts for f in channel.frames] == [0, 1] and channel.skip.skips == 1
    assert channel.pop() and channel.pop() and channel.queued == 0
    channel.on_packet(frame(5, False, 10))  # room again, but not a keyframe
    channel.on_packet(frame(6, True, 10))
    channel.on_packet(frame(7, False, 10))
    assert [cloud_link.unpack_media(f)[1].dts for f in channel.frames] == [6, 7]
    assert channel.sent_frames == 2 and channel.skip.skips == 1
    channel.on_params(PARAMS)  # new parameters: what was queued under the old ones goes
    assert not channel.frames and channel.queued == 0


class FakeWs:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)


def test_the_edge_serves_only_its_own_sources_and_at_most_eight_requests() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def run_request(command: str, query: dict[str, str]) -> Any:
            await release.wait()
            return SimpleNamespace(status=200, content_type="application/json", body=b"{}")

        # `relayed` is a stream this gateway has (say, an edge's source on it as a cloud) but not its own source.
        gw: Any = SimpleNamespace(config=SimpleNamespace(sources={"cam": None}), stream=lambda t, p: object())
        ws = FakeWs()
        session = LinkSession(gw, ws, run_request)  # type: ignore[arg-type]
        writer = asyncio.ensure_future(session._write())
        session._on_control({"type": "subscribe", "channel": 1, "token": "relayed", "profile": "main"})
        session._on_control({"type": "subscribe", "channel": 2, "token": "cam", "profile": "nope"})
        for i in range(10):
            session._on_control({"type": "request", "id": str(i), "command": "GetSrc", "query": {"a": 1}})
        await asyncio.sleep(0.01)
        said = [json.loads(t) for t in ws.sent]
        assert said[0] == {"type": "end", "channel": 1, "reason": "no source 'relayed'"}
        assert said[1] == {"type": "end", "channel": 2, "reason": "no source 'cam'"}
        assert [(m["id"], m["status"]) for m in said[2:]] == [("8", 503), ("9", 503)]
        release.set()
        await asyncio.sleep(0.01)
        answers = [json.loads(t) for t in ws.sent[4:]]
        assert sorted(int(m["id"]) for m in answers) == list(range(8)) and {m["status"] for m in answers} == {200}
        with pytest.raises(LinkFormatError):
            session._on_control({"type": "sources", "src": []})
        writer.cancel()

    assert session_module.MAX_REQUESTS == 8
    run_async(main)


def test_link_proof_checks_the_stored_hash_and_counts_failures() -> None:
    async def main() -> None:
        users = [{"strUser": "admin", "strPasswd": hash_md5(MD5, iterations=1000), "strUserType": "Administrator"}]
        auth = Auth(users, 600, 3, 60)
        iterations, salt = auth.link_challenge("admin")
        assert iterations == 1000
        key = cloud_link.link_key(MD5, salt, iterations)
        good = cloud_link.proof(key, "c", "e", "edge1")

        def holds(proof: str):
            return lambda k: cloud_link.proof(k, "c", "e", "edge1") == proof

        assert auth.verify_link("admin", "10.0.0.1", holds(good)) == "Administrator"
        for _ in range(2):
            with pytest.raises(AuthError, match="wrong user or password"):
                auth.verify_link("admin", "10.0.0.1", holds("0" * 64))
        with pytest.raises(AuthError, match="locked"):
            auth.verify_link("admin", "10.0.0.1", holds("0" * 64))
        with pytest.raises(AuthError, match="locked"):  # even with the right proof, while locked
            auth.verify_link("admin", "10.0.0.1", holds(good))
        assert auth.verify_link("admin", "10.0.0.2", holds(good)) == "Administrator"  # another address
        # An unknown user gets a salt like a real one, the same each time: its existence is not told.
        fake = auth.link_challenge("nobody")
        assert fake == auth.link_challenge("nobody") != auth.link_challenge("nobody2")
        assert len(fake[1]) == 32 and int(fake[1], 16) >= 0
        with pytest.raises(AuthError, match="wrong user or password"):
            auth.verify_link("nobody", "10.0.0.1", lambda k: True)
        auth.close()

    run_async(main)


def test_edges_stay_known_across_links() -> None:
    registry = EdgeRegistry(StreamManager(SourceSettings(1), OutputRegistry()), SimpleNamespace(sources={}))  # type: ignore[arg-type]
    edge = registry.edge("edge1")
    assert registry.edge("edge1") is edge and registry.get("edge1") is edge and not edge.online
    assert registry.get("edge2") is None
    assert isinstance(edge, Edge) and edge.remote_token("cam") == "edge1_cam"
