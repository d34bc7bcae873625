"""The stream's one GOP cache: its packets since the last keyframe, and what outputs made of them.

A new viewer starts at a keyframe at once from here. Outputs that turn packets into
bytes once per stream (the fMP4 feed's WebSocket messages, the WebRTC feed's RTP frames)
keep those beside the packets in a GopMemo, so they live and end with the same GOP: one
place decides when a GOP starts (a keyframe), ends (new codec parameters, the end of a
connection) or is too long to keep.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from gateway.hub.packet import MediaPacket

GOP_CACHE_MAX_PACKETS = 1500  # ~30 s at 25 fps with audio; longer GOPs are not cached

T = TypeVar("T")


class GopMemo(Generic[T]):
    """What one output made of the cached GOP's packets, in order; emptied with the GOP."""

    __slots__ = ("_cache", "items")

    def __init__(self, cache: GopCache):
        self._cache = cache
        self.items: list[T] = []

    def add(self, item: T) -> None:
        """Keep `item`, made of the packet just cached; nothing is kept outside a GOP."""
        if self._cache.packets:
            self.items.append(item)

    def reset(self) -> None:
        """Forget what was kept (an output that stops following the stream)."""
        self.items = []


class GopCache:
    def __init__(self, max_packets: int = GOP_CACHE_MAX_PACKETS):
        self.max_packets = max_packets
        self.packets: list[MediaPacket] = []
        self._memos: list[GopMemo[Any]] = []

    def memo(self) -> GopMemo[Any]:
        memo: GopMemo[Any] = GopMemo(self)
        self._memos.append(memo)
        return memo

    @property
    def keyframe(self) -> MediaPacket | None:
        return self.packets[0] if self.packets else None

    def add(self, packet: MediaPacket) -> None:
        """Cache a packet: a keyframe starts a new GOP; nothing is cached before the first."""
        if packet.keyframe and packet.kind == "video":
            self.clear()
            self.packets.append(packet)
        elif self.packets:
            self.packets.append(packet)
            if len(self.packets) > self.max_packets:
                self.clear()

    def clear(self) -> None:
        self.packets = []
        for memo in self._memos:
            memo.items = []
