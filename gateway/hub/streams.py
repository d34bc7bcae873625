"""All streams, by token: made from the config and kept in step with API changes.

A token has its main stream and, when its source has one, a sub stream (hub/profile.py):
two Streams from the same SourceConf, each with its own input, GOP cache, outputs and
timeline. A token without a sub stream serves its main one to `profile=sub`. With the
source's H.264 rendition on, each of them has its rendition (`Stream.rendition`), a Stream
over a transcode of it that runs only while it has clients (hub/rendition_input.py).
"""

from __future__ import annotations

from gateway.config.file import SourceConf
from gateway.config.settings import SourceSettings
from gateway.hub.output import OutputRegistry
from gateway.hub.profile import MAIN, SUB
from gateway.hub.rendition_input import RenditionInput
from gateway.hub.stream import Stream, StreamInput


class StreamManager:
    def __init__(self, settings: SourceSettings, registry: OutputRegistry):
        self.settings = settings
        self.registry = registry
        self.streams: dict[str, Stream] = {}  # the main streams
        self.subs: dict[str, Stream] = {}  # the sub streams of the sources that have one

    def add(self, conf: SourceConf, source: StreamInput, sub: StreamInput | None = None) -> Stream:
        """The token's main stream over `source`, and its sub stream over `sub` if given."""
        stream = self._with_rendition(Stream(conf, source, self.settings, self.registry))
        self.streams[conf.token] = stream
        if sub is not None:
            self.subs[conf.token] = self._with_rendition(Stream(conf, sub, self.settings, self.registry, SUB))
        if stream.always_on:
            stream.start()
        return stream

    def _with_rendition(self, stream: Stream) -> Stream:
        """`stream`, with its H.264 rendition when the source has it on."""
        conf = stream.conf
        if conf.h264_rendition:
            transcode = RenditionInput(stream, conf.rendition_height, conf.rendition_kbps)
            stream.rendition = Stream(conf, transcode, self.settings, self.registry, stream.profile, stream)
        return stream

    def remove(self, token: str) -> None:
        """Close the token's streams, main and sub."""
        for streams in (self.streams, self.subs):
            stream = streams.pop(token, None)
            if stream is not None:
                stream.close()

    def get(self, token: str, profile: str = MAIN) -> Stream | None:
        """The token's main stream, or its sub stream (the main one when it has none)."""
        if profile == SUB:
            sub = self.subs.get(token)
            if sub is not None:
                return sub
        return self.streams.get(token)

    def sub(self, token: str) -> Stream | None:
        """The token's own sub stream, None when it has none."""
        return self.subs.get(token)

    def rename(self, conf: SourceConf) -> None:
        """A source changed only what does not touch its streams (its name): they keep running."""
        for streams in (self.streams, self.subs):
            stream = streams.get(conf.token)
            if stream is not None:
                stream.conf = conf
                if stream.rendition is not None:
                    stream.rendition.conf = conf

    def stop_all(self) -> None:
        for token in list(self.streams):
            self.remove(token)
