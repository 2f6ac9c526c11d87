"""The per-process TTL cache the feed pages read authors and topics through."""

from __future__ import annotations

from persistence.community.cache import TtlCache


def test_entries_expire_after_their_ttl_and_drop_on_write() -> None:
    clock = [100.0]
    cache: TtlCache[int, str] = TtlCache(2.0, size=3, now=lambda: clock[0])
    cache.put(1, "alice")
    cache.put(2, "bob")
    assert cache.get_many([1, 2, 3]) == ({1: "alice", 2: "bob"}, [3])
    clock[0] += 2.5
    assert cache.get_many([1]) == ({}, [1])  # too old: loaded again
    cache.put(1, "alice 2")
    cache.drop(1)
    assert cache.get_many([1]) == ({}, [1])


def test_a_full_cache_starts_again_rather_than_growing() -> None:
    cache: TtlCache[int, int] = TtlCache(60.0, size=2, now=lambda: 0.0)
    for key in range(3):
        cache.put(key, key)
    assert cache.get_many([0, 1, 2]) == ({2: 2}, [0, 1])
