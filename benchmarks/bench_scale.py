"""Scale-out benchmark: sockets held and broadcast rate with one and with two gateway processes.

Prints one JSON object. Everything runs on 127.0.0.1 and is started here: embedded MongoDB and
Redis (once, as `bench_e2e.py` does), then, one after the other, three topologies of child
processes (`benchmarks/e2e/gavel_server.py`, i.e. `run.py`'s `main()` with the benchmark's
limits (`GAVEL_BENCH_LIMITS`): no per-user bid rate limit, no limit of sockets per address):

- `one_gateway`: `ROLE=engine` (ENGINE_ID e1) + one `ROLE=gateway`;
- `two_gateways`: the same engine + two gateways, the sockets split evenly between them;
- `single_process`: `ROLE=all`, the single-process service, as a reference.

Each topology starts from nothing: a flushed Redis database (`--redis-db`, 13), a new MongoDB
database, new DATA_DIRs. The set-up is `bench_e2e.py`'s, through the first gateway's REST API: a
session with a deposit and one lot per bidder, bidders registered, credited, deposits paid. Load
comes from `--clients` separate client processes (`benchmarks/scale/client.py`: `loadgen.py`'s
websocket client, bidder pairs and paced phases), the same number whatever the topology; each
spreads its sockets round-robin over the gateways (the two bidders of a pair on different
gateways when there are two). Then:

1. sockets held: the clients open `--watchers` websockets in all (at most 64 handshakes at a time
   per client), each subscribing to the session; reported: how many got their `snapshot` (are
   subscribed), the seconds from the first connect to the last subscription (slowest client),
   watchers/s, and each gateway's RSS (`VmRSS` of /proc) before and after: KB per held socket and
   watchers per MB of all gateway processes' RSS;
2. broadcast rate: with those watchers subscribed, `--bidders` bidders (pairs on their own lots)
   bid at each of `--rates` bids/s (paced, spread over the client processes), `--warmup` s then
   `--duration` s measured. Every client process starts the phase at the same wall-clock time.
   Reported: price frames delivered per second over all watchers (`frames_per_s`, the fan-out
   rate), broadcast latency p50/p99/p99.9 (a watcher's receive wall clock − the frame's `ts`, the
   engine's accept time; one machine, one clock; histograms of 0.1 ms bins merged across client
   processes), acknowledged bids/s (bids scheduled in the window and accepted, as `loadgen.py`
   counts them: below the rate when the bidders fell behind their schedule, see `send_lag_ms_p99`),
   price changes/s (distinct price frames whose `ts` is in the window), the delivery ratio
   (deliveries / (distinct frames × watchers)), CPU (cores) of each process from /proc: gateways,
   engine, MongoDB, Redis, clients, the gateways' CPU per frame delivered, and the whole machine's
   busy cores over the window (/proc/stat) with what other people's processes took of them.
   Each pair keeps one round of bids in flight, so the bidders sustain at most about
   bidders / ack latency bids/s: with acks at 100-300 ms under a heavy fan-out, 100 bidders are
   needed to hold 200 bids/s (20 would cap the rate near 100 bids/s whatever the servers do).

Topologies alternate within a round (the order rotates between rounds); every figure is the median
of `--runs` rounds, and the ratios two_gateways / one_gateway are taken within each round, then
their median, so a noisy neighbour on this shared machine weighs on both sides alike. Note that
on a 2-core machine every process (engine, gateways, MongoDB, Redis and the load clients) shares
the same two cores: a second gateway adds parallelism only as far as a core is idle, and
receiving 200,000 frames/s costs the load clients about as much CPU as sending them costs the
gateways (both are reported).

    .venv/bin/python benchmarks/bench_scale.py            # 3 rounds (~8 min)
    .venv/bin/python benchmarks/bench_scale.py --quick    # one short round (~2 min)
    .venv/bin/python benchmarks/bench_scale.py --verbose  # plus one line per measurement on stderr
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from benchmarks.bench_e2e import (  # noqa: E402
    Child,
    Rest,
    die_with_parent,
    gavel_env,
    lot_prices,
    med,
    quiesce,
    ratio_median,
    set_up_gavel,
)
from benchmarks.scale.client import BIN_MS  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

PYTHON = sys.executable
GAVEL_SERVER = ROOT / "benchmarks" / "e2e" / "gavel_server.py"
CLIENT = ROOT / "benchmarks" / "scale" / "client.py"
NOISY_CORES = 0.25  # other people's processes above this in a window: reported in noisy_windows
TOPOLOGIES: dict[str, int] = {"one_gateway": 1, "two_gateways": 2, "single_process": 0}  # gateways


# -- processes --------------------------------------------------------------------------------
def raise_nofile() -> None:
    """Children inherit the limit: thousands of sockets per gateway and per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def redis_db_url(redis_url: str, db: int) -> str:
    parts = urlsplit(redis_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


class Topology:
    """The Gavel processes of one topology, started from a clean cluster state."""

    def __init__(self, name: str, tag: str, services: Services, root: Path, redis_db: int) -> None:
        self.name = name
        self.gateways: list[Child] = []
        self.engine: Child | None = None
        url = redis_db_url(services.redis_url, redis_db)
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        self.env = gavel_env(services.mongo_url, url, f"bench_scale_{tag}_{os.getpid()}")
        self.root = root / tag
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, **env: str) -> Child:
        port = free_port()
        child = Child(
            name,
            [PYTHON, str(GAVEL_SERVER)],
            dict(self.env, PORT=str(port), DATA_DIR=str(self.root / name), **env),
            self.logs,
            port,
        )
        try:
            child.wait_listening()
        except BaseException:
            child.stop()
            raise
        return child

    def start(self) -> None:
        gateways = TOPOLOGIES[self.name]
        try:
            if gateways == 0:
                self.gateways.append(self._start("all", ROLE="all"))
                return
            self.engine = self._start("engine", ROLE="engine", ENGINE_ID="e1")
            for number in range(1, gateways + 1):  # one at a time: the first makes the admin account
                self.gateways.append(self._start(f"g{number}", ROLE="gateway"))
        except BaseException:
            self.stop()
            raise

    def children(self) -> list[Child]:
        return ([self.engine] if self.engine else []) + self.gateways

    def pids(self) -> dict[str, int]:
        named = {child.name: child.pid for child in self.gateways}
        if self.engine is not None:
            named["engine"] = self.engine.pid
        return named

    def stop(self) -> None:
        for child in [*self.gateways, *([self.engine] if self.engine else [])]:  # gateways first
            child.stop()


