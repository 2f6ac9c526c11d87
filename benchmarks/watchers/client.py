"""A load client process of `bench_watchers.py`: thousands of watchers, a few of them timed.

    python benchmarks/watchers/client.py CONFIG      (CONFIG: a path to a JSON object)

CONFIG is `benchmarks/scale/client.py`'s (`ports`, `session_id`, `tokens` / `lots` / `next_min`
for this process's bidder pairs, `pids`, `connect_parallel`) plus `sampled`: how many of this
process's watchers time every price frame. The others only count them.

Receiving 500,000 frames/s over 10,000 sockets is more than one Python core parses frame by frame
(`loadgen.py`'s watcher does), so once subscribed a counting watcher does not parse frames at all:
it counts the price frames' opening bytes (`{"type":"price"`) in each chunk the kernel hands over,
carrying the last bytes of a chunk into the next so a frame split between two reads counts once.
The server's pings (`\\x89\\x00`, Tornado's empty ping) are answered the same way. Nor does it
wake the loop for every write the server makes: its transport stops reading once subscribed, and
every BATCH_READ_S the process reads each counting socket's pending bytes itself (one `read()`
each, the kernel holding what came meanwhile), so its cost per delivery falls as frames come
faster instead of being one loop wake-up and one read per socket per server write. On this
machine the load clients share the two cores with the server: what they do not spend is the
server's. They still read and count every byte; the server writes to them as to any socket.

Timed watchers are `loadgen.py`'s (latency = receive wall clock - the frame's `ts`), read as soon
as anything arrives, and record each frame's seq, so the benchmark knows how many distinct price
frames went out and can tell conflated watchers (fewer frames than that, gateway/ws.py's
latest-only policy) from complete ones. Which watchers are timed is drawn at random among each
batch connected, so they sit anywhere in the server's order of subscribers.

Lines of JSON, as `benchmarks/scale/client.py` speaks them:
1. on start: bidders connect and are primed: `{"event": "primed"}`;
2. `{"op": "watch", "total": N}`: watchers connect and subscribe until this process holds N;
3. `{"op": "phase", "spec": {...}, "start_at": T}`: `LoadRun.phase` at wall-clock time T, plus
   the price frames every watcher counted over the phase (a histogram: frames -> watchers) and
   over its measured window (`window_deliveries`); the timed watchers' latencies as histograms;
   With `"concurrent": true` (the soak with lots closing) the phase runs while the next commands
   are read, and says its result when it ends;
4. `{"op": "retarget", "session_id": S, "lots": [...], "next_min": [...]}`: no answer; the bidder
   pairs bid on these lots from their next round, and watchers connected from now on subscribe to
   S (the soak's sessions follow one another; the churn moves the held watchers over);
5. `{"op": "churn_start", "rate": R, "keep": N}`: every 0.1 s, R / 10 new watchers connect and
   subscribe and as many of the oldest close, holding about N; `{"op": "churn_stop"}`: stops,
   reports connects, closes and failures;
6. `{"op": "quit"}` (or end of input): closes every socket and exits.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from benchmarks.e2e.loadgen import LoadRun, Watcher, mask_frame
from benchmarks.scale.client import ScaleRun, histogram, raise_nofile, say

PRICE = b'{"type":"price"'
PING = b"\x89\x00"
CARRY = len(PRICE) - 1  # a whole marker never fits in the carried bytes: nothing counts twice
CHURN_TICK_S = 0.1
BATCH_READ_S = 0.5  # how often the counting watchers' sockets are read (see the module docstring)
READ_SIZE = 1 << 18
BATCH_SLICE = 256  # counting sockets read before the loop gets its turn


class TimedWatcher(Watcher):
    """`loadgen.py`'s watcher, also counting its price frames and recording their seqs."""

    def __init__(self, run: LoadRun, target: str) -> None:
        super().__init__(run, target)
        self.count = 0

    def on_text(self, payload: bytes, now: float) -> None:
        super().on_text(payload, now)
        if payload.startswith(PRICE):
            self.count += 1
            at = payload.find(b'"seq":') + 6
            run: WatcherRun = self.run  # type: ignore[assignment]
            seq = int(payload[at : payload.find(b",", at)])
            run.seqs.add(seq)
            if run.window_start_ms <= now < run.window_end_ms:
                run.window_seqs.add(seq)


