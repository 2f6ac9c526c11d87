"""Gavel under test: `python run.py` (its `main()`, same configuration by environment) plus
benchmark limits and the benchmark's A/B variants, which live here, not in product code.

    GAVEL_BENCH_LIMITS='{"bids_per_second": 1e9}' GAVEL_LOOP=asyncio python -m benchmarks.e2e.gavel_server

- `GAVEL_BENCH_LIMITS`: a JSON object of `web.context.Limits` fields set on the context once
  the service has started (before its first connection is read), e.g. `bids_per_second` /
  `bid_burst` (the per-user bid rate limit: the load client's closed-loop bidders bid far faster
  than 20/s), `ws_connections_per_ip` (thousands of watchers come from 127.0.0.1; the edge's own
  cap is MAX_CONNECTIONS_PER_IP, set by bench_e2e.gavel_env). An unknown name stops start-up.
- `GAVEL_BENCH_VARIANT`: what the A/B runs compare with the product's way (the subclasses below):
  `write_message` (Tornado's `write_message` per frame and subscriber instead of framing each
  broadcast once, `WriteMessageSocket`: it frames each message itself), `tornado_read` (Tornado's IOStream
  read loop instead of the asyncio transport of gateway/wire.py, `TornadoReadSocket`),
  `no_write_behind` (a diagnostic, never a way to run Gavel: the write-behind archiver detached
  from the engine, to see what the bids' MongoDB writes cost on this machine, where the embedded
  MongoDB shares the two cores with everything else; with ARCHIVER=inline).
- `GAVEL_LOOP=asyncio`: run on the standard asyncio loop instead of uvloop.
- `GAVEL_BENCH_STALLS=PATH`: a diagnostic: write a line to PATH whenever the loop wakes more than
  4 ms late from a 1 ms sleep (`stall`), the cyclic garbage collector runs longer than 2 ms (`gc`),
  or the write-behind prepares or writes a chunk (`take` / `write`, with its size), each stamped
  with `time.perf_counter()`: where an ack's tail latency comes from (docs/performance.md).
- `GAVEL_BENCH_COMMANDS=PATH`: count every MongoDB command the process sends (a
  `pymongo.monitoring.CommandListener` registered before any client exists), by command name and
  collection and whether it ran inside a transaction; each SIGHUP writes the totals so far to PATH
  as JSON (benchmarks/bench_checkout.py takes them before and after a sequential phase to count
  the round trips of one request).
- `GAVEL_BENCH_FANOUT=PATH`: a diagnostic: one JSON line per hub fan-out (`FanoutTraceHub`): for
  each price frame in it, the engine's accept time (the frame's `ts`, wall-clock ms) and when the
  committed batch reached the hub, then the fan-out's start and end and the subscribers written,
  all wall-clock seconds: where a broadcast's latency goes before the client reads it
  (bench_watchers.py `--trace`); with each hub step the loop thread's CPU and the process's (the
  send worker's with it), and beside them what else held the loop: each slice of the pinger's
  rounds (`TracedPinger`), collections over 2 ms and the loop waking over 20 ms late.
- `GAVEL_BENCH_TRACEMALLOC=DIR`: a diagnostic: trace Python allocations (`tracemalloc`, 8 frames)
  from start-up; each SIGTTIN writes a snapshot to DIR/snapshot-N.pickle (bench_watchers.py's soak
  diffs two of them: what grows, by file). Tracing costs CPU and memory: never for figures.
- `GAVEL_BENCH_MEMORY=PATH`: a diagnostic: every `GAVEL_BENCH_MEMORY_EVERY` seconds (10) one JSON
  line to PATH: the process's RSS, glibc's `mallinfo2()` (`uordblks`: bytes malloc has handed out
  and not got back; `fordblks`: free bytes kept in its arenas; `hblkhd`: bytes in blocks mmapped
  on their own; `arena`: the arenas' size), Python's object allocator (`sys.getallocatedblocks()`),
  tracemalloc's traced total when tracing (`GAVEL_BENCH_TRACEMALLOC`), the engine's book (lots,
  open, closed still holding their history, compacted; the compactor's total) and the size of
  every dict, set, list or deque the hub and the catalogue hold (what a leak would grow).
  bench_watchers.py's soak reads it to tell the allocator's fragmentation from a leak.
- `GAVEL_BENCH_TYPES_EVERY=SECONDS`: a diagnostic beside `GAVEL_BENCH_MEMORY`: every SECONDS
  the sample also counts the objects the cyclic collector tracks (`gc.get_objects()`) by type,
  with their `sys.getsizeof` bytes and those of the ones over 512 bytes (malloc's) apart, and the
  objects it does not track (str, bytes, dicts and tuples of plain data) reached from them
  (`types`, `object_types`); and the bytes each attribute of the engine, hub, context and service
  holds, everything reachable from it counted once (`deep`, `deep_sizes`; the compiled engine's
  objects show no attributes to it). It walks every object: it stalls the loop for a fraction of
  a second each time, never for figures.
- `GAVEL_BENCH_ARENAS=1`: a diagnostic beside `GAVEL_BENCH_MEMORY`: each sample also has glibc's
  `malloc_info()` per arena (`arenas`: the main arena and each thread's: system bytes, free in its
  bins, in use): which thread's arena grows. Every sample also has the threads' count and the
  cyclic collector's collections and objects collected per generation.
- `GAVEL_BENCH_MONGO_INFLIGHT=1`: a diagnostic beside `GAVEL_BENCH_MEMORY`: each sample also has
  `mongo_in_flight`, since the previous sample: the most MongoDB commands in flight at once and
  which they were at that moment (`at_peak`, by "command collection"), every command sent (`sent`),
  the pools' connections opened and closed and the most checked out at once (pymongo's command
  and pool listeners, registered before any client exists): what a session's close runs at once.
- `GAVEL_BENCH_GC_PROBE=SECONDS`: a diagnostic beside `GAVEL_BENCH_MEMORY`: every SECONDS a full
  `gc.collect()` on the loop, with malloc's in use before and after and the objects found
  unreachable (`gc_probe`): is what grows cyclic garbage that waits for a full collection? It
  changes what it measures (it collects): never for figures.
- `GAVEL_BENCH_RIGHT_SIZED_SNAPSHOTS=1`: the A/B of the hub's kept snapshot JSON: each lot's
  JSON in `Hub._snapshot_lots` (gateway/ws.py) copied into a buffer of its own size
  (persistence/kept_json.py `right_sized`) when the list is built, as `kept_json` there would do:
  orjson's output otherwise holds ~4 KiB of malloc for ~200 bytes of JSON.
- `GAVEL_BENCH_REFS_WINDOW_MS=MS`: the soak's steady-state variant: the engine's ref window
  (docs/protocol.md, "How long refs are remembered": every accepted ref within 10 minutes of the
  bidder's newest is kept, beyond the newest 256) shortened, so that a soak of 10 minutes can
  start with the refs in their steady state (the newest 256 per bidder) instead of spending its
  whole length filling the window. Never a way to run Gavel.
- `GAVEL_BENCH_KEPT_LOTS=N`: the soak's variant with the caches full: the catalogue's kept views
  (`KEPT_LOT_VIEWS_MAX`, and `KEPT_SESSION_VIEWS_MAX` at N / 100) and the read cache
  (`MAX_ENTRIES` per domain) bounded at N instead of 5,000, so that a 10-minute soak reaches
  the bound and shows what grows once they no longer can. Never a way to run Gavel.
- The product's own trims (`MALLOC_TRIM_INTERVAL`, composition/heap.py) are in the memory
  samples: each call's time since the last sample (`trim_ms`) and the resident bytes handed back
  so far (`trim_released_bytes`). The soak's A/B sets `MALLOC_TRIM_INTERVAL` (`--soak-malloc-trim`).
- `GAVEL_PROFILE=PATH`: profile with cProfile between SIGUSR1 (start) and SIGUSR2 (stop, write
  the stats to PATH), e.g. around one measurement window. It slows the server down: never for
  figures, only to see where the CPU goes.

Nothing else differs from `python run.py`: the same `Service`, wiring, journal, write-behind and
Redis price bus (without a variant, the same classes too).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import dataclasses
import gc
import json
import os
import signal
import sys
import time
import types
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

import tornado.websocket
from pymongo import monitoring

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

import gateway.ws  # noqa: E402
import run  # noqa: E402  (the composition root)
from composition.service import Service  # noqa: E402
from engine.book.events import PriceChanged  # noqa: E402
from engine.book.states import CLOSED_LOT_STATES  # noqa: E402
from engine.engine import CommittedBatch  # noqa: E402
from gateway.wire import FastProtocol13, Pinger  # noqa: E402
from gateway.ws import BidderSocket, Hub  # noqa: E402
from persistence.archive import BidArchiver  # noqa: E402
from persistence.kept_json import right_sized  # noqa: E402

LIMITS = json.loads(os.environ.get("GAVEL_BENCH_LIMITS") or "{}")
VARIANT = os.environ.get("GAVEL_BENCH_VARIANT", "")
VARIANTS = ("", "write_message", "tornado_read", "no_write_behind")


class CommandCounter(monitoring.CommandListener):
    """Counts started commands as "name collection tx|direct"; a commit as `commitTransaction
    write` or `commitTransaction read` (a transaction that only read, as the settlement worker's
    polling does), so the commits of the requests can be told from the background's."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.writing: set[tuple[bytes, int]] = set()  # (session id, txnNumber) of transactions that wrote

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name, command = event.command_name, event.command
        target = command.get(name)
        collection = target if isinstance(target, str) else "-"
        if command.get("autocommit") is not False:
            self.counts[f"{name} {collection} direct"] += 1
            return
        transaction = (bytes(command["lsid"]["id"]), int(command["txnNumber"]))
        if name in ("commitTransaction", "abortTransaction"):
            collection = "write" if transaction in self.writing else "read"
            self.writing.discard(transaction)
        elif name in ("insert", "update", "delete", "findAndModify"):
            self.writing.add(transaction)
        elif name == "bulkWrite":
            # One command carrying several writes (persistence/mongo.py UnitWrites): each write is
            # counted too, as "name collection bulk", so an operation's writes stay what they are.
            self.writing.add(transaction)
            namespaces = [str(entry["ns"]).partition(".")[2] for entry in command.get("nsInfo", [])]
            for op in command.get("ops", []):
                kind = next(k for k in ("insert", "update", "delete") if k in op)
                self.counts[f"{kind} {namespaces[int(op[kind])]} bulk"] += 1
        self.counts[f"{name} {collection} tx"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def dump(self, path: str) -> None:
        Path(path).write_text(json.dumps(dict(self.counts)))


COMMANDS = CommandCounter()


class MongoInFlight(monitoring.CommandListener):
    """`GAVEL_BENCH_MONGO_INFLIGHT=1`: which MongoDB commands run at the same time, for the memory
    samples: the most commands in flight at once since the last sample, which ones they were at
    that moment ("name collection"), and every command sent since, by the same key. A close's
    burst of pooled connections is named by what was in flight at its peak."""

    def __init__(self) -> None:
        self.running: dict[tuple[int, Any, Any], str] = {}  # (request id, server, connection) -> key
        self.by_key: Counter[str] = Counter()  # in flight now
        self.peak = 0
        self.at_peak: dict[str, int] = {}
        self.sent: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get(name)
        key = f"{name} {target if isinstance(target, str) else '-'}"
        self.running[(event.request_id, event.connection_id, event.server_connection_id)] = key
        self.by_key[key] += 1
        self.sent[key] += 1
        if len(self.running) > self.peak:
            self.peak = len(self.running)
            self.at_peak = {k: n for k, n in self.by_key.items() if n}

    def _ended(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent) -> None:
        key = self.running.pop((event.request_id, event.connection_id, event.server_connection_id), None)
        if key is not None:
            self.by_key[key] -= 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event)

    def take(self) -> dict[str, Any]:
        """Since the last take: the peak, what was in flight at it, the commands sent."""
        taken = {"peak": self.peak, "at_peak": self.at_peak, "sent": dict(self.sent)}
        self.peak, self.at_peak, self.sent = len(self.running), {}, Counter()
        return taken


