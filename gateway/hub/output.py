"""What the hub knows of outputs, and the typed registry that makes a stream's outputs.

A Subscriber is anything attached to a stream (an output's per-stream core, a
recording): it gets the codec parameters and every packet. A StreamOutput is a
stream's one output of its kind (fMP4 feed, HLS segmenter, WebRTC feed, snapshotter),
made on first use by the factory the composition root registered for its class, with its
settings, and found by that class (`Stream.output(HlsSegmenter)`), as Home Assistant's
stream component finds its providers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from gateway.hub.packet import MediaPacket, StreamParams

if TYPE_CHECKING:
    from gateway.hub.stream import Stream


class Subscriber(Protocol):
    def on_params(self, params: StreamParams) -> None: ...
    def on_packet(self, packet: MediaPacket) -> None: ...


class StreamOutput(Protocol):
    def close(self) -> None:
        """The stream is going away: end every client."""
        ...

    def describe(self) -> dict[str, Any]:
        """What GetSrc shows of this output (h5ss fields)."""
        ...


@dataclass(slots=True)
class OutputCounts:
    """What an output tells /metrics (gateway/metrics/): its clients now, and since it was
    made the bytes sent, the times a client fell behind and skipped to a keyframe, the
    clients dropped for not taking data, and for HTTP outputs the requests and how many of
    them were held (answered when the media was there). None: not a thing this output has."""

    clients: int | None = None
    bytes_out: int = 0
    skips: int = 0
    dropped: int = 0
    requests: int | None = None
    held: int | None = None

    @contextmanager
    def client(self) -> Iterator[None]:
        """One more client while inside (for outputs that count them one by one)."""
        self.clients = (self.clients or 0) + 1
        try:
            yield
        finally:
            self.clients -= 1


@runtime_checkable
class MeasuredOutput(Protocol):
    """A StreamOutput that reports OutputCounts, read only when /metrics is scraped: its hot
    paths keep plain int attributes, never a metrics library's objects."""

    metric_name: str  # the `output` label: ws_fmp4, webrtc, hls

    def counts(self) -> OutputCounts: ...


OutputT = TypeVar("OutputT", bound=StreamOutput)


class OutputRegistry:
    """The output classes a stream can have, each with the factory that makes one."""

    def __init__(self) -> None:
        self._factories: dict[type, Callable[[Stream], StreamOutput]] = {}

    def register(self, kind: type[OutputT], factory: Callable[[Stream], OutputT]) -> None:
        self._factories[kind] = factory

    def make(self, kind: type[OutputT], stream: Stream) -> OutputT:
        factory = self._factories.get(kind)
        if factory is None:
            raise LookupError(f"no output {kind.__name__} is registered")
        output = factory(stream)
        if not isinstance(output, kind):
            raise TypeError(f"the factory of {kind.__name__} made a {type(output).__name__}")
        return output