class CountingWatcher(TimedWatcher):
    """Parses frames until subscribed, then only counts price frames (see the module docstring)."""

    def __init__(self, run: LoadRun, target: str) -> None:
        super().__init__(run, target)
        self.counting = False
        self.carry = b""
        self.fd = -1  # the socket's descriptor, once WatcherRun.read_batched reads it

    def on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith(PRICE):
            self.count += 1
        elif payload.startswith(b'{"type":"hello"'):
            self.write(b'{"op":"subscribe","session_id":%d}' % self.run.session_id)
        elif payload.startswith(b'{"type":"snapshot"') and not self.subscribed.done():
            self.subscribed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.counting:
            super().data_received(data)
            if self.subscribed.done():
                self.counting = True
                self.carry = self.buffer[-CARRY:]
                if self.transport is not None and not self.transport.is_closing():
                    # From now on WatcherRun.read_batched reads this socket, every BATCH_READ_S.
                    self.transport.pause_reading()
                    self.fd = self.transport.get_extra_info("socket").fileno()
                    run: WatcherRun = self.run  # type: ignore[assignment]
                    run.batched.append(self)
            return
        self.count_chunk(data)

    def read_pending(self) -> None:
        """What the kernel holds for this socket, counted; EOF or an error closes it."""
        if self.transport.is_closing():  # its descriptor may be closed, even reused, by now
            return
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.transport.close()  # connection_lost counts a disconnect the server made
                return
            self.count_chunk(data)
            if len(data) < READ_SIZE:
                return

    def count_chunk(self, data: bytes) -> None:
        chunk = self.carry + data
        self.count += chunk.count(PRICE)
        if PING in chunk and self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(b"", 0xA, 0))
        self.carry = chunk[-CARRY:]