class PoolEvents(monitoring.ConnectionPoolListener):
    """`GAVEL_BENCH_MONGO_INFLIGHT=1`: the pools' connections opened and closed and the most
    checked out at once, since the last sample (both clients: the events do not say which)."""

    def __init__(self) -> None:
        self.opened = self.closed = self.checked_out = self.checked_out_peak = 0

    def take(self) -> dict[str, int]:
        taken = {"opened": self.opened, "closed": self.closed, "checked_out_peak": self.checked_out_peak}
        self.opened = self.closed = 0
        self.checked_out_peak = self.checked_out
        return taken

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.opened += 1

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.closed += 1

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self.checked_out += 1
        self.checked_out_peak = max(self.checked_out_peak, self.checked_out)

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        self.checked_out -= 1

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        pass

    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None:
        pass

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        pass

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        pass

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        pass

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        pass

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        pass


IN_FLIGHT = MongoInFlight()
POOL_EVENTS = PoolEvents()


class WriteMessageSocket(BidderSocket):
    """Tornado's `write_message` per frame (the product's path only when compression is on)."""

    def open(self, *args: str, **kwargs: str) -> None:
        super().open(*args, **kwargs)
        self._frame_once = False


class TornadoReadSocket(BidderSocket):
    """Frames read by Tornado's IOStream loop instead of gateway/wire.py's asyncio transport."""

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return tornado.websocket.WebSocketHandler.get_websocket_protocol(self)


