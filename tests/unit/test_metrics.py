"""gateway/metrics: the collector reads the objects' own counters; the loop-lag timer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.core import Gateway
from gateway.hub.output import OutputCounts, OutputRegistry
from gateway.hub.packet import StreamParams
from gateway.hub.streams import StreamManager
from gateway.ingest.demux import SourceInput
from gateway.ingest.hikvision import HikvisionSource
from gateway.metrics.collector import GatewayCollector
from gateway.metrics.loop_lag import LoopLag
from gateway.outputs.record.recorder import RecordCounts
from gateway.outputs.ws_fmp4.feed import Fmp4Feed
from gateway.outputs.ws_fmp4.viewer import TransportViewer
from gateway.vendors.hikvision.client import HikClient, PlatformSettings
from tests.fixtures.hub import RecordingInput
from tests.fixtures.media import h264_clip
from tests.fixtures.net import run_async
from tests.fixtures.transport import FakeTransport

VIDEO, FRAMES = h264_clip(25, gop=10)


@dataclass
class Jobs:
    """RecordingJobs as the collector reads it."""

    counts: dict[str, RecordCounts] = field(default_factory=dict)
    under_way: dict[str, int] = field(default_factory=dict)

    def running(self, token: str) -> int:
        return self.under_way.get(token, 0)


@dataclass
class FakeGateway:
    """What the collector reads of a Gateway."""

    streams: StreamManager
    rtc_peers: dict[str, Any] = field(default_factory=dict)
    recording_clients: dict[tuple[str, str], OutputCounts] = field(default_factory=dict)
    recordings: Jobs = field(default_factory=Jobs)
    hikvision: HikClient | None = None
    cloud_link: Any = None  # not an edge
    edges: Any = field(default_factory=lambda: SimpleNamespace(edges={}))  # no edge linked to it


def gateway() -> FakeGateway:
    registry = OutputRegistry()
    registry.register(Fmp4Feed, Fmp4Feed)
    return FakeGateway(StreamManager(SourceSettings(1.0), registry))


def scrape(gw: FakeGateway, lag: LoopLag | None = None) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition parsed back by Prometheus' own parser: (name, labels) -> value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(cast(Gateway, gw), lag or LoopLag()))
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_a_streams_state_and_ingest_counters_follow_its_sessions():
    gw = gateway()
    stream = gw.streams.add(SourceConf.from_json({"strToken": "cam"}, "cam"), RecordingInput())
    cam = {"token": "cam", "profile": "main"}
    samples = scrape(gw)
    assert value(samples, "h5ss_source_state", state="idle", **cam) == 1
    assert value(samples, "h5ss_source_online", **cam) == 0

    stream.start()
    stream.on_session_start(StreamParams(VIDEO, None))
    for packet in FRAMES[:10]:
        stream.on_packet(packet)
    stream.on_session_end("camera lost")
    samples = scrape(gw)
    assert value(samples, "h5ss_source_state", state="offline", **cam) == 1
    assert value(samples, "h5ss_source_state", state="online", **cam) == 0
    assert value(samples, "h5ss_source_errors_total", **cam) == 1
    assert value(samples, "h5ss_source_reconnects_total", **cam) == 0

    stream.on_session_start(StreamParams(VIDEO, None))
    stream.on_session_switch(StreamParams(VIDEO, None))
    for packet in FRAMES[10:15]:
        stream.on_packet(packet)
    samples = scrape(gw)
    assert value(samples, "h5ss_source_online", **cam) == 1
    assert value(samples, "h5ss_source_connects_total", **cam) == 2
    assert value(samples, "h5ss_source_reconnects_total", **cam) == 1
    assert value(samples, "h5ss_source_switches_total", **cam) == 1
    assert value(samples, "h5ss_ingest_packets_total", **cam) == 15
    assert value(samples, "h5ss_ingest_bytes_total", **cam) == sum(len(p.data) for p in FRAMES[:15])


def test_an_outputs_bytes_and_skips_stay_counted_after_its_viewers_leave():
    gw = gateway()
    stream = gw.streams.add(SourceConf.from_json({"strToken": "cam"}, "cam"), RecordingInput())
    stream.start()
    stream.on_session_start(StreamParams(VIDEO, None))
    feed = stream.output(Fmp4Feed)
    quick, slow = FakeTransport(), FakeTransport()
    viewers = [TransportViewer(cast(Any, quick)), TransportViewer(cast(Any, slow), budget=1)]
    for viewer in viewers:
        feed.subscribe(viewer)
    for packet in FRAMES:
        stream.on_packet(packet)
    ws = {"token": "cam", "profile": "main", "output": "ws_fmp4"}
    sent = sum(map(len, quick.buffered + slow.buffered))
    samples = scrape(gw)
    assert value(samples, "h5ss_output_clients", **ws) == 2
    assert value(samples, "h5ss_output_bytes_total", **ws) == sent > 0
    assert value(samples, "h5ss_output_skips_total", **ws) == 1  # the slow one fell behind once
    assert ("h5ss_output_requests_total", frozenset(ws.items())) not in samples  # not an HTTP output

    for viewer in viewers:
        feed.unsubscribe(viewer)
    samples = scrape(gw)
    assert value(samples, "h5ss_output_clients", **ws) == 0
    assert value(samples, "h5ss_output_bytes_total", **ws) == sent  # counters never go back
    assert value(samples, "h5ss_output_skips_total", **ws) == 1


def test_playback_recordings_hikvision_and_peers_are_read_from_their_owners():
    gw = gateway()
    client = HikClient(PlatformSettings("https://platform.example", "key", "secret", 120, "main"))
    gw.hikvision = client
    hik = HikvisionSource(client, "D1", "C1")
    gw.streams.add(SourceConf.from_json({"strToken": "hik"}, "hik"), SourceInput("hik", hik, False))
    hik.urls_fetched = 3
    client.errors["live/address/get"] = 2
    gw.recording_clients[("playback", "cam")] = OutputCounts(clients=1, bytes_out=5000, dropped=1)
    gw.recordings.counts["cam"] = RecordCounts(bytes_written=7000, errors=1)
    gw.recordings.under_way["cam"] = 2
    gw.rtc_peers["p"] = object()
    samples = scrape(gw)
    playback = {"token": "cam", "profile": "main", "output": "playback"}
    assert value(samples, "h5ss_output_clients", **playback) == 1
    assert value(samples, "h5ss_output_bytes_total", **playback) == 5000
    assert value(samples, "h5ss_output_dropped_clients_total", **playback) == 1
    assert value(samples, "h5ss_recordings", token="cam") == 2
    assert value(samples, "h5ss_recording_bytes_total", token="cam") == 7000
    assert value(samples, "h5ss_recording_errors_total", token="cam") == 1
    assert value(samples, "h5ss_hikvision_urls_total", token="hik", profile="main") == 3
    assert value(samples, "h5ss_hikvision_errors_total", call="live/address/get") == 2
    assert value(samples, "h5ss_webrtc_peers") == 1
    assert value(samples, "h5ss_process_threads") >= 1


def test_loop_lag_reports_a_blocked_loop():
    async def main() -> tuple[float, float]:
        lag = LoopLag()
        lag.start()
        await asyncio.sleep(0.6)  # a tick on time
        calm = lag.worst()
        asyncio.get_running_loop().call_soon(time.sleep, 0.8)  # a callback blocks the loop past the next tick
        await asyncio.sleep(0.05)
        blocked = lag.worst()
        lag.stop()
        return calm, blocked

    calm, blocked = run_async(main)
    assert calm < 0.2
    assert blocked >= 0.3


def test_loop_lag_is_exposed_under_the_name_the_soak_bench_reads():
    samples = scrape(gateway())
    assert value(samples, "h5ss_event_loop_lag_seconds") == 0.0