class WatcherRun(ScaleRun):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.sampled = int(config.get("sampled", 0))
        self.timed: list[TimedWatcher] = []  # the watchers that time every frame (at most `sampled`)
        self.seqs: set[int] = set()
        self.window_seqs: set[int] = set()  # received in the measured window
        self.churn_task: asyncio.Task[None] | None = None
        self.churn_stats = {"connected": 0, "closed": 0, "failed": 0}
        self.batched: list[CountingWatcher] = []  # subscribed counting watchers, read every tick
        self.reader: asyncio.Task[None] | None = None

    def new_watcher(self, timed: bool = False) -> TimedWatcher:
        self.timed = [w for w in self.timed if not w.closing]
        if timed and len(self.timed) < self.sampled:
            watcher = TimedWatcher(self, self.path)
            self.timed.append(watcher)
        else:
            watcher = CountingWatcher(self, self.path)
        self.port_of[id(watcher)] = self.ports[len(self.watchers) % len(self.ports)]
        return watcher

    async def read_batched(self) -> None:
        """Every BATCH_READ_S, each subscribed counting watcher's pending bytes (module docstring);
        a closed or closing one is dropped first, before its descriptor can be reused."""
        while True:
            await asyncio.sleep(BATCH_READ_S)
            self.batched = [w for w in self.batched if w.open and not w.closing]
            for number, watcher in enumerate(self.batched, 1):
                if watcher.open and not watcher.closing:
                    watcher.read_pending()
                if number % BATCH_SLICE == 0:
                    # The timed watchers and the bidders are read between slices, not after all.
                    await asyncio.sleep(0)

    async def hold(self, total: int, limit_s: float) -> dict[str, Any]:
        """Connect and subscribe watchers until `total` are held; count who made it."""
        if self.reader is None:
            self.reader = asyncio.ensure_future(self.read_batched())
        wanted = max(0, total - len(self.watchers))
        self.timed = [w for w in self.timed if not w.closing]
        timed = set(random.sample(range(wanted), min(wanted, max(0, self.sampled - len(self.timed)))))
        fresh = [self.new_watcher(k in timed) for k in range(wanted)]
        self.watchers.extend(fresh)
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._open(watcher)) for watcher in fresh]
        done, pending = await asyncio.wait(tasks, timeout=limit_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        errors: dict[str, int] = {}
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                kind = type(task.exception()).__name__
                errors[kind] = errors.get(kind, 0) + 1
        return {
            "event": "watching",
            "asked": total,
            "subscribed": sum(1 for w in self.watchers if w.open and w.subscribed.done()),
            "timed": sum(1 for w in self.watchers if type(w) is TimedWatcher and w.open),
            "errors": errors,
            "connect_s": round(time.perf_counter() - started, 3),
        }

    def counts(self) -> int:
        return sum(w.count for w in self.watchers if isinstance(w, TimedWatcher))

    async def counted_phase(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`LoadRun.phase` plus every watcher's price frames over the phase and over its window."""
        self.seqs, self.window_seqs = set(), set()
        watchers = [w for w in self.watchers if isinstance(w, TimedWatcher) and w.open]
        start = {id(w): w.count for w in watchers}
        marks: list[tuple[float, int]] = []

        async def mark_window() -> None:
            await asyncio.sleep(float(spec.get("warmup", 1.0)))
            marks.append((time.perf_counter(), self.counts()))
            await asyncio.sleep(float(spec["duration"]))
            marks.append((time.perf_counter(), self.counts()))

        marker = asyncio.ensure_future(mark_window())
        result = await self.phase(spec, {})
        await marker
        per_watcher = collections.Counter(w.count - start[id(w)] for w in watchers if w.open)
        (t0, c0), (t1, c1) = marks
        result.update(
            {
                "event": "phase",
                "open_watchers": sum(1 for w in self.watchers if w.open),
                "timed_watchers": sum(1 for w in watchers if type(w) is TimedWatcher and w.open),
                "counts": {str(k): v for k, v in per_watcher.items()},
                "seqs": sorted(self.seqs),
                "window_seqs": sorted(self.window_seqs),
                "window_deliveries": c1 - c0,
                "window_s": round(t1 - t0, 3),
                "bcast_hist": histogram(self.bcast_latencies),
                "ack_hist": histogram(self.ack_latencies),
            }
        )
        return result

    async def churn(self, rate: float, keep: int) -> None:
        """Replace `rate` watchers per second, oldest first, holding about `keep` open: each tick
        starts `rate / 10` connections (fewer while earlier ones are still connecting) and closes
        as many of the oldest as are open beyond `keep`."""
        per_tick = max(1, round(rate * CHURN_TICK_S))
        next_tick = time.perf_counter()
        pending: set[asyncio.Future[None]] = set()
        while True:
            next_tick += CHURN_TICK_S
            self.watchers = [w for w in self.watchers if not w.closing and (w.open or not w.opened.done())]
            counting = [w for w in self.watchers if type(w) is CountingWatcher and w.open]
            surplus = sum(1 for w in self.watchers if w.open) - keep
            for watcher in counting[: max(0, min(per_tick, surplus))]:
                watcher.close()
                self.churn_stats["closed"] += 1
            for _ in range(max(0, min(per_tick, 4 * per_tick - len(pending)))):
                fresh = self.new_watcher()
                self.watchers.append(fresh)
                task = asyncio.ensure_future(self._open(fresh))
                pending.add(task)
                task.add_done_callback(self._churned)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

    async def timed_phase(self, spec: dict[str, Any], start_at: float) -> None:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        say(await self.counted_phase(spec))

    def retarget(self, session_id: int, lots: list[int], next_min: list[int]) -> None:
        """The bidders move to a new session's lots (two per pair, at their opening prices) from
        their next round on, and watchers connected from now on subscribe to it; an answer still
        on its way about an old lot only updates that lot's price."""
        if len(lots) < 2 * len(self.pairs) or len(next_min) < 2 * len(self.pairs):
            raise ValueError("retarget: one lot (and its next_min) per bidder")
        self.session_id = session_id
        for number, pair in enumerate(self.pairs):
            pair.lots = (lots[2 * number], lots[2 * number + 1])
            pair.next_min = {pair.lots[0]: next_min[2 * number], pair.lots[1]: next_min[2 * number + 1]}

    def _churned(self, task: asyncio.Future[None]) -> None:
        ok = not task.cancelled() and task.exception() is None
        self.churn_stats["connected" if ok else "failed"] += 1


async def main_async(config: dict[str, Any]) -> None:
    run = WatcherRun(config)
    loop = asyncio.get_running_loop()
    phases: set[asyncio.Future[None]] = set()  # concurrent phases: kept until done
    started = time.perf_counter()
    await run.connect()
    unprimed = await run.prime()
    say({"event": "primed", "unprimed_pairs": unprimed, "seconds": round(time.perf_counter() - started, 3)})
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            command = json.loads(line)
            op = command["op"]
            if op == "watch":
                say(await run.hold(int(command["total"]), float(config.get("connect_timeout", 180))))
            elif op == "phase" and command.get("concurrent"):
                # The soak's phase with lots closing: the next commands (`retarget`) are read while it runs.
                task = asyncio.ensure_future(run.timed_phase(command["spec"], float(command["start_at"])))
                phases.add(task)
                task.add_done_callback(phases.discard)
            elif op == "phase":
                await run.timed_phase(command["spec"], float(command["start_at"]))
            elif op == "retarget":
                run.retarget(int(command["session_id"]), command["lots"], command["next_min"])
            elif op == "churn_start":
                run.churn_stats = {"connected": 0, "closed": 0, "failed": 0}
                run.churn_task = asyncio.ensure_future(
                    run.churn(float(command["rate"]), int(command["keep"]))
                )
                say({"event": "churning"})
            elif op == "churn_stop":
                if run.churn_task is not None:
                    run.churn_task.cancel()
                    run.churn_task = None
                say({"event": "churned", **run.churn_stats, "held": sum(1 for w in run.watchers if w.open)})
            else:
                break
    finally:
        run.close()
        await asyncio.sleep(0.1)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    raise_nofile()
    config = json.loads(Path(sys.argv[1]).read_text())
    uvloop.run(main_async(config))


if __name__ == "__main__":
    main()
