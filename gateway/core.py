"""The gateway's shared state: config, auth and streams, and the changes the API makes.

Source changes go through here so that the config file, the running streams and the
answer always agree: validate first, then save, then start; nothing half-done on error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from gateway.auth import Auth
from gateway.config.file import Config, SourceConf
from gateway.hub.stream import Stream, StreamManager
from gateway.ingest import Source, SourceError, make_source
from gateway.outputs.record.jobs import MediaStore
from gateway.runinfo import RunInfo
from gateway.store.index import MediaIndex
from gateway.vendors.hikvision.client import HikClient, PlatformSettings, platform_url

if TYPE_CHECKING:
    from gateway.outputs.webrtc.peer import RtcPeer

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: Config):
        self.config = config
        system = config.raw["system"]
        self.auth = Auth(config.users, system["nSessionTimeout"], system["nLoginFailLimit"], system["nLoginLockSec"])
        self.streams = StreamManager(config.get("source", "nOnDemandLingerSec"))
        self.runinfo = RunInfo(config.root)
        self.rtc_peers: dict[str, RtcPeer] = {}  # WebRTC viewers (api/rtc.py); aiortc loads on first use
        self.media_index = MediaIndex(config.mediastore_dir / "index.sqlite3")
        self.mediastore = MediaStore(config, self.media_index, self.streams)
        self.hikvision = hikvision_client(config)

    def start(self) -> None:
        """Create a stream for every configured source; a broken one is logged, not fatal."""
        for conf in self.config.sources.values():
            try:
                self.streams.add(conf, make_source(conf, self.config, self.hikvision))
            except SourceError as e:
                log.error("source %s disabled: %s", conf.token, e)
        self.mediastore.start()
        self.runinfo.start()

    async def stop(self) -> None:
        for peer in list(self.rtc_peers.values()):
            await peer.close()
        await self.mediastore.stop()
        self.streams.stop_all()
        await self.runinfo.stop()
        self.media_index.close()
        if self.hikvision is not None:
            await self.hikvision.close()

    def stream(self, token: str) -> Stream | None:
        return self.streams.get(token)

    def add_source(self, fields: dict[str, Any], source: Source | None = None) -> SourceConf:
        """Validate, save and start a new source (`source`: one already made and checked from
        the same fields); ValueError/SourceError say why not."""
        token = fields.get("strToken", "")
        if token in self.config.sources:
            raise ValueError(f"token {token!r} already exists")
        conf = SourceConf.from_json(dict(fields), "source")
        source = source or make_source(conf, self.config, self.hikvision)
        self.config.add_source(conf)
        try:
            self.config.save()
        except OSError as e:
            self.config.remove_source(conf.token)
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        self.streams.add(conf, source)
        if conf["bRec"]:
            self.mediastore.set_continuous(conf.token, True)
        return conf

    def delete_source(self, token: str) -> None:
        conf = self.config.remove_source(token)
        try:
            self.config.save()
        except OSError as e:
            self.config.add_source(conf)
            raise ValueError(f"cannot save the config: {e.strerror}") from None
        self.mediastore.forget(token)
        self.streams.remove(token)  # its outputs end their viewers (WS sockets close)
        for peer in [p for p in self.rtc_peers.values() if p.stream.token == token]:
            asyncio.ensure_future(peer.close())

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
        self.mediastore.set_continuous(token, enabled)

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
                stream.conf = conf
                continue
            self.mediastore.forget(conf.token)
            self.streams.remove(conf.token)
            try:
                self.streams.add(conf, make_source(conf, self.config, self.hikvision))
            except SourceError as e:
                log.error("source %s disabled: %s", conf.token, e)
                continue
            if conf["bRec"]:
                self.mediastore.set_continuous(conf.token, True)


def same_stream(a: SourceConf, b: SourceConf) -> bool:
    """Whether two versions of a source stream the same thing the same way (only its
    name may differ)."""
    return {k: v for k, v in a.raw.items() if k != "strName"} == {k: v for k, v in b.raw.items() if k != "strName"}


def hikvision_client(config: Config) -> HikClient | None:
    """The HikCentral Connect client, when `hikvision.strHost` is set."""
    hik = config.raw["hikvision"]
    if not hik["strHost"]:
        return None
    base_url = platform_url(hik["strHost"])
    if base_url.startswith("http://"):
        log.warning(
            "hikvision.strHost is plain http: keys and tokens travel unencrypted (for a local test platform only)"
        )
    return HikClient(
        PlatformSettings(base_url, hik["strAppKey"], hik["strSecretKey"], hik["nUrlValiditySec"], hik["strQuality"])
    )