class Client:
    """One load client process (`benchmarks/scale/client.py`), spoken to in lines of JSON."""

    def __init__(self, number: int, config: dict[str, Any], work: Path, script: Path = CLIENT) -> None:
        self.name = f"client{number}"
        path = work / f"{self.name}.json"
        path.write_text(json.dumps(config))
        self.log_path = work / f"{self.name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [PYTHON, str(script), str(path)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=die_with_parent(),
            )
        self.buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no answer in {timeout:g} s\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited ({self.process.poll()}):\n{self.log_tail()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"op": "quit"})
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


# -- merging the client processes' results ---------------------------------------------------
def merged_percentiles(hists: list[list[list[int]]]) -> dict[str, float | int | None]:
    counts: dict[int, int] = {}
    for bins, numbers in hists:
        for b, n in zip(bins, numbers, strict=True):
            counts[b] = counts.get(b, 0) + n
    total = sum(counts.values())
    out: dict[str, float | int | None] = {"n": total}
    names = {"p50": 0.5, "p99": 0.99, "p99_9": 0.999}
    if not total:
        return out | dict.fromkeys(names) | {"max": None}
    ordered = sorted(counts.items())
    for name, q in names.items():
        rank, seen = q * (total - 1), 0
        for b, n in ordered:
            seen += n
            if seen > rank:
                out[name] = round((b + 0.5) * BIN_MS, 2)  # the bin's middle: ±0.05 ms
                break
    out["max"] = round((ordered[-1][0] + 1) * BIN_MS, 2)
    return out


