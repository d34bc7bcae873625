"""The gateway's Prometheus metrics, read from the objects' own counters when scraped.

Nothing on a hot path (a packet, a viewer's frame, an LL-HLS request) touches a metrics
library: streams, outputs, recordings and the HikCentral client keep plain int
attributes, and this collector turns them into metric families once per scrape. What it
reads, and through which narrow interface:

- streams (hub/stream.py): state and counters, main and sub (StreamManager), and their
  H.264 renditions' transcodes (hub/rendition_input.py);
- their outputs: each MeasuredOutput's OutputCounts (hub/output.py), labelled by its
  metric_name; WS playback's and DownloadRecord's by token (Gateway.recording_clients);
- recordings: RecordingJobs' counts by token and the jobs under way;
- HikCentral Connect: each H5_HIKVISION input's URLs fetched, the client's failed calls;
- cloud push mode: as an edge, its link (outputs/cloud/); as a cloud, its edges (ingest/cloud/);
- the WebRTC peers, the process's threads and the event loop's lag (loop_lag.py).

Per process (CPU, memory, fds) is prometheus_client's ProcessCollector, beside this one.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.core import Gateway
from gateway.hub.output import MeasuredOutput, OutputCounts
from gateway.hub.profile import MAIN
from gateway.hub.rendition_input import RenditionInput
from gateway.hub.stream import Stream
from gateway.ingest.demux import SourceInput
from gateway.ingest.hikvision import HikvisionSource
from gateway.metrics.loop_lag import LoopLag

STATES = ("idle", "connecting", "online", "offline")  # Stream.state
SOURCE = ["token", "profile"]
OUTPUT = ["token", "profile", "output"]


def thread_count() -> int:
    """The process's threads (native ones too, on Linux: /proc/self/task)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