class TimedRosters:
    """The hub's rosters (gateway/roster.py) with each sweep() call's wall time summed: the loop
    thread's time in the sweep in C, i.e. its share of the sends plus any wait for the worker's
    last one, and the sockets sent to from there."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.sweep_s = 0.0
        self.calls = self.sends = 0

    def __call__(self) -> Any:
        timer = self
        real = self.make()

        class Timed:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def __len__(self) -> int:
                return len(real)

            def sweep(self, *args: Any) -> Any:
                started = time.perf_counter()
                result = real.sweep(*args)
                timer.sweep_s += time.perf_counter() - started
                timer.calls += 1
                timer.sends += result[4]
                return result

        return Timed()

    def take(self) -> dict[str, float]:
        """The sums since the last take."""
        taken = {"sweep_s": self.sweep_s, "calls": self.calls, "sends": self.sends}
        self.sweep_s = 0.0
        self.calls = self.sends = 0
        return taken


class FanoutTraceHub(Hub):
    """The product's hub, timing each price frame from the engine to the sweeps that write it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Opened once at start-up, before any client: a blocking open is harmless here.
        self.trace = open(os.environ["GAVEL_BENCH_FANOUT"], "w")  # noqa: SIM115
        self.arrived: dict[int, float] = {}  # lot_id -> when its pending price reached the hub
        self.pinger = TracedPinger(self.line)
        self.sends = TimedRosters(gateway.ws.new_roster)
        gateway.ws.new_roster = self.sends
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)
        self._stall_monitor: asyncio.Task[None] | None = None

    def line(self, record: dict[str, Any]) -> None:
        self.trace.write(json.dumps(record) + "\n")

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Collections over 2 ms, wall-clock, beside the sweeps (what else holds the loop)."""
        if phase == "start":
            self._gc_started = time.time()
        elif time.time() - self._gc_started > 0.002:
            self.line({"gc": self._gc_started, "end": time.time(), "gen": info["generation"]})

    async def _watch_stalls(self) -> None:
        """The loop waking more than 20 ms late from a 1 ms sleep, wall-clock."""
        while True:
            started = time.time()
            await asyncio.sleep(0.001)
            if time.time() - started > 0.021:  # a sweep's chunk is ~4-6 ms: longer holds only
                self.line({"stall": started + 0.001, "end": time.time()})

    def on_batch(self, batch: CommittedBatch) -> None:
        now = time.time()
        for event in batch.events:
            if type(event) is PriceChanged and event.lot_id not in self.arrived:
                self.arrived[event.lot_id] = now
        super().on_batch(batch)

    def flush(self) -> None:
        if self._stall_monitor is None:
            self._stall_monitor = asyncio.get_running_loop().create_task(self._watch_stalls())
        started, loop_cpu, process_cpu = time.time(), time.thread_time(), time.process_time()
        super().flush()
        self.line(
            {
                "step": started,
                "end": time.time(),
                # CPU in the step: the loop thread's, and the process's (the send worker's with it)
                "cpu": time.thread_time() - loop_cpu,
                "pcpu": time.process_time() - process_cpu,
                **self.sends.take(),
            }
        )
        self.trace.flush()

    def _collect(self) -> None:
        now = time.time()
        prices = [(event.at, self.arrived.pop(lot_id, now)) for lot_id, (event, _) in self._prices.items()]
        super()._collect()
        if prices:
            self.line({"collected": now, "prices": prices})

    def _sweep_chunk(self, deadline_ns: int) -> bool:
        if self._sweep is not None and self._sweep[3] == 0:
            self.line({"sweep": time.time(), "sockets": len(self._sweep[2])})
        done = super()._sweep_chunk(deadline_ns)
        if done:
            self.line({"swept": time.time()})
        return done


class TracedPinger(Pinger):
    """The product's pinger, each round of pings written to the fan-out trace (wall-clock)."""

    def __init__(self, line: Any) -> None:
        super().__init__()
        self.trace_line = line

    def ping_slice(self, pinged: Sequence[FastProtocol13]) -> None:
        started = time.time()
        super().ping_slice(pinged)
        self.trace_line({"ping": started, "end": time.time(), "sockets": len(pinged)})


