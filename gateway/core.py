"""The gateway's shared state: config, auth and streams, and the changes the API makes.

Source changes go through here so that the config file, the running streams and the
answer always agree: validate first, then save, then start; nothing half-done on error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .auth import Auth
from .config import Config, SourceConf
from .media.hub import Stream, StreamManager
from .mediastore import MediaStore
from .runinfo import RunInfo
from .sources import Source, SourceError, make_source
from .store.index import MediaIndex

if TYPE_CHECKING:
    from .media.webrtc import RtcPeer

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

    def start(self) -> None:
        """Create a stream for every configured source; a broken one is logged, not fatal."""
        for conf in self.config.sources.values():
            try:
                self.streams.add(conf, make_source(conf, self.config))
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

    def stream(self, token: str) -> Stream | None:
        return self.streams.get(token)

    def add_source(self, fields: dict[str, Any], source: Source | None = None) -> SourceConf:
        """Validate, save and start a new source (`source`: one already made and checked from
        the same fields); ValueError/SourceError say why not."""
        token = fields.get("strToken", "")
        if token in self.config.sources:
            raise ValueError(f"token {token!r} already exists")
        conf = SourceConf.from_json(dict(fields), "source")
        source = source or make_source(conf, self.config)
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