def merge_phase(results: list[dict[str, Any]], topology: Topology, watchers: int) -> dict[str, Any]:
    seconds = statistics.mean(r["seconds"] for r in results)
    deliveries = sum(r.get("deliveries", 0) for r in results)
    frames = max(r.get("price_frames", 0) for r in results)
    cpu = dict(results[0]["cpu_cores"])  # servers: sampled by the first client over its window
    cpu["client"] = round(sum(r["cpu_cores"].get("client", 0.0) for r in results), 3)
    gateway_cores = round(sum(cpu.get(child.name, 0.0) for child in topology.gateways), 3)
    rejected: dict[str, int] = {}
    for r in results:
        for code, n in r["rejected"].items():
            rejected[code] = rejected.get(code, 0) + n
    frames_per_s = round(deliveries / seconds, 1)
    return {
        "rate_target": round(sum(r["rate_target"] or 0 for r in results), 1),
        "frames_per_s": frames_per_s,
        "acked_bids_per_s": round(sum(r["accepted"] for r in results) / seconds, 1),
        "bcast_ms": merged_percentiles([r["bcast_hist"] for r in results]),
        "ack_ms": merged_percentiles([r["ack_hist"] for r in results]),
        "delivery_ratio": round(deliveries / (frames * watchers), 4) if frames and watchers else None,
        "price_frames": frames,
        # Distinct price frames whose `ts` fell in the window, per second: the rate of price
        # changes the engine accepted in the window (a bid whose paced schedule slipped still
        # counts here, unlike in acked_bids_per_s).
        "price_changes_per_s": round(frames / seconds, 1),
        "rejected": rejected,
        "unanswered": sum(r["unanswered"] for r in results),
        "send_lag_ms_p99": max((r["send_lag_ms"] or {}).get("p99") or 0.0 for r in results),
        "disconnects": sum(r["disconnects"] for r in results),
        "open_watchers": sum(r["open_watchers"] for r in results),
        "cpu_cores": cpu,
        "gateway_cpu_cores": gateway_cores,
        "gateway_cpu_us_per_frame": round(gateway_cores / frames_per_s * 1e6, 2) if frames_per_s else None,
    }


# -- one measurement: a topology, from start to stop -----------------------------------------
async def wait_session_open(port: int, session_id: int) -> None:
    rest = Rest(port)
    deadline = time.monotonic() + 30.0
    try:
        while (await rest.call("GET", f"/api/v1/sessions/{session_id}"))["state"] != 3:
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {session_id} is not open on port {port}")
            await asyncio.sleep(0.2)
    finally:
        rest.http.close()