class BenchService(Service):
    if VARIANT == "write_message":
        socket_type: type[BidderSocket] = WriteMessageSocket
    elif VARIANT == "tornado_read":
        socket_type = TornadoReadSocket
    if os.environ.get("GAVEL_BENCH_FANOUT"):
        hub_type = FanoutTraceHub

    async def start(self) -> None:
        await super().start()
        # No await between the listen() at the end of start() and here: no socket is read before.
        self.ctx.limits = dataclasses.replace(self.ctx.limits, **LIMITS)
        if VARIANT == "no_write_behind":
            self.engine.listeners.remove(self.archiver.on_batch)
        if os.environ.get("GAVEL_BENCH_COMMANDS"):
            path = os.environ["GAVEL_BENCH_COMMANDS"]
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, COMMANDS.dump, path)
        if os.environ.get("GAVEL_BENCH_REFS_WINDOW_MS"):
            self.local_engine.refs.window_ms = int(os.environ["GAVEL_BENCH_REFS_WINDOW_MS"])
        if os.environ.get("GAVEL_BENCH_MEMORY"):
            every = float(os.environ.get("GAVEL_BENCH_MEMORY_EVERY") or 10)
            sampler = sample_memory(self, Path(os.environ["GAVEL_BENCH_MEMORY"]), every)
            self.background.append(asyncio.get_running_loop().create_task(sampler, name="bench-memory"))
        if os.environ.get("GAVEL_BENCH_STALLS"):
            # Opened once at start-up, before any client: a blocking open is harmless here.
            self.stall_log = open(os.environ["GAVEL_BENCH_STALLS"], "w")  # noqa: ASYNC230, SIM115
            inline = self.archiver if isinstance(self.archiver, BidArchiver) else None
            watch_stalls(self.stall_log, inline)


