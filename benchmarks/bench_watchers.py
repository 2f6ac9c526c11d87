"""Ten thousand watchers on one gateway process, against the bare echo server. Prints one JSON object.

Everything runs on 127.0.0.1 and is started here: embedded MongoDB and Redis (as `bench_e2e.py`
does), Gavel (`benchmarks/e2e/gavel_server.py`: `run.py`'s `main()`, one process, with the
benchmark's limits) and the echo server (`benchmarks/e2e/echo_server.py`: bare Tornado websockets
under uvloop, Gavel's frame shapes and write path, no engine), each a child process. Gavel's
session, lots and 100 bidders (registered, credited, deposits paid) are made through REST once;
each round restarts both servers (Gavel from its journal) so every round measures fresh processes.

Load comes from `--clients` processes (`benchmarks/watchers/client.py`): the bidder pairs of
`loadgen.py` spread over them, and the watchers, of which `--sampled` in all time every price
frame (receive wall clock - the frame's `ts`) while the others only count price frames. Per round
and server, one after the other:

1. memory: the server's RSS (`VmRSS`) idle with the bidders only, then with `--steps` watchers
   (1,000, 5,000, 10,000) connected and subscribed, each after the machine went quiet: KiB per
   socket at each step ((RSS - RSS idle) / sockets) and the slope between the first and last step;
2. broadcast: with every watcher subscribed, the bidders bid paced at each of `--rates` price
   changes/s (every accepted bid changes a price, the pairs' lots are their own): price frames
   delivered/s over the window (every frame at every watcher counted), delivery ratio
   (deliveries / (distinct price frames x open watchers), over the whole phase plus a drain),
   watchers that got fewer frames than were sent (`conflated`: gateway/ws.py's latest-only policy
   for a lagging socket, or frames lost), broadcast latency p50/p99 (timed watchers), the server's
   CPU per delivery (µs) and every process's CPU, clients included.

Ratios gavel / echo are taken within a round, then their median (`--runs`, 3): deliveries/s, CPU
per delivery, KiB per socket. `--soak-minutes M` instead runs the soak (Gavel only): `--soak-keep`
watchers held while `--churn` of them per second are replaced (connect + subscribe / close) and the
bidders bid at `--soak-rate`/s, RSS sampled every `--soak-sample` s; reported: the RSS series, the
start and end, and the slope (KiB/min, least squares) over the last 8 minutes (or the last 80 % of
a shorter soak). It measures memory, not latency: it may run without the benchmark lock.

    .venv/bin/python benchmarks/bench_watchers.py                 # 3 rounds (~6 min)
    .venv/bin/python benchmarks/bench_watchers.py --quick         # one short round, 5,000 watchers
    .venv/bin/python benchmarks/bench_watchers.py --soak-minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import select
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_e2e import (  # noqa: E402
    ADMIN_PASSWORD,
    SESSION_DEPOSIT,
    START_PRICE,
    UNIT,
    Child,
    Rest,
    gavel_env,
    iso,
    lot_prices,
    med,
    peer_env,
    quiesce,
    ratio_median,
    set_up_gavel,
)
from benchmarks.bench_scale import Client, merged_percentiles, raise_nofile, rss_mb  # noqa: E402
from engine.engine import REFS_KEPT  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

PYTHON = sys.executable
GAVEL_SERVER = ROOT / "benchmarks" / "e2e" / "gavel_server.py"
ECHO_SERVER = ROOT / "benchmarks" / "e2e" / "echo_server.py"
WATCH_CLIENT = ROOT / "benchmarks" / "watchers" / "client.py"
DEFAULT_CHART = ROOT / "docs" / "performance" / "watchers.png"
QUICK_CHART = ROOT / "benchmarks" / "out" / "watchers-quick.png"  # benchmarks/out/ is not committed
SERVERS = ("gavel", "echo")


def start_client(number: int, config: dict[str, Any], work: Path) -> Client:
    return Client(number, config, work, WATCH_CLIENT)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, services: Services) -> None:
        self.args, self.root, self.services = args, root, services
        self.setup: dict[str, Any] | None = None
        self.gavel_dir = root / "gavel"
        self.database = f"bench_watchers_{os.getpid()}"
        self.service_pids = {s.name: s.pid for s in services.embedded}
        self.trace_path: Path | None = None  # the running Gavel's fan-out trace (--trace)
        self.memory_path = root / "memory.jsonl"  # the soak's server samples (GAVEL_BENCH_MEMORY)

    def start(self, name: str) -> Child:
        port = free_port()
        if name == "gavel":
            env = gavel_env(
                self.services.mongo_url,
                self.services.redis_url,
                self.database,
                PORT=str(port),
                DATA_DIR=str(self.gavel_dir),
            )
            # Every watcher comes from 127.0.0.1: the edge's cap per address above 10,000 sockets.
            env["MAX_CONNECTIONS_PER_IP"] = "100000"
            if self.args.soak_tracemalloc:
                env["GAVEL_BENCH_TRACEMALLOC"] = str(self.root)
            if self.args.soak_minutes is not None:
                # The server samples its own memory (benchmarks/e2e/gavel_server.py): the allocator's
                # figures tell fragmentation from a leak.
                env["GAVEL_BENCH_MEMORY"] = str(self.memory_path)
                env["GAVEL_BENCH_MEMORY_EVERY"] = str(self.args.soak_sample)
                if self.args.soak_refs_window:
                    env["GAVEL_BENCH_REFS_WINDOW_MS"] = str(int(self.args.soak_refs_window * 1000))
                if self.args.soak_kept_lots:
                    env["GAVEL_BENCH_KEPT_LOTS"] = str(self.args.soak_kept_lots)
                if self.args.soak_types:
                    env["GAVEL_BENCH_TYPES_EVERY"] = str(self.args.soak_types)
                if self.args.soak_malloc_trim is not None:
                    # The product's setting (composition/heap.py); 0 turns the trims off (the A/B).
                    env["MALLOC_TRIM_INTERVAL"] = (
                        f"{self.args.soak_malloc_trim:g}s" if self.args.soak_malloc_trim else "0"
                    )
                if self.args.soak_arenas:
                    env["GAVEL_BENCH_ARENAS"] = "1"
                if self.args.soak_right_sized_snapshots:
                    env["GAVEL_BENCH_RIGHT_SIZED_SNAPSHOTS"] = "1"
                if self.args.soak_gc_probe:
                    env["GAVEL_BENCH_GC_PROBE"] = str(self.args.soak_gc_probe)
                if self.args.soak_mongo_in_flight:
                    env["GAVEL_BENCH_MONGO_INFLIGHT"] = "1"
                if self.args.soak_lot_seconds:
                    # The product's default: snapshots (waiting for the archive, letting the journal
                    # go) run within the soak as in production; gavel_env turns them off for the
                    # latency runs.
                    env["SNAPSHOT_INTERVAL"] = "60"
            if self.args.trace:
                self.trace_path = self.root / f"fanout-{time.monotonic_ns()}.jsonl"
                env["GAVEL_BENCH_FANOUT"] = str(self.trace_path)
            argv = [PYTHON, str(GAVEL_SERVER)]
        else:
            env, argv = peer_env(), [PYTHON, str(ECHO_SERVER), str(port)]
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = Child(name, argv, env, logs, port)
        try:
            child.wait_listening()
        except BaseException:
            child.stop()
            raise
        return child

    def clients(self, name: str, server: Child, work: Path) -> list[Client]:
        a = self.args
        n = a.bidders
        if name == "gavel":
            if self.setup is None:
                self.setup = asyncio.run(set_up_gavel(server.port, n))
            prices = asyncio.run(lot_prices(server.port, self.setup["session_id"]))
            lots, tokens, session_id = self.setup["lots"], self.setup["tokens"], self.setup["session_id"]
            next_min = [prices[lot] for lot in lots]
        else:
            lots, tokens, session_id = list(range(1, n + 1)), [None] * n, 1
            next_min = [100_00] * n
        pairs = split(n // 2, a.clients)
        sampled = split(a.sampled, a.clients)
        pids = {"server": server.pid, **self.service_pids}
        clients: list[Client] = []
        first = 0
        for k in range(a.clients):
            lo, hi = 2 * first, 2 * (first + pairs[k])
            first += pairs[k]
            config = {
                "ports": [server.port],
                "session_id": session_id,
                "tokens": tokens[lo:hi],
                "lots": lots[lo:hi],
                "next_min": next_min[lo:hi],
                "sampled": sampled[k],
                "pids": pids if k == 0 else {},
                "connect_parallel": 64,
                "connect_timeout": 180,
                # Every watcher's frames are counted after the bids stop: time for the last ones.
                "drain_s": 3.0,
            }
            clients.append(start_client(k, config, work))
        return clients

    # -- one round, one server ----------------------------------------------------------------
    def measure(self, name: str, number: int) -> dict[str, Any]:
        a = self.args
        work = self.root / f"{name}_r{number}"
        work.mkdir(parents=True, exist_ok=True)
        server = self.start(name)
        clients: list[Client] = []
        record: dict[str, Any] = {}
        try:
            clients = self.clients(name, server, work)
            primed = [client.read(180) for client in clients]
            record["unprimed_pairs"] = sum(p["unprimed_pairs"] for p in primed)
            every = [server.pid, *self.service_pids.values(), *(c.pid for c in clients)]
            quiesce(every)
            idle = rss_mb(server.pid) or 0.0
            memory: dict[str, Any] = {"idle_mb": idle, "steps": []}
            subscribed = 0
            for step in a.steps:
                for client, share in zip(clients, split(step, a.clients), strict=True):
                    client.send({"op": "watch", "total": share})
                answers = [client.read(240) for client in clients]
                subscribed = sum(w["subscribed"] for w in answers)
                time.sleep(0.5)
                quiesce(every)
                rss = rss_mb(server.pid) or 0.0
                memory["steps"].append(
                    {
                        "sockets": step,
                        "subscribed": subscribed,
                        "rss_mb": rss,
                        "kib_per_socket": round((rss - idle) * 1024 / subscribed, 2) if subscribed else None,
                        "connect_s": max(w["connect_s"] for w in answers),
                        "errors": {k: v for w in answers for k, v in w["errors"].items()},
                    }
                )
            steps = memory["steps"]
            if len(steps) >= 2 and steps[-1]["subscribed"] > steps[0]["subscribed"]:
                grown = (steps[-1]["rss_mb"] - steps[0]["rss_mb"]) * 1024
                memory["slope_kib_per_socket"] = round(
                    grown / (steps[-1]["subscribed"] - steps[0]["subscribed"]), 2
                )
            record["memory"] = memory
            for rate in a.rates:
                quiesce(every)
                record[f"{rate:g}"] = self.phase(clients, rate, subscribed)
            if a.verbose:
                print(
                    f"[{time.strftime('%H:%M:%S')}] {name} r{number}: {summary(record)}",
                    file=sys.stderr,
                    flush=True,
                )
            return record
        finally:
            for client in clients:
                client.stop()
            server.stop()

    def phase(self, clients: list[Client], rate: float, watchers: int) -> dict[str, Any]:
        a = self.args
        start_at = time.time() + 0.5
        pairs = split(a.bidders // 2, a.clients)
        for client, share in zip(clients, pairs, strict=True):
            spec = {
                "name": f"bcast_{rate:g}",
                "mode": "paced",
                "rate": rate * share * 2 / a.bidders,
                "warmup": a.warmup,
                "duration": a.duration,
            }
            client.send({"op": "phase", "spec": spec, "start_at": start_at})
        results = [client.read(a.warmup + a.duration + 60) for client in clients]
        merged = merge(results)
        if a.trace and self.trace_path is not None:
            window = (start_at + a.warmup, start_at + a.warmup + a.duration)
            merged["trace"] = fanout_trace(self.trace_path, *window)
        return merged


def fanout_trace(path: Path, start: float, end: float) -> dict[str, Any]:
    """Where a price frame's time goes on the server (gavel_server.py `GAVEL_BENCH_FANOUT`), for
    the frames taken by the hub in [start, end): accept -> hub (`commit`: the group commit),
    hub -> taken into its session's log (`queue`: the loop's queue before the hub's next step),
    accept -> the end of the first sweep that started after it was taken (`to_all`: every
    subscriber written by then); the sweeps' wall time (`sweep`) and the hub's steps, i.e. how
    long the loop is held at a time (`step`). Milliseconds."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sweeps: list[tuple[float, float]] = []
    opened: float | None = None
    for record in records:
        if "sweep" in record:
            opened = record["sweep"]
        elif "swept" in record and opened is not None:
            sweeps.append((opened, record["swept"]))
            opened = None
    parts: dict[str, list[float]] = {"commit": [], "queue": [], "to_all": [], "sweep": [], "step": []}
    for record in records:
        if "collected" in record and start <= record["collected"] < end:
            taken = record["collected"]
            done = next((e for s, e in sweeps if s >= taken), None)
            for at_ms, arrived in record["prices"]:
                parts["commit"].append(arrived * 1000 - at_ms)
                parts["queue"].append((taken - arrived) * 1000)
                if done is not None:
                    parts["to_all"].append(done * 1000 - at_ms)
        elif "step" in record and start <= record["step"] < end:
            parts["step"].append((record["end"] - record["step"]) * 1000)
    parts["sweep"] = [(e - s) * 1000 for s, e in sweeps if start <= s < end]
    summary: dict[str, Any] = {"sweeps": len(parts["sweep"]), "steps": len(parts["step"])}
    # What else held the loop in the window: the pinger's rounds, long collections, late wake-ups.
    for kind in ("ping", "gc", "stall"):
        held = sorted((r["end"] - r[kind]) * 1000 for r in records if kind in r and start <= r[kind] < end)
        if held:
            summary[kind] = {"n": len(held), "max": round(held[-1], 1), "total": round(sum(held), 1)}
    summary["gc_gens"] = sorted(r["gen"] for r in records if "gc" in r and start <= r["gc"] < end)
    # The pinger's rounds over the whole server run (seconds from the window's start, slices, the
    # longest slice in ms): whether one fell in the window.
    steps = [r for r in records if "step" in r and "cpu" in r and start <= r["step"] < end]
    if steps:
        # Seconds per second of window: the loop in sweep steps (wall), its thread's CPU in them,
        # and the process's CPU in them (the loop thread + the send worker).
        span = end - start
        summary["in_steps"] = {
            "wall": round(sum(r["end"] - r["step"] for r in steps) / span, 3),
            "loop_cpu": round(sum(r["cpu"] for r in steps) / span, 3),
            "process_cpu": round(sum(r["pcpu"] for r in steps) / span, 3),
        }
        sends = sum(r.get("sends", 0) for r in steps)
        if sends:
            # Per socket sent from C, µs of the loop thread's wall: in the roster's sweep in C (its
            # share of the sends, and waiting for the worker's last) and the rest of the step (the
            # sockets written through their transports, the step's Python).
            wall = sum(r["end"] - r["step"] for r in steps)
            in_c = sum(r["sweep_s"] for r in steps)
            summary["per_direct_send_us"] = {
                "sweep_in_c": round(in_c / sends * 1e6, 2),
                "rest": round((wall - in_c) / sends * 1e6, 2),
                "sends": sends,
            }
    rounds: list[list[float]] = []
    for record in (r for r in records if "ping" in r):
        held = (record["end"] - record["ping"]) * 1000
        if rounds and record["ping"] - start - rounds[-1][0] < 2.0:
            rounds[-1][1] += 1
            rounds[-1][2] = max(rounds[-1][2], round(held, 1))
        else:
            rounds.append([round(record["ping"] - start, 1), 1, round(held, 1)])
    summary["ping_rounds"] = rounds
    for name, values in parts.items():
        values.sort()
        if values:
            summary[name] = {
                "p50": round(values[len(values) // 2], 1),
                "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
                "mean": round(statistics.fmean(values), 1),
            }
    return summary


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    frames = len(set().union(*(r["seqs"] for r in results)))
    counts: dict[int, int] = {}
    for r in results:
        for got, n in r["counts"].items():
            counts[int(got)] = counts.get(int(got), 0) + n
    open_watchers = sum(counts.values())
    delivered = sum(got * n for got, n in counts.items())
    window_s = statistics.mean(r["window_s"] for r in results)
    per_s = sum(r["window_deliveries"] for r in results) / window_s
    cpu = dict(results[0]["cpu_cores"])  # the server and services: sampled by the first client
    cpu["client"] = round(sum(r["cpu_cores"].get("client", 0.0) for r in results), 3)
    server = cpu.get("server", 0.0)
    return {
        "price_frames": frames,
        "price_changes_per_s": round(len(set().union(*(r["window_seqs"] for r in results))) / window_s, 1),
        "acked_bids_per_s": round(sum(r["accepted"] for r in results) / window_s, 1),
        "open_watchers": open_watchers,
        "deliveries_per_s": round(per_s, 1),
        "delivery_ratio": round(delivered / (frames * open_watchers), 4)
        if frames and open_watchers
        else None,
        # Watchers with fewer price frames than were sent: conflated (latest price per lot only)
        # or, if the ratio is below 1 by more than they explain, frames lost.
        "conflated_watchers": sum(n for got, n in counts.items() if got < frames),
        "bcast_ms": merged_percentiles([r["bcast_hist"] for r in results]),
        "ack_ms": merged_percentiles([r["ack_hist"] for r in results]),
        "send_lag_ms_p99": max((r["send_lag_ms"] or {}).get("p99") or 0.0 for r in results),
        "rejected": {k: v for r in results for k, v in r["rejected"].items()},
        "disconnects": sum(r["disconnects"] for r in results),
        "cpu_cores": cpu,
        "server_cpu_us_per_delivery": round(server / per_s * 1e6, 3) if per_s else None,
        "client_cpu_us_per_delivery": round(cpu["client"] / per_s * 1e6, 3) if per_s else None,
    }


def summary(record: dict[str, Any]) -> str:
    steps = record.get("memory", {}).get("steps", [])
    parts = ["rss " + " ".join(f"{s['subscribed']}:{s['kib_per_socket']}KiB" for s in steps)]
    for key, phase in record.items():
        if isinstance(phase, dict) and "deliveries_per_s" in phase:
            parts.append(
                f"{key}/s: changes/s={phase['price_changes_per_s']} deliv/s={phase['deliveries_per_s']} "
                f"ratio={phase['delivery_ratio']} conflated={phase['conflated_watchers']} "
                f"p50={phase['bcast_ms'].get('p50')} p99={phase['bcast_ms'].get('p99')} "
                f"us/deliv={phase['server_cpu_us_per_delivery']} cpu={phase['cpu_cores']} "
                f"ack={phase['ack_ms'].get('p50')}/{phase['ack_ms'].get('p99')}"
            )
            if "trace" in phase:
                parts.append(f"trace={phase['trace']}")
    return "; ".join(parts)


# -- the soak ---------------------------------------------------------------------------------
class SessionRoller(threading.Thread):
    """The soak with lots closing (`--soak-lot-seconds L`): sessions follow one another as in
    production, each with one lot per bidder (a session's lots all close at its end; a lot cannot
    be added to a session that bids). Session k bids from S_k to S_k + L with a 10 s soft close
    (capped at 10 s); S_k+1 = S_k + L - LEAVE_EARLY_S. Each session is made through the admin REST
    API while the one before bids (its lots, every bidder's session deposit paid from their
    balance); when it opens, the load clients move their bidders to its lots and subscribe the
    watchers they connect from then on to it (`retarget`), so the churn moves the held watchers
    over within seconds. The closed sessions' lots are then settled (the winners' orders, the
    losers' deposit refunds), archived and compacted out of the engine by the product itself."""

    LEAVE_EARLY_S = 5.0  # the bidders move on this long before a session's nominal end
    FIRST_LEAD_S = 12.0  # the first session opens this long after the soak starts

    def __init__(self, bench: Bench, port: int, clients: list[Client], tokens: list[str]) -> None:
        super().__init__(name="session-roller", daemon=True)
        self.bench, self.port, self.clients, self.tokens = bench, port, clients, tokens
        self.lot_seconds = float(bench.args.soak_lot_seconds)
        self.period = max(5.0, self.lot_seconds - self.LEAVE_EARLY_S)
        self.stopping = threading.Event()
        self.opened: list[dict[str, Any]] = []  # per session: id, when it opened (soak seconds), lots
        self.began = time.monotonic()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.roll())
        except BaseException as error:  # reported by the soak: a roller that died stops the lots moving
            self.error = error

    async def roll(self) -> None:
        rest = Rest(self.port)
        login = {"username": "admin", "password": ADMIN_PASSWORD}
        rest.admin = (await rest.call("POST", "/api/v1/admin/login", login))["token"]
        starts = time.time() + self.FIRST_LEAD_S
        while not self.stopping.is_set():
            session_id, lots = await self.make_session(rest, starts)
            starts = max(starts, time.time() + 1.0)
            while time.time() < starts and not self.stopping.is_set():  # noqa: ASYNC110 (another thread's event)
                await asyncio.sleep(0.2)
            if self.stopping.is_set():
                break
            deadline = time.monotonic() + 20
            while (await rest.call("GET", f"/api/v1/sessions/{session_id}"))["state"] != 3:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"soak session {session_id} did not open")
                await asyncio.sleep(0.2)
            self.retarget(session_id, lots)
            self.opened.append(
                {"session_id": session_id, "at_s": round(time.monotonic() - self.began, 1), "lots": len(lots)}
            )
            starts += self.period
        rest.http.close()

    async def make_session(self, rest: Rest, starts: float) -> tuple[int, list[int]]:
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        number = len(self.opened)
        session = await rest.call(
            "POST",
            "/api/v1/admin/sessions",
            {
                "title": f"Soak session {number}",
                "preview_start": iso(datetime.datetime.now(datetime.UTC)),
                "preview_end": iso(datetime.datetime.now(datetime.UTC)),
                "bidding_start": iso(later),
                "bidding_end": iso(later + datetime.timedelta(seconds=self.lot_seconds)),
                "deposit": SESSION_DEPOSIT,
                "soft_close_seconds": 10,
                "soft_close_cap_seconds": 10,
            },
            rest.admin,
        )
        session_id = int(session["id"])
        gate = asyncio.Semaphore(4)

        async def lot(index: int) -> int:
            async with gate:
                for attempt in range(5):
                    # A retry after a 503 takes a new catalogue number: if the first try did go
                    # through, the session has one more lot nobody bids on, not a duplicate's 409.
                    body = {
                        "catalogue_no": f"S{number:04d}-{index:04d}" + (f"-r{attempt}" if attempt else ""),
                        "title": f"Soak lot {number}.{index}",
                        "start_price": START_PRICE,
                        "unit": UNIT,
                    }
                    try:
                        made = await rest.call(
                            "POST", f"/api/v1/admin/sessions/{session_id}/lots", body, rest.admin
                        )
                    except RuntimeError as error:  # 503: seen on a server slowed by the diagnostics
                        if " 503 " not in str(error) or attempt == 4:
                            raise
                        await asyncio.sleep(1.0)
                        continue
                    return int(made["id"])
                raise AssertionError("unreachable")

        async def deposit(token: str) -> None:
            async with gate:
                body = {"session_id": session_id, "pay_with": "balance"}
                await self.retried(rest, "POST", "/api/v1/deposits", body, token, done_if=" 409 ")

        lots = list(await asyncio.gather(*(lot(k) for k in range(len(self.tokens)))))
        await asyncio.gather(*(deposit(token) for token in self.tokens))
        # Made with its opening an hour away (lots can be added only before it opens), then moved
        # to its turn, or to just after now when making it took longer than planned.
        moment = datetime.datetime.fromtimestamp(max(starts, time.time() + 1.0), datetime.UTC)
        times = {
            "bidding_start": iso(moment),
            "bidding_end": iso(moment + datetime.timedelta(seconds=self.lot_seconds)),
        }
        await rest.call("PATCH", f"/api/v1/admin/sessions/{session_id}", times, rest.admin)
        return session_id, lots

    @staticmethod
    async def retried(
        rest: Rest, method: str, path: str, body: Any, token: str, done_if: str | None = None
    ) -> Any:
        """A call retried (5 times, 1 s apart) when a backing service did not answer in time (503,
        seen on a server slowed by --soak-tracemalloc); `done_if`: an error that means an earlier
        try went through (a deposit already paid)."""
        for attempt in range(5):
            try:
                return await rest.call(method, path, body, token)
            except RuntimeError as error:
                if done_if is not None and done_if in str(error):
                    return None
                if " 503 " not in str(error) or attempt == 4:
                    raise
                await asyncio.sleep(1.0)
        return None

    def retarget(self, session_id: int, lots: list[int]) -> None:
        a = self.bench.args
        first = 0
        for client, pairs in zip(self.clients, split(a.bidders // 2, a.clients), strict=True):
            lo, hi = 2 * first, 2 * (first + pairs)
            first += pairs
            client.send(
                {
                    "op": "retarget",
                    "session_id": session_id,
                    "lots": lots[lo:hi],
                    "next_min": [START_PRICE] * (hi - lo),
                }
            )


def prefill_refs(clients: list[Client], wanted: int) -> dict[str, Any]:
    """Closed-loop bids on the set-up session's lots until the bidders have `wanted` accepted in
    all (REFS_KEPT each: their ref caches' floor), before any watcher connects: the soak's
    steady-state variant then starts with every bidder's refs as a long-running process holds
    them."""
    accepted, rounds, started = 0, 0, time.monotonic()
    while accepted < wanted * 1.05 and rounds < 60:
        spec = {"name": "prefill", "mode": "closed", "warmup": 0.0, "duration": 5.0}
        for client in clients:
            client.send({"op": "phase", "spec": spec, "start_at": time.time() + 0.2})
        accepted += sum(client.read(60)["accepted"] for client in clients)
        rounds += 1
    return {"accepted": accepted, "seconds": round(time.monotonic() - started, 1)}


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    return statistics.linear_regression([t / 60.0 for t, _ in points], [v for _, v in points]).slope


def end_minutes_per_min(points: list[tuple[float, float]], span_s: float = 60.0) -> float | None:
    """The change per minute between the median of the first `span_s` of (seconds, value) points
    and that of the last `span_s`. With the product's trims (every 60 s and after each snapshot)
    a series can be a saw, down at each trim and up until the next: a least-squares line over a
    few teeth tilts with where the window cuts them, the median over a whole period does not."""
    if len(points) < 2 or points[-1][0] - points[0][0] < 2 * span_s:
        return None
    first = [(t, v) for t, v in points if t < points[0][0] + span_s]
    last = [(t, v) for t, v in points if t > points[-1][0] - span_s]
    minutes = (statistics.median(t for t, _ in last) - statistics.median(t for t, _ in first)) / 60.0
    return (statistics.median(v for _, v in last) - statistics.median(v for _, v in first)) / minutes


def held_grown(before: dict[str, int], after: dict[str, int], lots: int) -> list[dict[str, Any]]:
    """The structures whose reachable bytes grew most between two samples (gavel_server.py
    `deep_sizes`), KiB and bytes per lot closed."""
    grown = sorted(
        ((after.get(path, 0) - before.get(path, 0), path) for path in set(before) | set(after)), reverse=True
    )
    return [
        {"held_by": path, "kib": round(size / 1024, 1), "bytes_per_lot": round(size / lots) if lots else None}
        for size, path in grown[:15]
    ]


def arenas_grown(first: dict[str, Any], last: dict[str, Any]) -> list[dict[str, int]] | None:
    """Each glibc arena's memory in use and system memory at the tail's end, and their growth over
    the tail (KiB; `--soak-arenas`): heap 0 is the main arena, the others threads' arenas."""
    if "arenas" not in first or "arenas" not in last:
        return None
    before = {heap["nr"]: heap for heap in first["arenas"]}
    rows = []
    for heap in last["arenas"]:
        start = before.get(heap["nr"], {"in_use": 0, "system": 0})
        rows.append(
            {
                "nr": heap["nr"],
                "in_use_kib": heap["in_use"] >> 10,
                "in_use_grown_kib": (heap["in_use"] - start["in_use"]) >> 10,
                "system_grown_kib": (heap["system"] - start["system"]) >> 10,
            }
        )
    return rows


def server_memory(path: Path, began_wall: float, tail_from: float) -> dict[str, Any] | None:
    """The soak's server samples (gavel_server.py `GAVEL_BENCH_MEMORY`): each series' slope over
    the tail (KiB/min; Python's allocated blocks per minute), the book's lots at the start and end
    of the tail, the allocator's growth per lot closed, the containers that grew, malloc_trim's
    times."""
    if not path.exists():
        return None
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in samples:  # seconds since the soak began, as the RSS series from outside
        record["t"] = round(record["wall"] - began_wall, 1)
    tail = [r for r in samples if r["t"] >= tail_from]
    if len(tail) < 2:
        return None
    first, last = tail[0], tail[-1]
    kib = {
        "rss": "rss_kib",
        "uordblks": "uordblks",
        "fordblks": "fordblks",
        "hblkhd": "hblkhd",
        "arena": "arena",
    }
    slopes: dict[str, float | None] = {}
    for name, key in kib.items():
        scale = 1.0 if key == "rss_kib" else 1 / 1024
        value = slope_per_min([(r["t"], r[key] * scale) for r in tail])
        slopes[f"{name}_kib_per_min"] = round(value, 1) if value is not None else None
        if name in ("rss", "uordblks"):
            ends = end_minutes_per_min([(r["t"], r[key] * scale) for r in tail])
            slopes[f"{name}_kib_per_min_end_minutes"] = round(ends, 1) if ends is not None else None
    blocks = slope_per_min([(r["t"], r["allocated_blocks"]) for r in tail])
    slopes["allocated_blocks_per_min"] = round(blocks, 1) if blocks is not None else None
    if all(r.get("traced") is not None for r in tail):
        traced = slope_per_min([(r["t"], r["traced"] / 1024) for r in tail])
        slopes["tracemalloc_kib_per_min"] = round(traced, 1) if traced is not None else None
    if all("refs" in r for r in tail):
        refs = slope_per_min([(r["t"], r["refs"]["accepted"]) for r in tail])
        slopes["accepted_refs_per_min"] = round(refs, 1) if refs is not None else None
    closed = last["book"]["closed"] - first["book"]["closed"]
    grown = {
        name: last["sizes"].get(name, 0) - first["sizes"].get(name, 0)
        for name in set(first["sizes"]) | set(last["sizes"])
    }
    trims = [ms for r in samples for ms in r.get("trim_ms", [])]
    typed = [r for r in tail if "types" in r]
    types_grown = None
    if len(typed) >= 2:
        before, after = typed[0]["types"], typed[-1]["types"]
        lots_between = typed[-1]["book"]["closed"] - typed[0]["book"]["closed"]
        rows = []
        for name in set(before) | set(after):
            count0, size0, large0 = before.get(name, [0, 0, 0])
            count1, size1, large1 = after.get(name, [0, 0, 0])
            rows.append((name, count1 - count0, size1 - size0, large1 - large0))
        rows.sort(key=lambda row: -row[2])
        types_grown = {
            "from_s": typed[0]["t"],
            "to_s": typed[-1]["t"],
            "lots_closed": lots_between,
            "top": [
                {
                    "type": name,
                    "count": count,
                    "kib": round(size / 1024, 1),
                    "over_512_kib": round(large / 1024, 1),
                    "bytes_per_lot": round(size / lots_between) if lots_between else None,
                }
                for name, count, size, large in rows[:25]
            ],
            "kib": round(sum(row[2] for row in rows) / 1024, 1),
            "over_512_kib": round(sum(row[3] for row in rows) / 1024, 1),
            "uordblks_kib": round((typed[-1]["uordblks"] - typed[0]["uordblks"]) / 1024, 1),
            # The bytes each structure holds (everything reachable from it), grown over the span.
            "held_grown": held_grown(typed[0].get("deep") or {}, typed[-1].get("deep") or {}, lots_between),
        }
    return {
        "types_grown": types_grown,
        "arenas_grown": arenas_grown(first, last),
        "threads": {"tail_start": first.get("threads"), "end": last.get("threads")},
        "gc_collections": {"tail_start": first.get("gc_collections"), "end": last.get("gc_collections")},
        "gc_probes": [{"t": r["t"], **r["gc_probe"]} for r in samples if "gc_probe" in r],
        "samples": len(samples),
        "tail_from_s": tail_from,
        **slopes,
        "book_tail_start": first["book"],
        "book_end": last["book"],
        "refs_tail_start": first.get("refs"),
        "refs_end": last.get("refs"),
        "compactor_end": last["compactor"],
        "uordblks_bytes_per_lot_closed": round((last["uordblks"] - first["uordblks"]) / closed)
        if closed
        else None,
        "rss_bytes_per_lot_closed": round((last["rss_kib"] - first["rss_kib"]) * 1024 / closed)
        if closed
        else None,
        "containers_grown": dict(
            sorted(((k, v) for k, v in grown.items() if v > 0), key=lambda kv: -kv[1])[:12]
        ),
        "mongo_connections": {
            "tail_start": first.get("mongo_connections"),
            "end": last.get("mongo_connections"),
        },
        "mongo_in_flight": mongo_in_flight(samples),
        "containers_end_largest": dict(sorted(last["sizes"].items(), key=lambda kv: -kv[1])[:12]),
        "malloc_trim": {
            "calls": len(trims),
            "ms_p50": round(statistics.median(trims), 2) if trims else None,
            "ms_max": max(trims) if trims else None,
            "released_mib": round(last.get("trim_released_bytes", 0) / 2**20, 1),
        },
        "sample_ms_max": max(r["sample_ms"] for r in samples),
        "series": [
            [
                r["t"],
                r["rss_kib"],
                r["uordblks"] >> 10,
                r["fordblks"] >> 10,
                r["hblkhd"] >> 10,
                r["allocated_blocks"],
                # The request client's pooled MongoDB connections: the end points alone catch
                # whichever burst (a session's close) was last.
                (r.get("mongo_connections") or {}).get("client"),
            ]
            for r in samples
        ],
    }


def mongo_in_flight(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`--soak-mongo-in-flight`: the most MongoDB commands in flight at once over the soak and which
    they were then, the commands sent by kind, the pools' connections opened and closed, and per
    sample [t, peak in flight, peak checked out, opened, closed] (each since the sample before)."""
    taken = [(r["t"], r["mongo_in_flight"]) for r in samples if "mongo_in_flight" in r]
    if not taken:
        return None
    worst_t, worst = max(taken, key=lambda item: item[1]["peak"])
    sent: Counter[str] = Counter()
    for _t, sample in taken:
        sent.update(sample["sent"])
    return {
        "peak": worst["peak"],
        "peak_at_s": worst_t,
        "at_peak": worst["at_peak"],
        "checked_out_peak": max(sample["checked_out_peak"] for _t, sample in taken),
        "opened": sum(sample["opened"] for _t, sample in taken),
        "closed": sum(sample["closed"] for _t, sample in taken),
        "sent": dict(sent.most_common(20)),
        "series": [
            [t, sample["peak"], sample["checked_out_peak"], sample["opened"], sample["closed"]]
            for t, sample in taken
        ],
    }


def soak(bench: Bench, minutes: float) -> dict[str, Any]:
    a = bench.args
    work = bench.root / "soak"
    work.mkdir(parents=True, exist_ok=True)
    server = bench.start("gavel")
    clients: list[Client] = []
    roller: SessionRoller | None = None
    try:
        clients = bench.clients("gavel", server, work)
        for client in clients:
            client.read(180)
        prefilled = prefill_refs(clients, a.bidders * REFS_KEPT) if a.soak_refs_window else None
        for client, share in zip(clients, split(a.soak_keep, a.clients), strict=True):
            client.send({"op": "watch", "total": share})
        held = sum(client.read(240)["subscribed"] for client in clients)
        quiesce([server.pid, *(c.pid for c in clients)])
        for client, share in zip(clients, split(a.soak_keep, a.clients), strict=True):
            client.send({"op": "churn_start", "rate": a.churn / a.clients, "keep": share})
            client.read(30)
        seconds = minutes * 60.0
        start_at = time.time() + 0.5
        pairs = split(a.bidders // 2, a.clients)
        for client, share in zip(clients, pairs, strict=True):
            spec = {
                "name": "soak",
                "mode": "paced",
                "rate": a.soak_rate * share * 2 / a.bidders,
                "warmup": 0.5,
                "duration": seconds,
            }
            client.send(
                {"op": "phase", "spec": spec, "start_at": start_at, "concurrent": bool(a.soak_lot_seconds)}
            )
        if a.soak_lot_seconds:
            assert bench.setup is not None
            roller = SessionRoller(bench, server.port, clients, bench.setup["tokens"])
            roller.start()
        began, began_wall = time.monotonic(), time.time()
        # With --soak-tracemalloc: allocation snapshots once the start's transient has passed and
        # at the end, over the same span as the slope (diffed below).
        snapshot_at = [seconds - min(8 * 60.0, 0.8 * seconds), seconds - 2.0]
        samples: list[tuple[float, float]] = []
        fds = {client.process.stdout.fileno(): client for client in clients if client.process.stdout}
        results: dict[int, dict[str, Any]] = {}
        next_sample = began
        while len(results) < len(clients):
            now = time.monotonic()
            if now >= next_sample:
                samples.append((round(now - began, 1), rss_mb(server.pid) or 0.0))
                next_sample += a.soak_sample
            if a.soak_tracemalloc and snapshot_at and now - began >= snapshot_at[0]:
                snapshot_at.pop(0)
                os.kill(server.pid, signal.SIGTTIN)
            ready, _, _ = select.select(list(fds), [], [], max(0.0, next_sample - time.monotonic()))
            for fd in ready:
                results[fd] = fds.pop(fd).read(60)
            if time.monotonic() - began > seconds + 120:
                raise TimeoutError("the soak's clients did not report")
        if roller is not None:
            roller.stopping.set()
            roller.join(60)
            if roller.error is not None:
                raise RuntimeError(f"the soak's sessions stopped: {roller.error!r}")
        churned = []
        for client in clients:
            client.send({"op": "churn_stop"})
            churned.append(client.read(30))
        phase = merge(list(results.values()))
    finally:
        if roller is not None:
            roller.stopping.set()
        for client in clients:
            client.stop()
        server.stop()
    tail_from = seconds - min(8 * 60.0, 0.8 * seconds)
    tail = [(t, mb) for t, mb in samples if t >= tail_from]
    slope = None
    if len(tail) >= 2:
        times = [t / 60.0 for t, _ in tail]
        values = [mb * 1024 for _, mb in tail]
        slope = round(statistics.linear_regression(times, values).slope, 1)
    growth = allocation_growth(bench.root, seconds - tail_from) if a.soak_tracemalloc else None
    lots = None
    if roller is not None:
        lots = {
            "lot_seconds": roller.lot_seconds,
            "session_every_s": roller.period,
            "sessions_opened": len(roller.opened),
            "lots_opened": sum(o["lots"] for o in roller.opened),
            "sessions": roller.opened,
        }
    return {
        "minutes": minutes,
        "held_watchers": held,
        "churn_per_s": a.churn,
        "bids_per_s_target": a.soak_rate,
        "connected": sum(c["connected"] for c in churned),
        "closed": sum(c["closed"] for c in churned),
        "failed": sum(c["failed"] for c in churned),
        "rss_mb_start": samples[0][1] if samples else None,
        "rss_mb_end": samples[-1][1] if samples else None,
        "rss_mb_max": max((mb for _, mb in samples), default=None),
        "slope_from_s": tail_from,
        "slope_kib_per_min": slope,
        "rss_mb_series": samples,
        "allocation_growth": growth,
        "lots_closing": lots,
        "refs_window_s": a.soak_refs_window,
        "kept_lots": a.soak_kept_lots,
        "malloc_trim_s": a.soak_malloc_trim,
        "right_sized_snapshots": a.soak_right_sized_snapshots,
        "refs_prefill": prefilled,
        "server_memory": server_memory(bench.memory_path, began_wall, tail_from),
        "bidding": {
            k: phase[k] for k in ("acked_bids_per_s", "ack_ms", "bcast_ms", "disconnects", "rejected")
        },
    }


def allocation_growth(directory: Path, span_s: float) -> dict[str, Any] | None:
    """Python allocations grown between the soak's two tracemalloc snapshots: in all, per minute,
    by file (the top 15) and by line (the top 15), KiB and blocks."""
    import tracemalloc

    paths = sorted(directory.glob("snapshot-*.pickle"))
    if len(paths) < 2:
        return None
    first, last = (tracemalloc.Snapshot.load(str(p)) for p in (paths[0], paths[-1]))
    minutes = (span_s - 2.0) / 60.0

    def top(key: str) -> list[dict[str, Any]]:
        stats = last.compare_to(first, key)
        stats.sort(key=lambda s: s.size_diff, reverse=True)
        return [
            {"where": str(s.traceback[0]), "kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff}
            for s in stats[:15]
        ]

    # The whole traceback of the top growths: a line in the loop's runner (the compiled engine's
    # objects) or in a library says little without its callers.
    stacks = last.compare_to(first, "traceback")
    stacks.sort(key=lambda s: s.size_diff, reverse=True)
    by_traceback = [
        {
            "kib": round(s.size_diff / 1024, 1),
            "blocks": s.count_diff,
            "stack": [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}" for frame in s.traceback],
        }
        for s in stacks[:12]
    ]
    total = sum(s.size_diff for s in last.compare_to(first, "filename"))
    return {
        "minutes": round(minutes, 2),
        "kib": round(total / 1024, 1),
        "kib_per_min": round(total / 1024 / minutes, 1) if minutes > 0 else None,
        "by_file": top("filename"),
        "by_line": top("lineno"),
        "by_traceback": by_traceback,
        "malloc_blocks": malloc_blocks_grown(first, last),
    }


def malloc_blocks_grown(first: Any, last: Any) -> dict[str, Any]:
    """The traced blocks over 512 bytes (those Python's allocator takes from malloc, so glibc's
    `uordblks`; smaller ones live in its own arenas) grown between two snapshots, by traceback."""

    def big(snapshot: Any) -> dict[Any, list[int]]:
        sums: dict[Any, list[int]] = {}
        for trace in snapshot.traces:
            if trace.size > 512:
                entry = sums.setdefault(trace.traceback, [0, 0])
                entry[0] += trace.size
                entry[1] += 1
        return sums

    before, after = big(first), big(last)
    rows = []
    for stack in set(before) | set(after):
        size0, count0 = before.get(stack, (0, 0))
        size1, count1 = after.get(stack, (0, 0))
        rows.append((size1 - size0, count1 - count0, stack))
    rows.sort(key=lambda row: row[0], reverse=True)
    return {
        "kib": round(sum(row[0] for row in rows) / 1024, 1),
        "top": [
            {
                "kib": round(size / 1024, 1),
                "blocks": count,
                "stack": [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}" for frame in stack],
            }
            for size, count, stack in rows[:15]
        ],
    }


# -- reporting --------------------------------------------------------------------------------
def pick(records: list[dict[str, Any]], *path: str) -> list[Any]:
    values = []
    for record in records:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def step_values(records: list[dict[str, Any]], index: int, key: str) -> list[Any]:
    return [r["memory"]["steps"][index][key] if len(r["memory"]["steps"]) > index else None for r in records]


def summarize(records: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    memory = {
        "idle_mb": med(pick(records, "memory", "idle_mb")),
        "slope_kib_per_socket": med(pick(records, "memory", "slope_kib_per_socket")),
        "slope_runs": pick(records, "memory", "slope_kib_per_socket"),
        "steps": [
            {
                "sockets": step,
                "subscribed": med(step_values(records, i, "subscribed")),
                "rss_mb": med(step_values(records, i, "rss_mb")),
                "kib_per_socket": med(step_values(records, i, "kib_per_socket")),
                "kib_per_socket_runs": step_values(records, i, "kib_per_socket"),
                "connect_s": med(step_values(records, i, "connect_s")),
            }
            for i, step in enumerate(args.steps)
        ],
    }
    broadcast: dict[str, Any] = {}
    for rate in args.rates:
        key = f"{rate:g}"
        cpu_names = records[0][key]["cpu_cores"].keys() if records else []
        broadcast[key] = {
            "price_changes_per_s": med(pick(records, key, "price_changes_per_s")),
            "deliveries_per_s": med(pick(records, key, "deliveries_per_s")),
            "deliveries_per_s_runs": pick(records, key, "deliveries_per_s"),
            "delivery_ratio": med(pick(records, key, "delivery_ratio")),
            "delivery_ratio_runs": pick(records, key, "delivery_ratio"),
            "conflated_watchers": med(pick(records, key, "conflated_watchers")),
            "conflated_runs": pick(records, key, "conflated_watchers"),
            "open_watchers": med(pick(records, key, "open_watchers")),
            "bcast_ms": {q: med(pick(records, key, "bcast_ms", q)) for q in ("p50", "p99", "p99_9", "max")},
            "bcast_p99_runs": pick(records, key, "bcast_ms", "p99"),
            "ack_ms": {q: med(pick(records, key, "ack_ms", q)) for q in ("p50", "p99")},
            "acked_bids_per_s": med(pick(records, key, "acked_bids_per_s")),
            "send_lag_ms_p99": med(pick(records, key, "send_lag_ms_p99")),
            "server_cpu_us_per_delivery": med(pick(records, key, "server_cpu_us_per_delivery")),
            "server_cpu_us_runs": pick(records, key, "server_cpu_us_per_delivery"),
            "client_cpu_us_per_delivery": med(pick(records, key, "client_cpu_us_per_delivery")),
            "cpu_cores": {n: med(pick(records, key, "cpu_cores", n)) for n in cpu_names},
            "disconnects": sum(pick(records, key, "disconnects")),
        }
    return {"memory": memory, "broadcast": broadcast, "unprimed_pairs": sum(pick(records, "unprimed_pairs"))}


def report(
    results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, started: float
) -> dict[str, Any]:
    gavel, echo = results["gavel"], results["echo"]
    ratios: dict[str, Any] = {}
    for rate in args.rates:
        key = f"{rate:g}"
        ratios[key] = {
            "deliveries_per_s": ratio_median(
                pick(gavel, key, "deliveries_per_s"), pick(echo, key, "deliveries_per_s")
            ),
            "server_cpu_us_per_delivery": ratio_median(
                pick(gavel, key, "server_cpu_us_per_delivery"), pick(echo, key, "server_cpu_us_per_delivery")
            ),
            "bcast_p99": ratio_median(
                pick(gavel, key, "bcast_ms", "p99"), pick(echo, key, "bcast_ms", "p99")
            ),
        }
    last = len(args.steps) - 1
    ratios["kib_per_socket"] = ratio_median(
        step_values(gavel, last, "kib_per_socket"), step_values(echo, last, "kib_per_socket")
    )
    ratios["slope_kib_per_socket"] = ratio_median(
        pick(gavel, "memory", "slope_kib_per_socket"), pick(echo, "memory", "slope_kib_per_socket")
    )
    summaries = {name: summarize(records, args) for name, records in results.items()}
    g = summaries["gavel"]
    targets = {
        "bcast_p99_ms_le_100": {k: (v["bcast_ms"]["p99"] or 1e9) <= 100 for k, v in g["broadcast"].items()},
        "kib_per_socket_le_16": {
            str(s["sockets"]): (s["kib_per_socket"] or 1e9) <= 16 for s in g["memory"]["steps"]
        },
        "slope_kib_per_socket_le_16": (g["memory"]["slope_kib_per_socket"] or 1e9) <= 16,
    }
    return {
        "servers": summaries,
        "ratio_gavel_to_echo": ratios,
        "targets": targets,
        "steps": args.steps,
        "rates": args.rates,
        "bidders": args.bidders,
        "clients": args.clients,
        "sampled_watchers": args.sampled,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "runs": args.runs,
        "machine": {"cores": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "python": sys.version.split()[0],
        "command": " ".join([".venv/bin/python", "benchmarks/bench_watchers.py", *sys.argv[1:]]),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = result["servers"]
    rates = [f"{r:g}" for r in result["rates"]]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), dpi=90)
    colours = {"gavel": "#1f77b4", "echo": "#7f7f7f"}
    labels = {"gavel": "Gavel", "echo": "transport (echo)"}
    for name, summary_ in servers.items():
        b = summary_["broadcast"]
        x = [float(r) for r in rates]
        axes[0].plot(
            x, [b[r]["bcast_ms"]["p99"] or 0 for r in rates], "o-", color=colours[name], label=labels[name]
        )
        axes[1].plot(
            x, [b[r]["deliveries_per_s"] or 0 for r in rates], "o-", color=colours[name], label=labels[name]
        )
        steps = summary_["memory"]["steps"]
        axes[2].plot(
            [s["subscribed"] or 0 for s in steps],
            [s["rss_mb"] or 0 for s in steps],
            "o-",
            color=colours[name],
            label=labels[name],
        )
    axes[0].axhline(100, color="#d62728", lw=0.8, ls="--", label="target 100 ms")
    axes[0].set_title("Broadcast p99 (ms) vs price changes/s", fontsize=9)
    axes[1].set_title("Price frames delivered/s vs price changes/s", fontsize=9)
    axes[2].set_title("Server RSS (MB) vs subscribed sockets", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    watchers = result["steps"][-1]
    fig.suptitle(
        f"{watchers:,} watchers on one process, {result['bidders']} bidders (median of {result['runs']})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def soak_chart(runs: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    """The soaks' server memory over time, one line per soak (its JSON's `server_memory.series`):
    RSS, glibc's bytes in use (uordblks) and free in its arenas (fordblks), Python's allocated
    blocks, and the request client's pooled MongoDB connections (each session's close is a step).
    The grey band is the slope's window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), dpi=90)
    for number, (label, soak_) in enumerate(runs):
        series = soak_["server_memory"]["series"]
        colour = f"C{number}"
        t = [row[0] / 60.0 for row in series]
        axes[0].plot(t, [row[1] / 1024 for row in series], color=colour, label=label)
        axes[1].plot(t, [row[2] / 1024 for row in series], color=colour, label=f"{label}: in use")
        axes[1].plot(
            t, [row[3] / 1024 for row in series], color=colour, ls=":", label=f"{label}: free in arenas"
        )
        axes[2].plot(t, [row[5] / 1000 for row in series], color=colour, label=label)
        pooled = [
            (when, row[6]) for when, row in zip(t, series, strict=True) if len(row) > 6 and row[6] is not None
        ]
        if pooled:
            axes[3].plot([p[0] for p in pooled], [p[1] for p in pooled], color=colour, label=label)
    tail_from = runs[0][1]["slope_from_s"] / 60.0 if runs else 0.0
    for ax in axes:
        ax.axvspan(tail_from, max(ax.get_xlim()[1], tail_from), color="#eeeeee", zorder=0)
        ax.set_xlabel("minutes", fontsize=8)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    axes[0].set_title("Server RSS (MB)", fontsize=9)
    axes[1].set_title("glibc malloc: in use (uordblks) and free (fordblks), MB", fontsize=9)
    axes[2].set_title("Python allocated blocks (thousands)", fontsize=9)
    axes[3].set_title("MongoDB connections, request client's pool", fontsize=9)
    fig.suptitle(
        "Soak: 1,000 watchers, 100 connects/disconnects per s, 20 bids/s on lots closing", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="1000,5000,10000", help="watchers held at each memory step")
    parser.add_argument("--rates", default="20,50", help="price changes/s (paced bids/s), in turn")
    parser.add_argument("--bidders", type=int, default=100)
    parser.add_argument("--clients", type=int, default=3, help="load client processes")
    parser.add_argument("--sampled", type=int, default=300, help="watchers (in all) that time every frame")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, 5,000 watchers, short phases")
    parser.add_argument(
        "--soak-minutes", type=float, default=None, help="run the soak instead (10 for the figure)"
    )
    parser.add_argument("--soak-keep", type=int, default=5000, help="watchers held during the soak")
    parser.add_argument("--churn", type=float, default=100.0, help="watchers replaced per second in the soak")
    parser.add_argument("--soak-rate", type=float, default=20.0, help="bids/s during the soak")
    parser.add_argument("--soak-sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument(
        "--soak-tracemalloc",
        action="store_true",
        help="trace the server's allocations, report what grew (a diagnostic: RSS then includes the tracing)",
    )
    parser.add_argument(
        "--soak-lot-seconds",
        type=float,
        default=None,
        help="the soak's lots close: sessions of one lot per bidder bidding this long, one after the other",
    )
    parser.add_argument(
        "--soak-malloc-trim",
        type=float,
        default=None,
        help="the soak server's MALLOC_TRIM_INTERVAL in seconds (default: the product's 60; 0: none)",
    )
    parser.add_argument(
        "--soak-refs-window",
        type=float,
        default=None,
        help="the steady-state variant: the server's ref window shortened to this many seconds and "
        "every bidder's newest 256 refs placed before the soak (gavel_server.py GAVEL_BENCH_REFS_WINDOW_MS)",
    )
    parser.add_argument(
        "--soak-kept-lots",
        type=int,
        default=None,
        help="the caches-full variant: the server's kept views and read cache bounded at this many lots "
        "(gavel_server.py GAVEL_BENCH_KEPT_LOTS)",
    )
    parser.add_argument(
        "--soak-types",
        type=float,
        default=None,
        help="a diagnostic: the server counts its collector's objects by type every this many seconds; "
        "the soak reports the types grown over the tail (gavel_server.py GAVEL_BENCH_TYPES_EVERY)",
    )
    parser.add_argument(
        "--soak-arenas",
        action="store_true",
        help="a diagnostic: the server's samples have malloc_info() per arena; the soak reports each "
        "arena's growth in use over the tail (gavel_server.py GAVEL_BENCH_ARENAS)",
    )
    parser.add_argument(
        "--soak-right-sized-snapshots",
        action="store_true",
        help="the fifth round's A/B of the hub's kept snapshot JSON, right-sized by the benchmark "
        "(gavel_server.py GAVEL_BENCH_RIGHT_SIZED_SNAPSHOTS); gateway/ws.py now right-sizes it itself, "
        "so on the current code it changes nothing",
    )
    parser.add_argument(
        "--soak-gc-probe",
        type=float,
        default=None,
        help="a diagnostic: the server runs a full gc.collect() every this many seconds and records what "
        "it freed (gavel_server.py GAVEL_BENCH_GC_PROBE; it changes what it measures)",
    )
    parser.add_argument(
        "--soak-mongo-in-flight",
        action="store_true",
        help="a diagnostic: the server's samples count the MongoDB commands in flight at once and "
        "the pools' connections opened (gavel_server.py GAVEL_BENCH_MONGO_INFLIGHT); the JSON's "
        "server_memory.mongo_in_flight names what a close runs at once",
    )
    parser.add_argument(
        "--soak-chart",
        default=None,
        help="only draw the soaks' memory chart (at --chart) from their saved JSON: LABEL=PATH,...",
    )
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--trace", action="store_true", help="time each fan-out on the server (a diagnostic: not for figures)"
    )
    parser.add_argument("--servers", default="gavel,echo", help="the servers to measure (development runs)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3.0, 1.0
        if args.steps == "1000,5000,10000":
            args.steps = "1000,5000"
    args.steps = [int(s) for s in args.steps.split(",") if s.strip()]
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.bidders < 2 or args.bidders % 2 or args.bidders // 2 < args.clients:
        parser.error("--bidders must be even, with at least one pair per client process")
    if args.soak_chart:
        runs = []
        for item in args.soak_chart.split(","):
            label, _, name = item.partition("=")
            runs.append((label, json.loads(Path(name).read_text())["soak"]))
        chart_path = args.chart or ROOT / "docs" / "performance" / "watchers-soak.png"
        soak_chart(runs, chart_path)
        print(json.dumps({"chart": str(chart_path), "runs": [label for label, _ in runs]}))
        return
    raise_nofile()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="gavel-watchers-", dir=args.dir))
    failed = False
    try:
        with Services.from_env(root / "services", os.environ) as services:
            bench = Bench(args, root, services)
            if args.soak_minutes is not None:
                result: dict[str, Any] = {
                    "soak": soak(bench, args.soak_minutes),
                    "command": " ".join([".venv/bin/python", "benchmarks/bench_watchers.py", *sys.argv[1:]]),
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
            else:
                servers = tuple(name for name in SERVERS if name in args.servers.split(","))
                results: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                for number in range(args.runs):
                    order = servers[number % 2 :] + servers[: number % 2]
                    for name in order:
                        results[name].append(bench.measure(name, number))
                if servers != SERVERS:  # a development run: the rounds as measured, no ratios
                    print(json.dumps({"records": results}))
                    return
                result = report(results, args, started)
                chart_path = args.chart or (QUICK_CHART if args.quick else DEFAULT_CHART)
                chart(result, chart_path)
                result["chart"] = (
                    str(chart_path.relative_to(ROOT)) if chart_path.is_relative_to(ROOT) else str(chart_path)
                )
    except BaseException:
        failed = True  # the servers' logs say why: the directory is kept (the databases' files too)
        print(f"bench_watchers: the run failed; its directory is kept: {root}", file=sys.stderr)
        raise
    finally:
        if not failed:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