def measure(
    name: str, number: int, args: argparse.Namespace, services: Services, root: Path
) -> dict[str, Any]:
    tag = f"{name}_r{number}"
    work = root / tag
    topology = Topology(name, tag, services, root, args.redis_db)
    clients: list[Client] = []
    record: dict[str, Any] = {}
    try:
        topology.start()
        set_up_started = time.monotonic()
        ports = [child.port for child in topology.gateways]
        setup = asyncio.run(set_up_gavel(ports[0], args.bidders))
        session_id = setup["session_id"]
        for port in ports[1:]:
            asyncio.run(wait_session_open(port, session_id))
        prices = asyncio.run(lot_prices(ports[0], session_id))
        service_pids = {server.name: server.pid for server in services.embedded}
        pids = {**topology.pids(), **service_pids}
        pairs = args.bidders // 2
        share = [pairs // args.clients + (1 if k < pairs % args.clients else 0) for k in range(args.clients)]
        held = [
            args.watchers // args.clients + (1 if k < args.watchers % args.clients else 0)
            for k in range(args.clients)
        ]
        first = 0
        for k in range(args.clients):
            lo, hi = 2 * first, 2 * (first + share[k])
            first += share[k]
            lots = setup["lots"][lo:hi]
            config = {
                "ports": ports,
                "session_id": session_id,
                "tokens": setup["tokens"][lo:hi],
                "lots": lots,
                "next_min": [prices[lot] for lot in lots],
                "watchers": held[k],
                "offset": sum(held[:k]),
                "pids": pids if k == 0 else {},
                "connect_parallel": 64,
                "connect_timeout": 120,
            }
            clients.append(Client(k, config, work))
        primed = [client.read(120) for client in clients]
        record["unprimed_pairs"] = sum(p["unprimed_pairs"] for p in primed)
        record["set_up_s"] = round(time.monotonic() - set_up_started, 1)
        all_pids = [*pids.values(), *(client.pid for client in clients)]
        quiesce(all_pids)

        # 1. sockets held
        before = {child.name: rss_mb(child.pid) for child in topology.gateways}
        for client in clients:
            client.send({"op": "watch"})
        watching = [client.read(180) for client in clients]
        time.sleep(0.5)
        quiesce(all_pids)
        after = {child.name: rss_mb(child.pid) for child in topology.gateways}
        subscribed = sum(w["subscribed"] for w in watching)
        connect_s = max(w["connect_s"] for w in watching)
        per_gateway = {child.name: 0 for child in topology.gateways}
        for w in watching:
            for child in topology.gateways:
                per_gateway[child.name] += w["per_port"][str(child.port)]["subscribed"]
        rss_after = sum(v or 0.0 for v in after.values())
        grown = sum((after[n] or 0.0) - (before[n] or 0.0) for n in after)
        record["sockets"] = {
            "watchers_asked": args.watchers,
            "watchers_subscribed": subscribed,
            "per_gateway": per_gateway,
            "failed": {k: v for w in watching for k, v in w["errors"].items()},
            "timed_out": sum(w["timed_out"] for w in watching),
            "connect_s": connect_s,
            "watchers_per_s": round(subscribed / connect_s, 1) if connect_s else None,
            "gateway_rss_mb_before": before,
            "gateway_rss_mb_after": after,
            "gateway_rss_mb_total": round(rss_after, 1),
            "kb_per_watcher": round(grown * 1024 / subscribed, 2) if subscribed else None,
            "watchers_per_mb_rss": round(subscribed / rss_after, 2) if rss_after else None,
        }
        if topology.engine is not None:
            record["sockets"]["engine_rss_mb"] = rss_mb(topology.engine.pid)

        # 2. broadcast rate, at each rate in turn on the same sockets
        for rate in args.rates:
            quiesce(all_pids)
            start_at = time.time() + 0.5
            for k, client in enumerate(clients):
                spec = {
                    "name": f"bcast_{rate:g}",
                    "mode": "paced",
                    "rate": rate * 2 * share[k] / args.bidders,
                    "warmup": args.warmup,
                    "duration": args.duration,
                }
                client.send({"op": "phase", "spec": spec, "start_at": start_at})
            # The whole machine's busy cores over the window: ours and the neighbours'.
            time.sleep(max(0.0, start_at + args.warmup - time.time()))
            busy, wall = machine_busy_seconds(), time.monotonic()
            time.sleep(args.duration)
            busy, wall = machine_busy_seconds() - busy, time.monotonic() - wall
            results = [client.read(30) for client in clients]
            phase = merge_phase(results, topology, subscribed)
            phase["machine_busy_cores"] = round(busy / wall, 2)
            ours = sum(phase["cpu_cores"].values())
            phase["other_processes_cores"] = round(max(0.0, busy / wall - ours), 2)
            record[f"{rate:g}"] = phase
        if args.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {tag}: {summary(record)}", file=sys.stderr, flush=True)
        return record
    finally:
        for client in clients:
            client.stop()
        topology.stop()


def summary(record: dict[str, Any]) -> str:
    s = record.get("sockets", {})
    parts = [
        f"subscribed={s.get('watchers_subscribed')} connect_s={s.get('connect_s')} "
        f"rss={s.get('gateway_rss_mb_after')} kb/watcher={s.get('kb_per_watcher')}"
    ]
    for key, phase in record.items():
        if isinstance(phase, dict) and "frames_per_s" in phase:
            parts.append(
                f"{key}/s: frames/s={phase['frames_per_s']} acked/s={phase['acked_bids_per_s']} "
                f"changes/s={phase['price_changes_per_s']} lag99={phase['send_lag_ms_p99']} "
                f"busy={phase['machine_busy_cores']} others={phase['other_processes_cores']} "
                f"p50={phase['bcast_ms'].get('p50')} p99={phase['bcast_ms'].get('p99')} "
                f"ratio={phase['delivery_ratio']} gw_cpu={phase['gateway_cpu_cores']} "
                f"cpu={phase['cpu_cores']}"
            )
    return "; ".join(parts)


# -- reporting --------------------------------------------------------------------------------
def pick(records: list[dict[str, Any]], *path: str) -> list[Any]:
    values = []
    for record in records:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def summarize(records: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    sockets: dict[str, Any] = {
        key: med(pick(records, "sockets", key))
        for key in (
            "watchers_subscribed",
            "connect_s",
            "watchers_per_s",
            "gateway_rss_mb_total",
            "kb_per_watcher",
            "watchers_per_mb_rss",
            "engine_rss_mb",
        )
    }
    sockets["watchers_asked"] = args.watchers
    names = records[0]["sockets"]["per_gateway"].keys() if records else []
    sockets["per_gateway"] = {n: med(pick(records, "sockets", "per_gateway", n)) for n in names}
    sockets["gateway_rss_mb_after"] = {
        n: med(pick(records, "sockets", "gateway_rss_mb_after", n)) for n in names
    }
    sockets["watchers_per_s_runs"] = pick(records, "sockets", "watchers_per_s")
    sockets["failed"] = [r["sockets"]["failed"] for r in records if r["sockets"]["failed"]]
    broadcast: dict[str, Any] = {}
    for rate in args.rates:
        key = f"{rate:g}"
        cpu_names = records[0][key]["cpu_cores"].keys() if records else []
        broadcast[key] = {
            "frames_per_s": med(pick(records, key, "frames_per_s")),
            "frames_per_s_runs": pick(records, key, "frames_per_s"),
            "acked_bids_per_s": med(pick(records, key, "acked_bids_per_s")),
            "price_changes_per_s": med(pick(records, key, "price_changes_per_s")),
            "bcast_ms": {q: med(pick(records, key, "bcast_ms", q)) for q in ("p50", "p99", "p99_9", "max")},
            "ack_ms": {q: med(pick(records, key, "ack_ms", q)) for q in ("p50", "p99")},
            "delivery_ratio": med(pick(records, key, "delivery_ratio")),
            "send_lag_ms_p99": med(pick(records, key, "send_lag_ms_p99")),
            "gateway_cpu_cores": med(pick(records, key, "gateway_cpu_cores")),
            "gateway_cpu_us_per_frame": med(pick(records, key, "gateway_cpu_us_per_frame")),
            "cpu_cores": {n: med(pick(records, key, "cpu_cores", n)) for n in cpu_names},
            "machine_busy_cores": med(pick(records, key, "machine_busy_cores")),
            "other_processes_cores": med(pick(records, key, "other_processes_cores")),
            "rejected": [r[key]["rejected"] for r in records if r[key]["rejected"]],
            "unanswered": sum(pick(records, key, "unanswered")),
            "disconnects": sum(pick(records, key, "disconnects")),
        }
    return {
        "gateways": TOPOLOGIES[records[0]["topology"]] if records else None,
        "sockets": sockets,
        "broadcast": broadcast,
        "unprimed_pairs": sum(pick(records, "unprimed_pairs")),
        "set_up_s": med(pick(records, "set_up_s")),
    }


def report(
    results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, started: float, load_before: Any
) -> dict[str, Any]:
    one, two = results["one_gateway"], results["two_gateways"]
    frames = {
        f"{rate:g}": ratio_median(
            pick(two, f"{rate:g}", "frames_per_s"), pick(one, f"{rate:g}", "frames_per_s")
        )
        for rate in args.rates
    }
    out: dict[str, Any] = {
        "topologies": {name: summarize(records, args) for name, records in results.items()},
        "ratio_two_to_one_frames_per_s": frames,
        "ratio_two_to_one": {
            "frames_per_s": frames,
            "bcast_p99_ms": {
                f"{rate:g}": ratio_median(
                    pick(two, f"{rate:g}", "bcast_ms", "p99"), pick(one, f"{rate:g}", "bcast_ms", "p99")
                )
                for rate in args.rates
            },
            "gateway_cpu_us_per_frame": {
                f"{rate:g}": ratio_median(
                    pick(two, f"{rate:g}", "gateway_cpu_us_per_frame"),
                    pick(one, f"{rate:g}", "gateway_cpu_us_per_frame"),
                )
                for rate in args.rates
            },
            "watchers_per_s": ratio_median(
                pick(two, "sockets", "watchers_per_s"), pick(one, "sockets", "watchers_per_s")
            ),
            "watchers_per_mb_rss": ratio_median(
                pick(two, "sockets", "watchers_per_mb_rss"), pick(one, "sockets", "watchers_per_mb_rss")
            ),
            "kb_per_watcher": ratio_median(
                pick(two, "sockets", "kb_per_watcher"), pick(one, "sockets", "kb_per_watcher")
            ),
        },
        # Measurement windows in which other people's processes took more than a quarter of a
        # core of this shared machine: read those figures (and ratios of their round) with care.
        "noisy_windows": [
            {"topology": name, "round": number, "rate": key, "other_processes_cores": others}
            for name, records in results.items()
            for number, record in enumerate(records)
            for key in (f"{rate:g}" for rate in args.rates)
            if (others := record[key].get("other_processes_cores") or 0.0) > NOISY_CORES
        ],
        "watchers": args.watchers,
        "bidders": args.bidders,
        "rates": args.rates,
        "clients": args.clients,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "runs": args.runs,
        "journal_fsync": True,
        "machine": {
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "python": sys.version.split()[0],
        "command": " ".join([".venv/bin/python", "benchmarks/bench_scale.py", *sys.argv[1:]]),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchers", type=int, default=2000, help="watcher sockets, over all gateways")
    parser.add_argument("--bidders", type=int, default=100, help="bidders (even; pairs share two lots)")
    parser.add_argument("--rates", default="20,100,200", help="bid rates (bids/s, comma-separated), in turn")
    parser.add_argument("--clients", type=int, default=2, help="load client processes (every topology)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per rate")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help="which to measure (one_gateway and two_gateways are needed for the ratios)",
    )
    parser.add_argument(
        "--redis-db", type=int, default=13, help="Redis database (flushed before each topology)"
    )
    parser.add_argument("--quick", action="store_true", help="one round, shorter phases (~2 min)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="a line per measurement on stderr")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 2.5, 1.0
    args.rates = [float(rate) for rate in args.rates.split(",") if rate.strip()]
    names = [name for name in args.topologies.split(",") if name.strip()]
    if unknown := set(names) - set(TOPOLOGIES):
        parser.error(f"unknown topologies {sorted(unknown)}; choose from {list(TOPOLOGIES)}")
    if not {"one_gateway", "two_gateways"} <= set(names):
        parser.error("one_gateway and two_gateways are both needed")
    if args.bidders < 2 or args.bidders % 2 or args.bidders // 2 < args.clients:
        parser.error("--bidders must be even, with at least one pair per client process")
    raise_nofile()
    started = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="gavel-scale-", dir=args.dir))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        with Services.from_env(root / "services", os.environ) as services:
            for number in range(args.runs):
                order = names[number % len(names) :] + names[: number % len(names)]  # rotate
                for name in order:
                    record = measure(name, number, args, services, root)
                    record["topology"] = name
                    results[name].append(record)
            result = report(results, args, started, load_before)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