def watch_stalls(out: TextIO, archiver: Any) -> None:
    """Log late loop wake-ups, long collections and the write-behind's chunks (see the docstring)."""

    def line(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    async def monitor() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            late = time.perf_counter() - started - 0.001
            if late > 0.004:
                line(f"{time.perf_counter():.4f} stall {late * 1000:.1f} ms")

    collecting = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
            return
        took = time.perf_counter() - collecting[0]
        if took > 0.002:
            line(f"{collecting[0]:.4f} gc gen{info['generation']} {took * 1000:.1f} ms")

    gc.callbacks.append(on_gc)
    asyncio.get_running_loop().create_task(monitor(), name="stall-monitor")
    if archiver is None:
        return
    take, write = archiver._take_yielding, archiver._write

    async def timed_take() -> Any:
        started = time.perf_counter()
        chunk = await take()
        line(f"{started:.4f} take {(time.perf_counter() - started) * 1000:.1f} ms events={chunk.events}")
        return chunk

    async def timed_write(chunk: Any) -> None:
        started = time.perf_counter()
        await write(chunk)
        took = (time.perf_counter() - started) * 1000
        line(f"{started:.4f} write {took:.1f} ms buckets={len(chunk.bids)} lots={len(chunk.lots)}")

    archiver._take_yielding, archiver._write = timed_take, timed_write


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33): every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2
LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
LIBC.malloc_trim.restype = ctypes.c_int
LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
LIBC.fopen.restype = ctypes.c_void_p
LIBC.fclose.argtypes = [ctypes.c_void_p]
LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
CONTAINERS = (dict, set, frozenset, list, collections.deque)


def arenas_in_use(scratch: Path) -> list[dict[str, int]]:
    """glibc's `malloc_info()` per arena ("heap" 0 is the main arena, the others the threads'):
    the bytes its system memory holds, free in its bins (fast and other) and so in use (system
    minus free; chunks parked in a thread's tcache count as in use), and the arena's mmapped size."""
    fp = LIBC.fopen(str(scratch).encode(), b"w")
    LIBC.malloc_info(0, fp)
    LIBC.fclose(fp)
    heaps = []
    for heap in ElementTree.fromstring(scratch.read_text()).iter("heap"):
        free = sum(int(t.get("size", 0)) for t in heap.findall("total") if t.get("type") in ("fast", "rest"))
        system = next(
            (int(t.get("size", 0)) for t in heap.findall("system") if t.get("type") == "current"), 0
        )
        heaps.append({"nr": int(heap.get("nr", -1)), "system": system, "free": free, "in_use": system - free})
    return heaps


