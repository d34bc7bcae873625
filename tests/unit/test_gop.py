"""hub/gop.py: the one GOP cache, and the memos outputs keep beside it."""

from __future__ import annotations

from gateway.hub.gop import GopCache
from gateway.hub.packet import MediaPacket


def packet(kind: str = "video", keyframe: bool = False, n: int = 0) -> MediaPacket:
    return MediaPacket(kind, n, n, 1, keyframe, bytes([n]))


def test_nothing_is_cached_before_a_video_keyframe():
    cache = GopCache()
    cache.add(packet())
    cache.add(packet("audio", keyframe=True))  # audio frames are all "keyframes": no GOP starts
    assert cache.packets == [] and cache.keyframe is None


def test_a_keyframe_starts_a_new_gop():
    cache = GopCache()
    first, second = [packet(keyframe=True, n=0), packet("audio", n=1), packet(n=2)], [packet(keyframe=True, n=3)]
    for p in first:
        cache.add(p)
    assert cache.packets == first and cache.keyframe is first[0]
    cache.add(second[0])
    cache.add(p4 := packet(n=4))
    assert cache.packets == [second[0], p4] and cache.keyframe is second[0]


def test_a_gop_too_long_to_keep_is_dropped_until_the_next_keyframe():
    cache = GopCache(max_packets=3)
    for n in range(3):
        cache.add(packet(keyframe=n == 0, n=n))
    assert len(cache.packets) == 3
    cache.add(packet(n=3))
    assert cache.packets == []
    cache.add(packet(n=4))  # the rest of that GOP is not cached either
    assert cache.packets == []
    cache.add(key := packet(keyframe=True, n=5))
    assert cache.packets == [key]


def test_memos_keep_items_only_inside_a_gop_and_are_emptied_with_it():
    cache = GopCache(max_packets=3)
    memo, other = cache.memo(), cache.memo()
    cache.add(packet(n=0))
    memo.add("before any keyframe")
    assert memo.items == []
    for n in range(3):
        cache.add(packet(keyframe=n == 0, n=n))
        memo.add(f"m{n}")
        other.add(f"o{n}")
    assert memo.items == ["m0", "m1", "m2"] and other.items == ["o0", "o1", "o2"]
    cache.add(packet(keyframe=True, n=3))  # a new GOP: what was made of the last one goes
    assert memo.items == [] and other.items == []
    memo.add("m3")
    other.add("o3")
    cache.add(packet(n=4))
    cache.add(packet(n=5))
    cache.add(packet(n=6))  # overflow
    assert memo.items == [] and other.items == []
    cache.add(packet(keyframe=True, n=7))
    memo.add("m7")
    other.add("o7")
    cache.clear()  # new parameters or the end of a connection
    assert cache.packets == [] and memo.items == [] and other.items == []


def test_a_memo_reset_forgets_only_its_own_items():
    cache = GopCache()
    memo, other = cache.memo(), cache.memo()
    cache.add(packet(keyframe=True))
    memo.add(1)
    other.add(2)
    memo.reset()
    assert memo.items == [] and other.items == [2] and len(cache.packets) == 1
