"""composition/heap.py: the trims run off the loop, one at a time, and give glibc's free pages back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from composition.heap import HeapTrimmer, glibc_malloc_trim, resident_bytes
from composition.settings import SettingsError, parse_settings


class FakeTrim:
    """A malloc_trim that records its threads and can be held until released."""

    def __init__(self, resident: list[int]) -> None:
        self.threads: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.resident = resident

    def __call__(self) -> int:
        self.threads.append(threading.get_ident())
        self.release.wait(5)
        self.resident[0] -= 3 << 20  # what a trim gives back
        return 1


async def test_a_trim_runs_on_its_own_thread_and_counts_what_it_gave_back() -> None:
    resident = [100 << 20]
    fake = FakeTrim(resident)
    trimmer = HeapTrimmer(fake, 0, resident=lambda: resident[0])
    try:
        await trimmer.trim_now()
        await trimmer.trim_now()
    finally:
        trimmer.close()
    assert len(fake.threads) == 2
    assert threading.get_ident() not in fake.threads
    assert trimmer.stats.calls == 2
    assert trimmer.stats.released_bytes == 6 << 20
    assert list(trimmer.stats.recent_ms) == pytest.approx([trimmer.stats.recent_ms[0], trimmer.stats.last_ms])
    assert trimmer.stats.max_ms >= trimmer.stats.last_ms >= 0


async def test_the_loop_keeps_turning_during_a_trim_and_a_second_ask_waits_for_the_first() -> None:
    resident = [100 << 20]
    fake = FakeTrim(resident)
    fake.release.clear()
    trimmer = HeapTrimmer(fake, 0, resident=lambda: resident[0])
    try:
        first = asyncio.ensure_future(trimmer.trim_now())
        second = asyncio.ensure_future(trimmer.trim_now())
        turns = 0
        for _ in range(20):  # the loop is free while glibc works
            await asyncio.sleep(0.005)
            turns += 1
        assert not first.done() and not second.done()
        fake.release.set()
        await asyncio.gather(first, second)
    finally:
        trimmer.close()
    assert turns == 20
    assert len(fake.threads) == 1  # the second ask did not start another call
    assert trimmer.stats.calls == 1


async def test_the_periodic_trims_follow_the_interval_and_none_run_when_off() -> None:
    resident = [100 << 20]
    fake = FakeTrim(resident)
    trimmer = HeapTrimmer(fake, 0.05, resident=lambda: resident[0])
    task = asyncio.ensure_future(trimmer.run())
    await asyncio.sleep(0.4)
    task.cancel()
    trimmer.close()
    assert 3 <= trimmer.stats.calls <= 8

    off = HeapTrimmer(fake, 0, resident=lambda: resident[0])
    await asyncio.wait_for(off.run(), 1)  # returns at once: nothing periodic to do
    absent = HeapTrimmer(None, 60)
    await absent.trim_now()
    assert not absent.enabled and absent.stats.calls == 0


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="no glibc here")
async def test_glibcs_free_pages_inside_the_heap_go_back_to_the_system() -> None:
    # 150 MiB of 4-KiB objects (below glibc's mmap threshold: they come from the heap), all but
    # the newest freed: that one sits at the heap's top, so glibc alone would give nothing back.
    chunks = [bytes(4000) for _ in range(150 * 256)]
    top = chunks[-1]
    del chunks
    held = resident_bytes()
    trimmer = HeapTrimmer(glibc_malloc_trim(), 0)
    try:
        await trimmer.trim_now()
    finally:
        trimmer.close()
    assert len(top) == 4000
    assert held - resident_bytes() > 100 << 20
    assert trimmer.stats.released_bytes > 100 << 20


def test_the_interval_setting() -> None:
    assert parse_settings([], env={}).malloc_trim_interval_ms == 60_000
    assert parse_settings([], env={"MALLOC_TRIM_INTERVAL": "5m"}).malloc_trim_interval_ms == 300_000
    assert parse_settings([], env={"MALLOC_TRIM_INTERVAL": "off"}).malloc_trim_interval_ms == 0
    assert parse_settings([], env={"MALLOC_TRIM_INTERVAL": "0"}).malloc_trim_interval_ms == 0
    with pytest.raises(SettingsError, match="MALLOC_TRIM_INTERVAL"):
        parse_settings([], env={"MALLOC_TRIM_INTERVAL": "60"})


async def test_a_failing_trim_is_logged_and_the_caller_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> int:
        raise OSError("no such call")

    trimmer = HeapTrimmer(broken, 0, resident=lambda: 0)
    try:
        await trimmer.trim_now()  # does not raise: a snapshot after which it runs goes on
        await trimmer.trim_now()
    finally:
        trimmer.close()
    assert trimmer.stats.calls == 0
    assert [r.getMessage() for r in caplog.records].count("malloc_trim failed") == 2