def collector_probe() -> dict[str, float]:
    """`GAVEL_BENCH_GC_PROBE`: a full collection, timed, with malloc's in use before and after and
    the objects it found unreachable: how much of what grows is cyclic garbage waiting for the
    oldest generation's collection (GC_THRESHOLDS make it rare)."""
    before = LIBC.mallinfo2().uordblks
    started = time.perf_counter()
    found = gc.collect()
    took_ms = (time.perf_counter() - started) * 1000
    return {
        "unreachable": found,
        "uordblks_freed": before - LIBC.mallinfo2().uordblks,
        "ms": round(took_ms, 2),
    }


def container_sizes(root: object, prefix: str, depth: int, into: dict[str, int], seen: set[int]) -> None:
    """The length of every dict, set, list or deque held as an attribute by `root` and, `depth`
    levels down, by the objects it holds (keyed by the attribute path)."""
    if id(root) in seen:
        return
    seen.add(id(root))
    try:
        attributes = vars(root)
    except TypeError:  # __slots__ or a compiled class: its slots, where it names them
        names = getattr(type(root), "__slots__", ())
        attributes = {name: getattr(root, name, None) for name in names}
    for name, value in list(attributes.items()):
        if isinstance(value, CONTAINERS):
            into[f"{prefix}.{name}"] = len(value)
        elif depth > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            container_sizes(value, f"{prefix}.{name}", depth - 1, into, seen)


def book_counts(book: Any) -> dict[str, int]:
    lots = list(book.lots.values())
    closed = [lot for lot in lots if lot.state in CLOSED_LOT_STATES]
    return {
        "sessions": len(book.sessions),
        "lots": len(lots),
        "closed": len(closed),
        "compacted": sum(1 for lot in closed if lot.compacted),
        "bid_lines": sum(len(lot.bids) for lot in lots),
        # Whole-session depositors still held (an ended session's go once its lots are compacted).
        "session_depositors": sum(len(session.depositors) for session in book.sessions.values()),
    }


def ref_counts(refs: Any) -> dict[str, int]:
    """The engine's remembered refs (engine/engine.py `RefCache`): accepted, rejected, bidders."""
    return {
        "accepted": sum(len(answers) for answers in refs.answers.values()),
        "rejected": sum(len(answers) for answers in refs.rejections.values()),
        "bidders": len(refs.answers),
    }


def thread_count() -> int:
    """The process's threads, native ones (libuv's pool, the sweep's sender) included."""
    return sum(1 for _ in Path("/proc/self/task").iterdir())


