"""The gateway's shared state: config, auth and streams, and the changes the API makes.

Source changes go through here so that the config file, the running streams and the
answer always agree: validate first, then save, then start; nothing half-done on error.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gateway.auth import Auth
from gateway.config.file import PUSH_TYPE, Config, SourceConf
from gateway.config.settings import HikvisionSettings
from gateway.hub.output import OutputCounts, OutputRegistry
from gateway.hub.profile import MAIN
from gateway.hub.stream import Stream
from gateway.hub.streams import StreamManager
from gateway.ingest import Source, SourceError, make_source, make_sub_source
from gateway.ingest.cloud.edges import EdgeRegistry
from gateway.ingest.demux import SourceInput
from gateway.ingest.publish.slot import Publisher, PublishRefused, PublishSlot
from gateway.outputs.record.jobs import RecordingJobs
from gateway.runinfo import RunInfo
from gateway.store.context import StoreContext
from gateway.store.index import MediaIndex
from gateway.store.reconcile import reconcile
from gateway.store.retention import RetentionTimer
from gateway.tasks import background
from gateway.vendors.hikvision.client import HikClient, PlatformSettings, platform_url

if TYPE_CHECKING:
    from gateway.outputs.cloud.link import CloudLink
    from gateway.outputs.webrtc.peer import RtcPeer

log = logging.getLogger(__name__)

SESSION_SWEEP = 2.0  # seconds: an expired session, and what it opened, ends at most this late


class Gateway:
    def __init__(self, config: Config, registry: OutputRegistry):
        self.config = config
        self.settings = settings = config.settings
        system = settings.system
        self.auth = Auth(config.users, system.session_timeout, system.login_fail_limit, system.login_lock_seconds)
        self.streams = StreamManager(settings.source, registry)
        self.edges = EdgeRegistry(self.streams, config)  # as a cloud: the edges linked to it (ingest/cloud)
        self.cloud_link: CloudLink | None = None  # as an edge (cloud.bEnable): its link (outputs/cloud), set by app.py
        self.inputs: dict[str, Source] = {}  # each stream's input, by token (ONVIF PTZ asks it for its camera)
        self.runinfo = RunInfo(settings.root)
        self.rtc_peers: dict[str, RtcPeer] = {}  # WebRTC viewers (outputs/webrtc); aiortc loads on first use
        # Clients of recordings (WS playback, DownloadRecord), by (output, token), for /metrics.
        self.recording_clients: dict[tuple[str, str], OutputCounts] = {}
        self.media_index = MediaIndex(system.mediastore_dir / "index.sqlite3")
        self.store = StoreContext(
            system.mediastore_dir, self.media_index, ThreadPoolExecutor(1, thread_name_prefix="record-io")
        )
        self.recordings = RecordingJobs(self.store, system.record_segment_seconds)
        self.retention = RetentionTimer(self.store, system)
        self.hikvision = hikvision_client(settings.hikvision)
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Create a stream for every configured source (a broken one is logged, not fatal),
        bring the store's index in step with its files before anything records, then start
        continuous recordings, retention and the run-info sampler."""
        for conf in self.config.sources.values():
            self._add_stream(conf)
        self.store.root.mkdir(parents=True, exist_ok=True)
        reconcile(self.store.root, self.media_index)
        for conf in self.config.sources.values():
            if conf.record:
                self._record_continuously(conf.token, True)
        self.retention.start()
        self.runinfo.start()
        self._sweeper = background(self._sweep_sessions())

    async def _sweep_sessions(self) -> None:
        while True:
            await asyncio.sleep(SESSION_SWEEP)
            self.auth.sweep()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.auth.close()
        for peer in list(self.rtc_peers.values()):
            await peer.close()
        self.retention.stop()
        await self.recordings.stop()
        self.store.io.shutdown()
        self.streams.stop_all()
        await self.runinfo.stop()
        self.media_index.close()
        if self.hikvision is not None:
            await self.hikvision.close()

    def make_source(self, conf: SourceConf) -> Source:
        """The source a config entry describes; SourceError says why it cannot be made."""
        return make_source(conf, self.settings.system.media_dir, self.hikvision)

    def make_sub_source(self, conf: SourceConf) -> Source | None:
        """The source of a config entry's sub stream, None when it has none; SourceError
        says why it cannot be made."""
        return make_sub_source(conf, self.hikvision)

    def _add_stream(self, conf: SourceConf, source: Source | None = None) -> Stream | None:
        if conf.type == PUSH_TYPE:
            return self.streams.add(conf, PublishSlot(conf.token))
        try:
            source = source or self.make_source(conf)
        except SourceError as e:
            log.error("source %s disabled: %s", conf.token, e)
            return None
        try:
            sub = self.make_sub_source(conf)
        except SourceError as e:  # the main stream still plays, and serves profile=sub
            log.error("source %s: sub stream disabled: %s", conf.token, e)
            sub = None
        self.inputs[conf.token] = source
        audio = conf.enable_audio
        sub_input = SourceInput(f"{conf.token}/sub", sub, audio) if sub is not None else None
        return self.streams.add(conf, SourceInput(conf.token, source, audio), sub_input)

    def _remove_stream(self, token: str) -> None:
        """Finish its recordings (the files stay), end its viewers, stop its inputs (main and sub)."""
        self.recordings.forget(token)
        self.streams.remove(token)  # their outputs end their viewers (WS sockets close)
        self.inputs.pop(token, None)

    def _record_continuously(self, token: str, enabled: bool) -> None:
        stream = self.streams.get(token)
        if stream is not None:
            self.recordings.set_continuous(stream, enabled)

    def stream(self, token: str, profile: str = MAIN) -> Stream | None:
        """A token's main stream, or with `profile` sub its sub stream (the main one for a
        source without a sub stream); None for an unknown or disabled source."""
        return self.streams.get(token, profile)

    def publisher(self, token: str, origin: str) -> Publisher:
        """Let a publisher (already authenticated as Operator or higher) publish to
        `token`; PublishRefused says why not: no such source (404), a source that is not
        H5_PUSH, whose media comes from a camera (403), or one that has a publisher (409)."""
        conf = self.config.sources.get(token)
        stream = self.streams.get(token)
        if conf is None or stream is None:
            raise PublishRefused(404, f"no source {token!r}; add one of type {PUSH_TYPE} to publish to")
        if not isinstance(stream.source, PublishSlot):
            raise PublishRefused(403, f"source {token!r} is {conf.type}, not {PUSH_TYPE}: its camera owns it")
        return stream.source.claim(origin)

    def add_source(self, fields: dict[str, Any], source: Source | None = None) -> SourceConf:
        """Validate, save and start a new source (`source`: one already made and checked from
        the same fields); ValueError/SourceError say why not."""
        token = fields.get("strToken", "")
        if token in self.config.sources:
            raise ValueError(f"token {token!r} already exists")
        if self.edges.source(token) is not None:
            raise ValueError(f"token {token!r} is an edge's source on this cloud")
        conf = SourceConf.from_json(dict(fields), "source")
        if conf.type != PUSH_TYPE:
            source = source or self.make_source(conf)
        self.make_sub_source(conf)  # a bad sub stream (strUrlSub) is refused before anything is saved
        self.config.add_source(conf)
        try:
            self.config.save()
        except OSError as e:
            self.config.remove_source(conf.token)
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        self._add_stream(conf, source)
        if conf.record:
            self._record_continuously(conf.token, True)
        return conf

    def delete_source(self, token: str) -> None:
        conf = self.config.remove_source(token)
        try:
            self.config.save()
        except OSError as e:
            self.config.add_source(conf)
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        self._remove_stream(token)
        for peer in [p for p in self.rtc_peers.values() if p.stream.token == token]:
            background(peer.close())

    def set_recording(self, token: str, enabled: bool) -> None:
        """Turn a source's continuous recording (bRec) on or off, saved in the config."""
        conf = self.config.sources[token]
        previous = conf.raw["bRec"]
        conf.raw["bRec"] = enabled
        try:
            self.config.save()
        except OSError as e:
            conf.raw["bRec"] = previous
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        self._record_continuously(token, enabled)

    def put_sources(self, confs: list[SourceConf]) -> None:
        """Add or replace several sources with one save (an import); nothing changes if
        the save fails. A replaced source whose stream settings are unchanged keeps
        running (a new name does not interrupt its viewers); otherwise it restarts."""
        old = {conf.token: self.config.sources.get(conf.token) for conf in confs}
        for conf in confs:
            self.config.add_source(conf)
        try:
            self.config.save()
        except OSError as e:
            for conf in confs:
                previous = old[conf.token]
                if previous is None:
                    self.config.remove_source(conf.token)
                else:
                    self.config.add_source(previous)
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        for conf in confs:
            previous, stream = old[conf.token], self.streams.get(conf.token)
            if previous is not None and stream is not None and same_stream(previous, conf):
                self.streams.rename(conf)
                continue
            self._remove_stream(conf.token)
            if self._add_stream(conf) is not None and conf.record:
                self._record_continuously(conf.token, True)


def same_stream(a: SourceConf, b: SourceConf) -> bool:
    """Whether two versions of a source stream the same thing the same way (only its
    name may differ)."""
    return {k: v for k, v in a.raw.items() if k != "strName"} == {k: v for k, v in b.raw.items() if k != "strName"}


def hikvision_client(settings: HikvisionSettings) -> HikClient | None:
    """The HikCentral Connect client, when `hikvision.strHost` is set."""
    if not settings.host:
        return None
    base_url = platform_url(settings.host)
    if base_url.startswith("http://"):
        log.warning(
            "hikvision.strHost is plain http: keys and tokens travel unencrypted (for a local test platform only)"
        )
    return HikClient(
        PlatformSettings(
            base_url, settings.app_key, settings.secret_key, settings.url_validity_seconds, settings.quality
        )
    )
