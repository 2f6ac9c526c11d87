"""Handing the C allocator's free memory back to the system (`MALLOC_TRIM_INTERVAL`).

CPython takes every object over 512 bytes, and the arenas of its own small-object allocator, from
the C library's `malloc`. glibc keeps what is freed in its arenas for reuse and, by itself, gives
back only the free space at the very top of the main heap. A long-lived gateway goes through
bursts (ten thousand watchers connecting, a snapshot's transient buffers, a close's results): what
they freed stays resident wherever a live chunk sits above it, and which way that falls differs
from run to run (docs/performance.md, the soaks: the same code's resident size grew +0.1, +0.8
and +950 KiB a minute in three runs, while what was in use grew alike in all three).

`malloc_trim(0)` releases every free page of every arena, wherever it lies (glibc ≥ 2.8 returns
the pages inside the heap too, not only its top). The trimmer calls it every
MALLOC_TRIM_INTERVAL and after each engine snapshot (the biggest transient the process makes), on
a thread of its own: ctypes lets go of the GIL for the call, so the loop keeps serving while glibc
walks its arenas (1.3 ms median, 7.5 ms at most in the seventh round's soaks). Where the C library
is not glibc (musl, macOS) there is no such call and the trimmer does nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.observability import Metrics

log = logging.getLogger("gavel.heap")

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def glibc_malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)` as a function of nothing, or None where there is no glibc."""
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def trim_all() -> int:
        return int(trim(0))

    return trim_all


def resident_bytes() -> int:
    """The process's resident set size (/proc/self/statm), or 0 where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class TrimStats:
    """What the trims did, for /metrics and the soak's samples."""

    calls: int = 0
    last_ms: float = 0.0
    max_ms: float = 0.0
    released_bytes: int = 0  # resident bytes given back, summed over the calls (never negative)
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=64))  # the newest calls' times


class HeapTrimmer:
    """Calls `trim` on its own thread, every `interval_s` (0: only when asked) and on `trim_now`."""

    def __init__(
        self,
        trim: Callable[[], int] | None,
        interval_s: float,
        resident: Callable[[], int] = resident_bytes,
    ) -> None:
        self._trim = trim
        self.interval_s = interval_s
        self._resident = resident
        self.stats = TrimStats()
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: asyncio.Future[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    async def trim_now(self) -> None:
        """One trim (a call already under way is waited for instead of starting another). A failed
        call is logged, never raised: the caller's own work (a snapshot) goes on."""
        if self._trim is None:
            return
        if self._running is None or self._running.done():
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="heap-trim")
            self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._timed_trim)
        try:
            await asyncio.shield(self._running)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("malloc_trim failed")

    def _timed_trim(self) -> None:
        assert self._trim is not None
        before = self._resident()
        started = time.perf_counter()
        self._trim()
        took_ms = (time.perf_counter() - started) * 1000
        after = self._resident()
        stats = self.stats
        stats.calls += 1
        stats.last_ms = took_ms
        stats.recent_ms.append(took_ms)
        stats.max_ms = max(stats.max_ms, took_ms)
        stats.released_bytes += max(0, before - after)

    async def run(self) -> None:
        """Trim every `interval_s` until cancelled."""
        if self._trim is None or self.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            await self.trim_now()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None


def install_heap_gauges(metrics: Metrics, trimmer: HeapTrimmer) -> None:
    """/metrics: the resident size and what the trims did (only where there is glibc to call)."""
    metrics.gauge("gavel_resident_bytes", "Resident set size of this process.", resident_bytes)
    if not trimmer.enabled:
        return
    stats = trimmer.stats
    metrics.gauge("gavel_heap_trims", "malloc_trim calls so far.", lambda: stats.calls)
    metrics.gauge("gavel_heap_trim_seconds_max", "Longest malloc_trim call.", lambda: stats.max_ms / 1000)
    metrics.gauge(
        "gavel_heap_trim_released_bytes",
        "Resident bytes the trims handed back, summed.",
        lambda: stats.released_bytes,
    )
