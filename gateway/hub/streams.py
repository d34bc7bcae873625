"""All streams, by token: made from the config and kept in step with API changes."""

from __future__ import annotations

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.hub.output import OutputRegistry
from gateway.hub.stream import Stream, StreamInput


class StreamManager:
    def __init__(self, settings: SourceSettings, registry: OutputRegistry):
        self.settings = settings
        self.registry = registry
        self.streams: dict[str, Stream] = {}

    def add(self, conf: SourceConf, source: StreamInput) -> Stream:
        stream = Stream(conf, source, self.settings, self.registry)
        self.streams[conf.token] = stream
        if stream.always_on:
            stream.start()
        return stream

    def remove(self, token: str) -> None:
        stream = self.streams.pop(token, None)
        if stream is not None:
            stream.close()

    def get(self, token: str) -> Stream | None:
        return self.streams.get(token)

    def stop_all(self) -> None:
        for token in list(self.streams):
            self.remove(token)