class GatewayCollector(Collector):
    def __init__(self, gw: Gateway, lag: LoopLag):
        self.gw = gw
        self.lag = lag

    def streams(self) -> Iterable[Stream]:
        manager = self.gw.streams
        return [*manager.streams.values(), *manager.subs.values()]

    def collect(self) -> Iterator[Metric]:
        streams = self.streams()
        yield from self.sources(streams)
        yield from self.outputs(streams)
        yield from self.renditions(streams)
        yield from self.recordings()
        yield from self.hikvision(streams)
        yield from self.cloud()
        peers = GaugeMetricFamily("h5ss_webrtc_peers", "WebRTC peers (h5s RTC and WHEP), connecting or connected")
        peers.add_metric([], len(self.gw.rtc_peers))
        yield peers
        threads = GaugeMetricFamily("h5ss_process_threads", "Threads of the gateway process")
        threads.add_metric([], thread_count())
        yield threads
        lag = GaugeMetricFamily(
            "h5ss_event_loop_lag_seconds", "Worst lateness of a 0.5 s event-loop timer over the last 5 s"
        )
        lag.add_metric([], self.lag.worst())
        yield lag

    def sources(self, streams: Iterable[Stream]) -> Iterator[Metric]:
        online = GaugeMetricFamily("h5ss_source_online", "1 while the source delivers media", labels=SOURCE)
        state = GaugeMetricFamily(
            "h5ss_source_state",
            "1 for the stream's state: idle, connecting, online, offline",
            labels=[*SOURCE, "state"],
        )
        viewers = GaugeMetricFamily("h5ss_source_viewers", "Clients holding the stream (every output)", labels=SOURCE)
        connects = CounterMetricFamily("h5ss_source_connects", "Times the input came online", labels=SOURCE)
        reconnects = CounterMetricFamily(
            "h5ss_source_reconnects", "Times the input came back online after a failure", labels=SOURCE
        )
        errors = CounterMetricFamily(
            "h5ss_source_errors", "Times the input failed to connect or lost its connection", labels=SOURCE
        )
        switches = CounterMetricFamily(
            "h5ss_source_switches", "Times the input was replaced by its renewal without a gap", labels=SOURCE
        )
        ingest_bytes = CounterMetricFamily("h5ss_ingest_bytes", "Media bytes received from the source", labels=SOURCE)
        ingest_packets = CounterMetricFamily(
            "h5ss_ingest_packets", "Media packets (video frames, audio frames) from the source", labels=SOURCE
        )
        for stream in streams:
            labels = [stream.token, stream.profile]
            online.add_metric(labels, int(stream.online))
            for name in STATES:
                state.add_metric([*labels, name], int(stream.state == name))
            viewers.add_metric(labels, stream.viewers)
            connects.add_metric(labels, stream.connects)
            reconnects.add_metric(labels, stream.reconnects)
            errors.add_metric(labels, stream.errors)
            switches.add_metric(labels, stream.switches)
            ingest_bytes.add_metric(labels, stream.bytes_in)
            ingest_packets.add_metric(labels, stream.packets_in)
        yield from (online, state, viewers, connects, reconnects, errors, switches, ingest_bytes, ingest_packets)

    def renditions(self, streams: Iterable[Stream]) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "h5ss_rendition_transcoding", "1 while the stream's H.264 rendition transcodes", labels=SOURCE
        )
        viewers = GaugeMetricFamily(
            "h5ss_rendition_viewers", "Clients holding the stream's H.264 rendition", labels=SOURCE
        )
        starts = CounterMetricFamily(
            "h5ss_rendition_transcodes", "Transcode threads the H.264 rendition started", labels=SOURCE
        )
        for stream in streams:
            rendition = stream.rendition
            if rendition is None or not isinstance(rendition.source, RenditionInput):
                continue
            labels = [stream.token, stream.profile]
            running.add_metric(labels, int(rendition.source.transcoding))
            viewers.add_metric(labels, rendition.viewers)
            starts.add_metric(labels, rendition.source.transcodes)
        yield from (running, viewers, starts)

    def outputs(self, streams: Iterable[Stream]) -> Iterator[Metric]:
        clients = GaugeMetricFamily("h5ss_output_clients", "Clients of an output now", labels=OUTPUT)
        sent = CounterMetricFamily("h5ss_output_bytes", "Bytes sent to an output's clients", labels=OUTPUT)
        skips = CounterMetricFamily(
            "h5ss_output_skips", "Times a client fell behind and skipped to the next keyframe", labels=OUTPUT
        )
        dropped = CounterMetricFamily(
            "h5ss_output_dropped_clients", "Clients disconnected for not taking data", labels=OUTPUT
        )
        requests = CounterMetricFamily("h5ss_output_requests", "HTTP requests for an output's files", labels=OUTPUT)
        held = CounterMetricFamily(
            "h5ss_output_held_requests",
            "Requests answered later: held until their media existed (LL-HLS blocking reloads), a TS segment made",
            labels=OUTPUT,
        )
        measured: list[tuple[list[str], OutputCounts]] = []
        for stream in streams:
            for output in stream.outputs():
                if isinstance(output, MeasuredOutput):
                    measured.append(([stream.token, stream.profile, output.metric_name], output.counts()))
        for (name, token), counts in self.gw.recording_clients.items():
            measured.append(([token, MAIN, name], counts))
        for labels, counts in measured:
            if counts.clients is not None:
                clients.add_metric(labels, counts.clients)
            sent.add_metric(labels, counts.bytes_out)
            skips.add_metric(labels, counts.skips)
            dropped.add_metric(labels, counts.dropped)
            if counts.requests is not None:
                requests.add_metric(labels, counts.requests)
            if counts.held is not None:
                held.add_metric(labels, counts.held)
        yield from (clients, sent, skips, dropped, requests, held)

    def recordings(self) -> Iterator[Metric]:
        jobs = self.gw.recordings
        running = GaugeMetricFamily("h5ss_recordings", "Recordings under way", labels=["token"])
        written = CounterMetricFamily("h5ss_recording_bytes", "Bytes written to recordings", labels=["token"])
        errors = CounterMetricFamily("h5ss_recording_errors", "Recording writes that failed", labels=["token"])
        for token, counts in jobs.counts.items():
            running.add_metric([token], jobs.running(token))
            written.add_metric([token], counts.bytes_written)
            errors.add_metric([token], counts.errors)
        yield from (running, written, errors)

    def cloud(self) -> Iterator[Metric]:
        """The edge's link to its cloud (when cloud.bEnable), and the edges linked to this gateway."""
        link = self.gw.cloud_link
        if link is not None:
            counts = link.counts()
            online = GaugeMetricFamily("h5ss_cloud_link_online", "1 while this edge's link to its cloud is up")
            online.add_metric([], int(link.online))
            channels = GaugeMetricFamily(
                "h5ss_cloud_link_channels", "Streams this edge sends its cloud now, by token", labels=SOURCE
            )
            open_channels = link.session.channels.values() if link.session else []
            by_stream = Counter((c.stream.token, c.stream.profile) for c in open_channels)
            for (token, profile), count in by_stream.items():
                channels.add_metric([token, profile], count)
            frames = CounterMetricFamily("h5ss_cloud_link_sent_frames", "Media frames sent to the cloud")
            frames.add_metric([], counts["frames"])
            sent = CounterMetricFamily("h5ss_cloud_link_sent_bytes", "Media bytes sent to the cloud")
            sent.add_metric([], counts["bytes"])
            skips = CounterMetricFamily(
                "h5ss_cloud_link_skips", "Times a link channel fell behind and skipped to the next keyframe"
            )
            skips.add_metric([], counts["skips"])
            yield from (online, channels, frames, sent, skips)
        edges = self.gw.edges.edges.values()
        if not edges:
            return
        server = ["server"]
        online = GaugeMetricFamily("h5ss_cloud_edge_online", "1 while the edge's link is up", labels=server)
        channels = GaugeMetricFamily("h5ss_cloud_edge_channels", "Streams the edge sends now", labels=server)
        received = CounterMetricFamily("h5ss_cloud_edge_received_bytes", "Media bytes from the edge", labels=server)
        links = CounterMetricFamily("h5ss_cloud_edge_links", "Times the edge linked", labels=server)
        for edge in edges:
            labels = [edge.server_token]
            online.add_metric(labels, int(edge.online))
            channels.add_metric(labels, edge.channels)
            received.add_metric(labels, edge.bytes_in)
            links.add_metric(labels, edge.links)
        yield from (online, channels, received, links)

    def hikvision(self, streams: Iterable[Stream]) -> Iterator[Metric]:
        urls = CounterMetricFamily(
            "h5ss_hikvision_urls",
            "Stream URLs fetched from HikCentral Connect (the first, and each renewal)",
            labels=SOURCE,
        )
        for stream in streams:
            source = stream.source.source if isinstance(stream.source, SourceInput) else None
            if isinstance(source, HikvisionSource):
                urls.add_metric([stream.token, stream.profile], source.urls_fetched)
        errors = CounterMetricFamily(
            "h5ss_hikvision_errors", "HikCentral Connect requests that failed, by call", labels=["call"]
        )
        client = self.gw.hikvision
        for call, count in (client.errors if client is not None else {}).items():
            errors.add_metric([call], count)
        yield from (urls, errors)