def proc_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample_memory(service: BenchService, path: Path, every: float) -> None:
    """One JSON line every `every` seconds (see the module docstring, `GAVEL_BENCH_MEMORY`)."""
    import tracemalloc

    # Opened once at start-up, before any client: a blocking open is harmless here.
    out = open(path, "w")  # noqa: ASYNC230, SIM115
    began = time.monotonic()
    types_every = float(os.environ.get("GAVEL_BENCH_TYPES_EVERY") or 0)
    types_next = 0.0
    arenas = os.environ.get("GAVEL_BENCH_ARENAS") == "1"
    arenas_scratch = path.with_suffix(".malloc_info.xml")
    gc_probe_every = float(os.environ.get("GAVEL_BENCH_GC_PROBE") or 0)
    gc_probe_next = gc_probe_every
    while True:
        started = time.perf_counter()
        info = LIBC.mallinfo2()
        sizes: dict[str, int] = {}
        seen: set[int] = set()
        container_sizes(service.ctx, "ctx", 2, sizes, seen)
        container_sizes(service.hub, "hub", 1, sizes, seen)
        container_sizes(service, "service", 1, sizes, seen)
        compactor = service.compactor
        record: dict[str, Any] = {
            "t": round(time.monotonic() - began, 1),
            "wall": round(time.time(), 2),
            "rss_kib": proc_rss_kib(),
            "uordblks": info.uordblks,
            "fordblks": info.fordblks,
            "hblkhd": info.hblkhd,
            "arena": info.arena,
            "allocated_blocks": sys.getallocatedblocks(),
            "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
            "book": book_counts(service.local_engine.book),
            "refs": ref_counts(service.local_engine.refs),
            "compactor": {
                "compacted": compactor.compacted if compactor else None,
                "candidates": len(compactor.candidates) if compactor else None,
            },
            "sizes": sizes,
            "mongo_connections": mongo_connections(service),
            # The product's trims (composition/heap.py, MALLOC_TRIM_INTERVAL) since the last sample.
            "trim_ms": [round(ms, 3) for ms in service.heap.stats.recent_ms],
            "trim_released_bytes": service.heap.stats.released_bytes,
            "threads": thread_count(),
            "gc_collections": [generation["collections"] for generation in gc.get_stats()],
            "gc_collected": [generation["collected"] for generation in gc.get_stats()],
        }
        if arenas:
            record["arenas"] = arenas_in_use(arenas_scratch)
        if os.environ.get("GAVEL_BENCH_MONGO_INFLIGHT") == "1":
            record["mongo_in_flight"] = {**IN_FLIGHT.take(), **POOL_EVENTS.take()}
        if gc_probe_every and record["t"] >= gc_probe_next:
            gc_probe_next = record["t"] + gc_probe_every
            record["gc_probe"] = collector_probe()
        service.heap.stats.recent_ms.clear()
        if types_every and record["t"] >= types_next:
            types_next = record["t"] + types_every
            record["types"] = object_types()
            record["deep"] = deep_sizes(
                {"engine": service.local_engine, "hub": service.hub, "ctx": service.ctx, "service": service}
            )
        record["sample_ms"] = round((time.perf_counter() - started) * 1000, 2)
        out.write(json.dumps(record) + "\n")
        out.flush()
        await asyncio.sleep(every)


def object_types() -> dict[str, list[int]]:
    """`GAVEL_BENCH_TYPES_EVERY`: the collector's objects by type: [count, bytes by sys.getsizeof,
    bytes of those over 512 bytes]. Objects over 512 bytes are malloc's (glibc's `uordblks`), the
    smaller ones Python's own arenas'. The objects the collector does not track (str, bytes, int,
    and dicts, tuples and lists holding only such: BSON documents, kept JSON) are counted too,
    each once, under `~TYPE in OWNER`: the type of the tracked object they were reached from,
    through untracked containers at any depth (what a cache of plain data holds)."""
    counts: dict[str, list[int]] = {}
    untracked: set[int] = set()
    sizeof, is_tracked, referents = sys.getsizeof, gc.is_tracked, gc.get_referents
    containers = (dict, tuple, list, set, frozenset)
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        entry = counts.get(name)
        if entry is None:
            entry = counts[name] = [0, 0, 0]
        size = sizeof(obj)
        entry[0] += 1
        entry[1] += size
        if size > 512:
            entry[2] += size
        stack = [r for r in referents(obj) if not is_tracked(r)]
        while stack:
            referent = stack.pop()
            if id(referent) in untracked or type(referent) in (int, bool, float) or referent is None:
                continue
            untracked.add(id(referent))
            size = sizeof(referent)
            entry = counts.setdefault(f"~{type(referent).__qualname__} in {name}", [0, 0, 0])
            entry[0] += 1
            entry[1] += size
            if size > 512:
                entry[2] += size
            if isinstance(referent, containers):
                stack.extend(r for r in referents(referent) if not is_tracked(r))
    return counts


def deep_sizes(roots: dict[str, object], depth: int = 3) -> dict[str, int]:
    """`GAVEL_BENCH_TYPES_EVERY`: the bytes (sys.getsizeof, summed over everything reachable) held
    by each attribute of the service's objects, `depth` attributes down, each object counted once,
    for the first attribute path that reaches it: which structure holds what grows. Modules,
    classes and functions are not followed (they hold the program, not its data)."""
    seen: set[int] = set()
    sizes: dict[str, int] = {}
    sizeof, referents = sys.getsizeof, gc.get_referents
    stop = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.CodeType)

    def weigh(value: object) -> int:
        total = 0
        stack = [value]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, stop):
                continue
            seen.add(id(obj))
            total += sizeof(obj)
            stack.extend(referents(obj))
        return total

    def attributes(obj: object) -> dict[str, object]:
        try:
            return dict(vars(obj))
        except TypeError:
            names = [n for klass in type(obj).__mro__ for n in getattr(klass, "__slots__", ())]
            return {name: getattr(obj, name, None) for name in names}

    def visit(obj: object, path: str, left: int) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        sizes[path + "(self)"] = sizeof(obj)
        for name, value in attributes(obj).items():
            if (
                left > 0
                and not isinstance(value, (*CONTAINERS, str, bytes, int, float, *stop))
                and (hasattr(value, "__dict__") or hasattr(type(value), "__slots__"))
            ):
                visit(value, f"{path}.{name}", left - 1)
            else:
                sizes[f"{path}.{name}"] = weigh(value)

    for path, root in roots.items():
        visit(root, path, depth)
    return {path: size for path, size in sizes.items() if size >= 16_384}


