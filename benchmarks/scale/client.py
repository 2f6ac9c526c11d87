"""A load client process of `bench_scale.py`: websockets spread over several gateways, driven by stdin.

    python benchmarks/scale/client.py CONFIG      (CONFIG: a path to a JSON object)

CONFIG: `ports` (the gateways), `session_id`, `tokens` / `lots` / `next_min` (this process's
bidders, in pairs, as `loadgen.py` takes them), `watchers` (how many this process holds),
`offset` (where this process starts the round-robin over `ports`), `pids` (processes whose CPU
each phase reports), `connect_parallel`.

It is `benchmarks/e2e/loadgen.py`'s `LoadRun` (the same minimal websocket client, bidder pairs,
paced phases and timing) with one change: bidder `n` connects to `ports[n % len(ports)]` and
watcher `i` to `ports[(offset + i) % len(ports)]`, so a pair's two bidders sit on different
gateways when there are two and each gateway holds the same number of watchers. The benchmark
and this process talk in lines of JSON:

1. on start: bidders connect and are primed, then `{"event": "primed"}` is printed;
2. stdin `{"op": "watch"}`: watchers connect and subscribe (at most `connect_parallel` handshakes
   at a time); printed: how many were asked for, subscribed and failed, per port, and the seconds
   it took (`connect_s`);
3. stdin `{"op": "phase", "spec": {...}, "start_at": T}`: sleeps until wall-clock time `T` (so
   every client process measures the same window), runs the phase (`LoadRun.phase`), prints its
   result plus the raw latencies as histograms of 0.1 ms bins (`bcast_hist`, `ack_hist`: `[bins,
   counts]`) so the benchmark merges the percentiles of all client processes exactly;
4. stdin `{"op": "quit"}` (or end of input): closes every socket and exits.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from benchmarks.e2e.loadgen import Bidder, Connection, LoadRun, Watcher

BIN_MS = 0.1


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def histogram(values: Any) -> list[list[int]]:
    """Latencies (ms) → [bins, counts] with bins of `BIN_MS` (bin b holds [b, b + 1) × BIN_MS)."""
    data = numpy.frombuffer(values, dtype=numpy.float64)
    if not len(data):
        return [[], []]
    bins, counts = numpy.unique(numpy.floor(data / BIN_MS).astype(numpy.int64), return_counts=True)
    return [bins.tolist(), counts.tolist()]


class ScaleRun(LoadRun):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__({**config, "port": config["ports"][0]})
        self.ports: list[int] = [int(port) for port in config["ports"]]
        self.offset = int(config.get("offset", 0))
        self.port_of: dict[int, int] = {}  # id(connection) -> gateway port

    async def _open(self, connection: Connection) -> None:
        port = self.port_of.get(id(connection))
        if port is None and isinstance(connection, Bidder):
            port = self.ports[connection.number % len(self.ports)]
        async with self.parallel:
            await self.loop.create_connection(lambda: connection, self.host, port or self.port)
            await connection.opened
            if isinstance(connection, Watcher):
                await connection.subscribed

    async def watch(self, limit_s: float) -> dict[str, Any]:
        """Connect and subscribe the watchers; count who made it, per port."""
        count = int(self.config.get("watchers", 0))
        self.watchers = [Watcher(self, self.path) for _ in range(count)]
        for index, watcher in enumerate(self.watchers):
            self.port_of[id(watcher)] = self.ports[(self.offset + index) % len(self.ports)]
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._open(watcher)) for watcher in self.watchers]
        done, pending = await asyncio.wait(tasks, timeout=limit_s) if tasks else (set(), set())
        elapsed = time.perf_counter() - started
        for task in pending:
            task.cancel()
        errors: dict[str, int] = {}
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                kind = type(task.exception()).__name__
                errors[kind] = errors.get(kind, 0) + 1
        per_port = {str(port): {"asked": 0, "subscribed": 0} for port in self.ports}
        for watcher in self.watchers:
            row = per_port[str(self.port_of[id(watcher)])]
            row["asked"] += 1
            ok = watcher.open and watcher.subscribed.done() and not watcher.subscribed.cancelled()
            row["subscribed"] += int(ok and watcher.subscribed.exception() is None)
        return {
            "event": "watching",
            "asked": count,
            "subscribed": sum(row["subscribed"] for row in per_port.values()),
            "timed_out": len(pending),
            "errors": errors,
            "per_port": per_port,
            "connect_s": round(elapsed, 3),
        }


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main_async(config: dict[str, Any]) -> None:
    run = ScaleRun(config)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    await run.connect()
    unprimed = await run.prime()
    say(
        {
            "event": "primed",
            "bidders": len(run.bidders),
            "unprimed_pairs": unprimed,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            command = json.loads(line)
            if command["op"] == "watch":
                say(await run.watch(float(config.get("connect_timeout", 120))))
            elif command["op"] == "phase":
                delay = float(command["start_at"]) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                result = await run.phase(command["spec"], {})
                result["event"] = "phase"
                result["open_watchers"] = sum(1 for watcher in run.watchers if watcher.open)
                result["bcast_hist"] = histogram(run.bcast_latencies)
                result["ack_hist"] = histogram(run.ack_latencies)
                say(result)
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