def mongo_connections(service: BenchService) -> dict[str, int]:
    """Connections in the MongoDB clients' pools (idle and in use), per client."""
    counts = {}
    for name in ("client", "background_client"):
        client = getattr(service, name, None)
        topology = getattr(client, "_topology", None)
        if topology is None:
            continue
        counts[name] = sum(
            len(server.pool.conns) + server.pool.active_sockets for server in topology._servers.values()
        )
    return counts


def trace_allocations(directory: str) -> None:
    import tracemalloc

    tracemalloc.start(8)
    taken = [0]

    def snapshot(*_: object) -> None:
        taken[0] += 1
        tracemalloc.take_snapshot().dump(str(Path(directory) / f"snapshot-{taken[0]}.pickle"))

    signal.signal(signal.SIGTTIN, snapshot)


def right_size_hub_snapshots() -> None:
    """`GAVEL_BENCH_RIGHT_SIZED_SNAPSHOTS=1`: the hub's kept per-lot snapshot JSON
    (`Hub._snapshot_lots`, gateway/ws.py) copied into buffers of its own size
    (persistence/kept_json.py) as soon as it is built: what using `kept_json` there does, measured
    before that line of gateway/ws.py changes. Each list is right-sized once (its id remembered)."""
    original = Hub._snapshot_lots
    sized: dict[int, int] = {}

    def right_sized_lots(hub: Hub, session_id: int, lot_ids: Sequence[int]) -> list[tuple[Any, bytes]]:
        lots = original(hub, session_id, lot_ids)
        if sized.get(session_id) != id(lots):
            lots[:] = [(lot, right_sized(part)) for lot, part in lots]
            sized[session_id] = id(lots)
        return lots

    Hub._snapshot_lots = right_sized_lots  # type: ignore[method-assign]


def bound_caches(lots: int) -> None:
    """`GAVEL_BENCH_KEPT_LOTS`: the caches' bounds lowered (module globals read at each insert)."""
    import persistence.catalog
    import persistence.read_cache

    persistence.catalog.KEPT_LOT_VIEWS_MAX = lots
    persistence.catalog.KEPT_SESSION_VIEWS_MAX = max(2, lots // 100)
    persistence.read_cache.MAX_ENTRIES = lots  # type: ignore[misc]


def main() -> int:
    if os.environ.get("GAVEL_BENCH_KEPT_LOTS"):
        bound_caches(int(os.environ["GAVEL_BENCH_KEPT_LOTS"]))
    if os.environ.get("GAVEL_BENCH_RIGHT_SIZED_SNAPSHOTS") == "1":
        right_size_hub_snapshots()
    if VARIANT not in VARIANTS:
        print(f"gavel_server: GAVEL_BENCH_VARIANT must be one of {VARIANTS[1:]}", file=sys.stderr)
        return 2
    if os.environ.get("GAVEL_BENCH_COMMANDS"):
        monitoring.register(COMMANDS)  # before run.main() creates its clients
    if os.environ.get("GAVEL_BENCH_MONGO_INFLIGHT") == "1":
        monitoring.register(IN_FLIGHT)
        monitoring.register(POOL_EVENTS)
    if os.environ.get("GAVEL_LOOP", "uvloop") == "asyncio":
        run.uvloop = types.SimpleNamespace(run=asyncio.run)  # type: ignore[assignment]
    if os.environ.get("GAVEL_BENCH_TRACEMALLOC"):
        trace_allocations(os.environ["GAVEL_BENCH_TRACEMALLOC"])
    profile_path = os.environ.get("GAVEL_PROFILE")
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()

        def stop(*_: object) -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGUSR2, stop)
    return run.main([], service_type=BenchService)


if __name__ == "__main__":
    sys.exit(main())
