"""End-to-end benchmark: Gavel against the transport limit and a Redis-Lua peer. Prints one JSON object.

Everything runs on 127.0.0.1 and is started here: embedded MongoDB and Redis (once, shared by
URL), Gavel (`benchmarks/e2e/gavel_server.py`: `run.py`'s `main()` with a fresh DATA_DIR and
database) in seven variants, the bare Tornado echo server (twice: Gavel's write path and plain
`write_message`) and the Redis-Lua peer, each a child process. Accounts, deposits, the session and
its lots are made through REST before anything is measured. One load client process
(`benchmarks/e2e/loadgen.py`) drives every server the same way:

- throughput: N closed-loop bidders (one bid in flight each) for `--duration` s after `--warmup`:
  acknowledged (accepted) bids/s, ack latency, CPU of the server (and of its write-behind
  process), MongoDB, Redis and the client;
- latency at half of our peak: a run of its own, the same bidders paced at half of Gavel's rate
  of that round, on Gavel, the two peers, Gavel with its write-behind inline and Gavel without
  write-behind: ack p50/p99/p99.9;
- broadcast: M watchers subscribed to the session while N bidders bid at `--bcast-rate` bids/s
  (Gavel then goes on to the `--bcast-sweep` rates): delay from a bid's server `ts` to its `price`
  frame at each watcher, p50/p99, and per frame at its slowest watcher; frames delivered/s.

Gavel variants: `gavel` (uvloop, journal fsync on, frame once: the headline), `gavel_nofsync`
(JOURNAL_FSYNC=0), `gavel_asyncio` (the standard asyncio loop), `gavel_write_message` (frame once
off: Tornado's write_message per subscriber), `gavel_tornado_read` (frames read by Tornado's
IOStream loop instead of gateway/wire.py's transport; JSON `fast_read`), `gavel_inline_archiver`
(ARCHIVER=inline: the write-behind on the engine's loop instead of its own process; JSON
`archiver_process`) and `gavel_no_write_behind` (a diagnostic: bids not
archived to MongoDB, to see what the write-behind costs on this machine). Every figure is the
median of `--runs` rounds; a round measures every server back to back (in a rotating order), and
ratios are taken within a round, then their median, so a noisy neighbour on this shared 2-core
machine shifts both sides of a ratio alike. Before each measurement the benchmark waits for the
servers, MongoDB and Redis to go idle (Gavel's write-behind catching up), so no run pays for the
previous one; how far the write-behind was behind is reported.

    .venv/bin/python benchmarks/bench_e2e.py            # the figures in docs/performance.md (~9 min)
    .venv/bin/python benchmarks/bench_e2e.py --quick    # one short round (~1.5 min)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tornado.httpclient  # noqa: E402

from benchmarks.e2e.procstat import archiver_pid, cpu_seconds  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

PYTHON = sys.executable
E2E = ROOT / "benchmarks" / "e2e"
ADMIN_PASSWORD = "bench-admin-password"
START_PRICE, UNIT = 100_00, 1_00
SESSION_DEPOSIT = 1_00
UNLIMITED = {"bids_per_second": 1e9, "bid_burst": 1e9, "ws_connections_per_ip": 1_000_000}
GAVELS: dict[str, dict[str, str]] = {
    "gavel": {},
    "gavel_nofsync": {"JOURNAL_FSYNC": "0"},
    "gavel_asyncio": {"GAVEL_LOOP": "asyncio"},
    "gavel_write_message": {"GAVEL_BENCH_VARIANT": "write_message"},
    # Frames read by Tornado's IOStream loop instead of the asyncio transport (gateway/wire.py).
    "gavel_tornado_read": {"GAVEL_BENCH_VARIANT": "tornado_read"},
    # The write-behind on the engine's own loop instead of its own process (persistence/archive_process.py).
    "gavel_inline_archiver": {"ARCHIVER": "inline"},
    # A diagnostic (bids are not archived to MongoDB): what the write-behind costs on this machine.
    "gavel_no_write_behind": {"GAVEL_BENCH_VARIANT": "no_write_behind", "ARCHIVER": "inline"},
}
DEFAULT_CHART = ROOT / "docs" / "performance" / "e2e.png"
QUICK_CHART = ROOT / "benchmarks" / "out" / "e2e-quick.png"  # benchmarks/out/ is not committed


# -- child processes --------------------------------------------------------------------------
def die_with_parent() -> Any:
    """A preexec_fn asking Linux to SIGTERM the child if the benchmark dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork

    def hook() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return hook


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_listening(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not listen on {self.port} within {timeout:g} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def peer_env() -> dict[str, str]:
    """This environment without the settings a benchmark chooses itself."""
    chosen = ("GAVEL_LOOP", "JOURNAL_FSYNC", "ROLE")
    env = {key: value for key, value in os.environ.items() if key not in chosen}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def gavel_env(mongo_url: str, redis_url: str, database: str, **settings: str) -> dict[str, str]:
    """A benchmarked Gavel's environment (bench_e2e, bench_scale): journal fsync on, no snapshot
    inside a measurement window, the per-user and per-address limits lifted. The edge's limits
    (gateway/edge.py) stay on; every client connects from 127.0.0.1 (2,000 watchers, 100 bidders
    and the set-up's REST calls), so one address may hold 10,000 connections here."""
    return dict(
        peer_env(),
        HOST="127.0.0.1",
        MONGODB_URL=mongo_url,
        REDIS_URL=redis_url,
        MONGODB_DB=database,
        SEED_DEMO="0",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        JOURNAL_FSYNC="1",
        SNAPSHOT_INTERVAL="3600",
        LOG_LEVEL="WARNING",
        REGISTRATIONS_PER_ADDRESS="1000000",  # every bidder registers from 127.0.0.1
        MAX_CONNECTIONS_PER_IP="10000",
        GAVEL_BENCH_LIMITS=json.dumps(UNLIMITED),
        **settings,
    )


def start_servers(names: list[str], services: Services, root: Path) -> dict[str, Child]:
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: dict[str, Child] = {}
    base_env = peer_env()
    taken: set[int] = set()
    try:  # a server that does not come up stops the ones that did
        for name in names:
            # The children bind seconds later, so free_port() may hand out one of their ports
            # again; two servers on one port made the set-up talk to the same Gavel twice.
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            if name in GAVELS:
                env = gavel_env(
                    services.mongo_url,
                    services.redis_url,
                    f"bench_{name}_{os.getpid()}",
                    PORT=str(port),
                    DATA_DIR=str(root / name),
                )
                env.update(GAVELS[name])
                argv = [PYTHON, str(E2E / "gavel_server.py")]
            elif name in ("echo", "echo_write_message"):
                env, argv = base_env, [PYTHON, str(E2E / "echo_server.py"), str(port)]
                if name == "echo_write_message":
                    argv.append("--write-message")
            elif name == "redis_lua":
                env = base_env
                argv = [PYTHON, str(E2E / "redis_lua_server.py"), str(port), services.redis_url]
                argv += ["--start", str(START_PRICE), "--unit", str(UNIT)]
            else:
                raise ValueError(name)
            children[name] = Child(name, argv, env, logs, port)
        for child in children.values():
            child.wait_listening()
    except BaseException:
        for child in children.values():
            child.stop()
        raise
    return children


# -- REST set-up of a Gavel server (before any measurement) ----------------------------------
class Rest:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=8)
        self.admin = ""

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for _ in range(30):
            response = await self.http.fetch(
                self.base + path,
                method=method,
                headers=headers,
                body=None if body is None and method == "GET" else json.dumps(body or {}),
                request_timeout=60,
                raise_error=False,
            )
            # The servers share one Redis, so the admin's sign-ins to all of them at once meet the
            # sign-in throttle: a client honours its Retry-After, as any client should.
            if response.code != 429:
                break
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        if response.code >= 300:
            raise RuntimeError(f"{method} {path}: {response.code} {response.body!r}")
        return json.loads(response.body) if response.body else None


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


async def set_up_gavel(port: int, bidders: int, bidding_hours: float = 8) -> dict[str, Any]:
    """A session with a deposit and one lot per bidder; bidders registered, credited, deposits paid.

    The session bids for `bidding_hours` (bench_recovery's histories run hours ahead of the wall
    clock and must not outlive it)."""
    rest = Rest(port)
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    rest.admin = (await rest.call("POST", "/api/v1/admin/login", login))["token"]
    now = datetime.datetime.now(datetime.UTC)
    session = await rest.call(
        "POST",
        "/api/v1/admin/sessions",
        {
            "title": "Benchmark session",
            "preview_start": iso(now),
            "preview_end": iso(now),
            "bidding_start": iso(now + datetime.timedelta(hours=1)),
            "bidding_end": iso(now + datetime.timedelta(hours=bidding_hours)),
            "deposit": SESSION_DEPOSIT,
        },
        rest.admin,
    )
    session_id = session["id"]
    lots: list[int] = []
    for number in range(bidders):
        lot = await rest.call(
            "POST",
            f"/api/v1/admin/sessions/{session_id}/lots",
            {
                "catalogue_no": f"B{number:05d}",
                "title": f"Lot {number}",
                "start_price": START_PRICE,
                "unit": UNIT,
            },
            rest.admin,
        )
        lots.append(lot["id"])

    async def bidder(number: int) -> str:
        name = f"bench{number:05d}"
        answer = await rest.call(
            "POST", "/api/v1/auth/register", {"username": name, "password": "bench-password"}
        )
        await rest.call(
            "POST", f"/api/v1/admin/users/{answer['user_id']}/credit", {"amount": 1_000_00}, rest.admin
        )
        await rest.call(
            "POST", "/api/v1/deposits", {"session_id": session_id, "pay_with": "balance"}, answer["token"]
        )
        return str(answer["token"])

    gate = asyncio.Semaphore(4)

    async def gated(number: int) -> str:
        async with gate:
            return await bidder(number)

    tokens = await asyncio.gather(*(gated(n) for n in range(bidders)))
    starts = iso(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1))
    await rest.call("PATCH", f"/api/v1/admin/sessions/{session_id}", {"bidding_start": starts}, rest.admin)
    deadline = time.monotonic() + 30
    while (await rest.call("GET", f"/api/v1/sessions/{session_id}"))["state"] != 3:
        if time.monotonic() > deadline:
            raise RuntimeError("the benchmark session did not start bidding")
        await asyncio.sleep(0.2)
    rest.http.close()
    return {"session_id": session_id, "lots": lots, "tokens": list(tokens)}


async def lot_prices(port: int, session_id: int) -> dict[int, int]:
    rest = Rest(port)
    session = await rest.call("GET", f"/api/v1/sessions/{session_id}")
    rest.http.close()
    return {lot["id"]: lot["next_min"] for lot in session["lots"]}


async def metric(port: int, name: str = "gavel_write_behind_lag_events") -> float | None:
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        response = await http.fetch(f"http://127.0.0.1:{port}/metrics", request_timeout=10, raise_error=False)
    finally:
        http.close()
    for line in (response.body or b"").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# -- measuring --------------------------------------------------------------------------------
def quiesce(pids: list[int], limit_cores: float = 0.12, timeout: float = 30.0, sample: float = 0.3) -> float:
    """Wait until these processes together use less than `limit_cores` over a `sample` s window;
    returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = [cpu_seconds(pid) or 0.0 for pid in pids]
        time.sleep(sample)
        after = [cpu_seconds(pid) or 0.0 for pid in pids]
        if sum(after) - sum(before) < limit_cores * sample:
            break
    return round(time.monotonic() - started, 2)


def run_client(config: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    path = work / "client.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [PYTHON, str(E2E / "loadgen.py"), str(path)],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"load client failed ({done.returncode}):\n{done.stderr.decode(errors='replace')[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, services: Services, children: dict[str, Child]):
        self.args, self.root, self.services, self.children = args, root, services, children
        self.setups: dict[str, dict[str, Any]] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}  # key -> one result per round
        self.service_pids = {s.name: s.pid for s in services.embedded}

    def pids(self, name: str) -> dict[str, int]:
        server = self.children[name].pid
        archiver = archiver_pid(server)
        return {"server": server, **({} if archiver is None else {"archiver": archiver}), **self.service_pids}

    def all_pids(self) -> list[int]:
        servers = [child.pid for child in self.children.values()]
        archivers = [pid for pid in map(archiver_pid, servers) if pid is not None]
        return servers + archivers + list(self.service_pids.values())

    def client_config(self, name: str, watchers: int, phases: list[dict[str, Any]]) -> dict[str, Any]:
        n = self.args.bidders
        if name in GAVELS:
            setup = self.setups[name]
            prices = asyncio.run(lot_prices(self.children[name].port, setup["session_id"]))
            lots, tokens, session_id = setup["lots"], setup["tokens"], setup["session_id"]
            next_min = [prices[lot] for lot in lots]
        else:
            lots, tokens, session_id = list(range(1, n + 1)), [None] * n, 1
            next_min = [START_PRICE] * n  # the peers answer the first stale bids with the right next_min
        return {
            "port": self.children[name].port,
            "session_id": session_id,
            "tokens": tokens,
            "lots": lots,
            "next_min": next_min,
            "watchers": watchers,
            "phases": phases,
            "pids": self.pids(name),
            "connect_parallel": 64,
            **({} if self.args.drain is None else {"drain_s": self.args.drain}),
        }

    def measure(self, key: str, name: str, watchers: int, phases: list[dict[str, Any]]) -> dict[str, Any]:
        quiesce(self.all_pids(), sample=self.args.quiet_sample)
        config = self.client_config(name, watchers, phases)
        budget = 120 + sum(p.get("warmup", 1) + p["duration"] + 5 for p in phases)
        outcome = run_client(config, self.root, budget)
        by_phase = {phase["name"]: phase for phase in outcome["phases"]}
        record = {"connect_s": outcome["connect_s"], "unprimed_pairs": outcome["unprimed_pairs"], **by_phase}
        if name in GAVELS:
            # Did the write-behind keep up? Events not yet in MongoDB when the load stopped, and
            # how long MongoDB then took to catch up (the machine going quiet again).
            record["write_behind_lag_events"] = asyncio.run(metric(self.children[name].port))
            record["catch_up_s"] = quiesce(self.all_pids(), sample=self.args.quiet_sample)
        self.results.setdefault(key, []).append(record)
        if self.args.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {key}: {summary(record)}", file=sys.stderr, flush=True)
        return record

    def round(self, number: int) -> None:
        a = self.args
        timing = {"warmup": a.warmup, "duration": a.duration}
        gavel = self.measure("throughput:gavel", "gavel", 0, [{"name": "closed", "mode": "closed", **timing}])
        # Latency at half of Gavel's peak of this round, in a run of its own (after the machine went
        # quiet), for Gavel and, at the same rate, the two peers and Gavel without its write-behind.
        same_rate = {
            "name": "half_peak",
            "mode": "paced",
            "rate": gavel["closed"]["acked_per_s"] * 0.5,
            **timing,
        }
        self.measure("latency:gavel", "gavel", 0, [same_rate])
        order = [
            "echo",
            "redis_lua",
            "gavel_nofsync",
            "gavel_asyncio",
            "gavel_write_message",
            "gavel_tornado_read",
            "echo_write_message",
            "gavel_no_write_behind",
            "gavel_inline_archiver",
        ]
        order = order[number % len(order) :] + order[: number % len(order)]  # rotate: no fixed position
        for name in order:
            self.measure(f"throughput:{name}", name, 0, [{"name": "closed", "mode": "closed", **timing}])
            if name in ("echo", "redis_lua", "gavel_no_write_behind", "gavel_inline_archiver"):
                self.measure(f"latency:{name}", name, 0, [same_rate])
        bcast = {
            "name": "bcast",
            "mode": "paced",
            "rate": a.bcast_rate,
            "warmup": a.bcast_warmup,
            "duration": a.bcast_duration,
        }
        sweep = [{**bcast, "name": f"bcast_{rate:g}", "rate": rate} for rate in a.bcast_sweep]
        names = ["gavel", "gavel_write_message", "echo", "redis_lua"]
        names = names[number % len(names) :] + names[: number % len(names)]
        for name in names:
            # Gavel also runs the higher rates of the sweep, on the same connections.
            self.measure(f"broadcast:{name}", name, a.watchers, [bcast, *(sweep if name == "gavel" else [])])


def summary(record: dict[str, Any]) -> str:
    parts = []
    for name, phase in record.items():
        if not isinstance(phase, dict):
            continue
        text = f"{name} acked/s={phase['acked_per_s']} ack_p99={phase['ack_ms']['p99']}"
        if "bcast_ms" in phase:
            text += f" bcast_p99={phase['bcast_ms']['p99']} deliv/s={phase['deliveries_per_s']}"
            text += f" ratio={phase['delivery_ratio']}"
        text += f" cpu={phase['cpu_cores']}"
        parts.append(text)
    return "; ".join(parts)


# -- reporting --------------------------------------------------------------------------------
def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def pick(records: list[dict[str, Any]], phase: str, *path: str) -> list[Any]:
    values = []
    for record in records:
        value: Any = record.get(phase)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def ratio_median(a: list[Any], b: list[Any]) -> float | None:
    ratios = [x / y for x, y in zip(a, b, strict=False) if x and y]
    return round(statistics.median(ratios), 3) if ratios else None


def report(
    bench: Bench, args: argparse.Namespace, started: float, load_before: tuple[float, ...]
) -> dict[str, Any]:
    r = bench.results
    tp = {
        name: r[f"throughput:{name}"]
        for name in [*GAVELS, "echo", "echo_write_message", "redis_lua"]
        if f"throughput:{name}" in r
    }
    bc = {name: r[f"broadcast:{name}"] for name in ["gavel", "gavel_write_message", "echo", "redis_lua"]}
    rate = {name: pick(records, "closed", "acked_per_s") for name, records in tp.items()}

    def cpu(records: list[dict[str, Any]], phase: str, process: str) -> float | None:
        return med(pick(records, phase, "cpu_cores", process))

    def phase_summary(records: list[dict[str, Any]], phase: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "acked_bids_per_s": med(pick(records, phase, "acked_per_s")),
            "runs": pick(records, phase, "acked_per_s"),
            "ack_ms": {q: med(pick(records, phase, "ack_ms", q)) for q in ("p50", "p99", "p99_9", "max")},
            "rejected": pick(records, phase, "rejected"),
            "cpu_cores": {
                process: cpu(records, phase, process)
                for process in ("server", "archiver", "mongo", "redis", "client")
            },
        }
        if records and records[0].get(phase, {}).get("rate_target") is not None:
            out["rate"] = med(pick(records, phase, "rate_target"))
        if records and "bcast_ms" in records[0].get(phase, {}):
            out["bcast_ms"] = {
                q: med(pick(records, phase, "bcast_ms", q)) for q in ("p50", "p99", "p99_9", "max")
            }
            out["bcast_all_watchers_ms"] = {
                q: med(pick(records, phase, "bcast_all_watchers_ms", q)) for q in ("p50", "p99")
            }
            out["deliveries_per_s"] = med(pick(records, phase, "deliveries_per_s"))
            out["delivery_ratio"] = med(pick(records, phase, "delivery_ratio"))
            out["price_frames"] = med(pick(records, phase, "price_frames"))
        out["disconnects"] = sum(v or 0 for v in pick(records, phase, "disconnects"))
        # CPU per unit of work: steadier than rates on a shared machine (a busy neighbour slows
        # the rate, much less the CPU each bid or delivery costs).
        servers = pick(records, phase, "cpu_cores", "server")
        bids = pick(records, phase, "acked_per_s")
        out["server_cpu_us_per_bid"] = med(
            [c / b * 1e6 if c and b else None for c, b in zip(servers, bids, strict=True)]
        )
        # Gavel's own processes: the engine's and, when it runs apart, the write-behind's.
        archivers = pick(records, phase, "cpu_cores", "archiver")
        out["gavel_cpu_us_per_bid"] = med(
            [
                (c + (a or 0.0)) / b * 1e6 if c and b else None
                for c, a, b in zip(servers, archivers, bids, strict=True)
            ]
        )
        if "deliveries_per_s" in out:
            deliveries = pick(records, phase, "deliveries_per_s")
            out["server_cpu_us_per_delivery"] = med(
                [c / d * 1e6 if c and d else None for c, d in zip(servers, deliveries, strict=True)]
            )
        return out

    configs: dict[str, Any] = {}
    for name, records in tp.items():
        configs[name] = {"closed": phase_summary(records, "closed")}
        if f"latency:{name}" in r:
            configs[name]["half_peak"] = phase_summary(r[f"latency:{name}"], "half_peak")
    for name, records in bc.items():
        configs.setdefault(name, {})["broadcast"] = phase_summary(records, "bcast")
    for name in GAVELS:
        for key, phase in (("throughput", "closed"), ("latency", "half_peak"), ("broadcast", "broadcast")):
            phase_records = r.get(f"{key}:{name}")
            if phase_records and phase in configs[name]:
                for field in ("write_behind_lag_events", "catch_up_s"):
                    configs[name][phase][field] = med([record.get(field) for record in phase_records])
    configs["gavel"]["broadcast_sweep"] = {
        f"{rate:g}": phase_summary(bc["gavel"], f"bcast_{rate:g}") for rate in args.bcast_sweep
    }

    gavel = configs["gavel"]
    ours = gavel["closed"]["acked_bids_per_s"]
    half = gavel["half_peak"]
    bcast = gavel["broadcast"]
    off = configs["gavel_write_message"]["broadcast"]
    ratio_transport = ratio_median(rate["gavel"], rate["echo"])
    ratio_lua = ratio_median(rate["gavel"], rate["redis_lua"])

    def gain(on: float | None, off: float | None) -> float | None:
        return round(off / on, 3) if on and off else None

    return {
        "acked_bids_per_s": ours,
        "acked_bids_per_s_runs": rate["gavel"],
        "ack_ms": gavel["closed"]["ack_ms"],
        "ack_ms_at_half_peak": {**half["ack_ms"], "rate": half.get("rate")},
        "bcast_ms": bcast["bcast_ms"],
        "bcast_all_watchers_ms": bcast["bcast_all_watchers_ms"],
        "bcast_deliveries_per_s": bcast["deliveries_per_s"],
        "bcast_delivery_ratio": bcast["delivery_ratio"],
        "server_cpu_cores": gavel["closed"]["cpu_cores"]["server"],
        "server_cpu_us_per_bid": {
            name: configs[name]["closed"]["server_cpu_us_per_bid"] for name in ("gavel", "echo", "redis_lua")
        },
        "gavel_cpu_us_per_bid": gavel["closed"]["gavel_cpu_us_per_bid"],
        "services_cpu_cores": {p: gavel["closed"]["cpu_cores"][p] for p in ("mongo", "redis")},
        "client_cpu_cores": gavel["closed"]["cpu_cores"]["client"],
        "transport_acked_bids_per_s": configs["echo"]["closed"]["acked_bids_per_s"],
        "redis_lua_acked_bids_per_s": configs["redis_lua"]["closed"]["acked_bids_per_s"],
        "ratio_to_transport": ratio_transport,
        "ratio_to_redis_lua": ratio_lua,
        "asyncio_acked_bids_per_s": configs["gavel_asyncio"]["closed"]["acked_bids_per_s"],
        "ratio_uvloop_to_asyncio": ratio_median(rate["gavel"], rate["gavel_asyncio"]),
        "nofsync_acked_bids_per_s": configs["gavel_nofsync"]["closed"]["acked_bids_per_s"],
        "no_write_behind_acked_bids_per_s": configs["gavel_no_write_behind"]["closed"]["acked_bids_per_s"],
        "ratio_to_no_write_behind": ratio_median(rate["gavel"], rate["gavel_no_write_behind"]),
        "ratio_fsync_to_nofsync": ratio_median(rate["gavel"], rate["gavel_nofsync"]),
        "archiver_process": {
            "acked_bids_per_s": [ours, configs["gavel_inline_archiver"]["closed"]["acked_bids_per_s"]],
            "ratio_acked_process_to_inline": ratio_median(rate["gavel"], rate["gavel_inline_archiver"]),
            "ack_ms_at_half_peak": [
                half["ack_ms"],
                configs["gavel_inline_archiver"].get("half_peak", {}).get("ack_ms"),
            ],
            "server_cpu_us_per_bid": [
                gavel["closed"]["server_cpu_us_per_bid"],
                configs["gavel_inline_archiver"]["closed"]["server_cpu_us_per_bid"],
            ],
            "gavel_cpu_us_per_bid": [
                gavel["closed"]["gavel_cpu_us_per_bid"],
                configs["gavel_inline_archiver"]["closed"]["gavel_cpu_us_per_bid"],
            ],
            "archiver_cpu_cores": gavel["closed"]["cpu_cores"]["archiver"],
            "order": "[write-behind in its own process, inline on the engine's loop]",
        },
        "fast_read": {
            "acked_bids_per_s": [ours, configs["gavel_tornado_read"]["closed"]["acked_bids_per_s"]],
            "server_cpu_us_per_bid": [
                configs["gavel"]["closed"]["server_cpu_us_per_bid"],
                configs["gavel_tornado_read"]["closed"]["server_cpu_us_per_bid"],
            ],
            "ratio_acked_transport_to_iostream": ratio_median(rate["gavel"], rate["gavel_tornado_read"]),
            "order": "[asyncio transport (gateway/wire.py), Tornado IOStream read loop]",
        },
        "frame_once": {
            "bcast_ms_p50": [bcast["bcast_ms"]["p50"], off["bcast_ms"]["p50"]],
            "bcast_ms_p99": [bcast["bcast_ms"]["p99"], off["bcast_ms"]["p99"]],
            "server_cpu_cores": [bcast["cpu_cores"]["server"], off["cpu_cores"]["server"]],
            "deliveries_per_s": [bcast["deliveries_per_s"], off["deliveries_per_s"]],
            "server_cpu_us_per_delivery": [
                bcast.get("server_cpu_us_per_delivery"),
                off.get("server_cpu_us_per_delivery"),
            ],
            "p99_gain": gain(bcast["bcast_ms"]["p99"], off["bcast_ms"]["p99"]),
            "cpu_per_delivery_gain": gain(
                bcast.get("server_cpu_us_per_delivery"), off.get("server_cpu_us_per_delivery")
            ),
            "acked_bids_per_s": [ours, configs["gavel_write_message"]["closed"]["acked_bids_per_s"]],
            "ratio_acked_on_to_off": ratio_median(rate["gavel"], rate["gavel_write_message"]),
            "order": "[frame once, write_message]",
        },
        "targets": {
            "ratio_to_transport_ge_0.8": bool(ratio_transport and ratio_transport >= 0.8),
            "ratio_to_redis_lua_ge_2": bool(ratio_lua and ratio_lua >= 2.0),
            "ack_p99_le_10ms_at_half_peak": bool(
                half["ack_ms"]["p99"] is not None and half["ack_ms"]["p99"] <= 10.0
            ),
            "bcast_p99_le_100ms": bool(
                bcast["bcast_ms"]["p99"] is not None and bcast["bcast_ms"]["p99"] <= 100.0
            ),
        },
        "configs": configs,
        "bidders": args.bidders,
        "watchers": args.watchers,
        "bcast_rate": args.bcast_rate,
        "bcast_sweep": {
            rate: {
                "bcast_ms": sweep["bcast_ms"],
                "deliveries_per_s": sweep["deliveries_per_s"],
                "server_cpu_cores": sweep["cpu_cores"]["server"],
                "client_cpu_cores": sweep["cpu_cores"]["client"],
            }
            for rate, sweep in configs["gavel"]["broadcast_sweep"].items()
        },
        "duration_s": args.duration,
        "runs": args.runs,
        "journal_fsync": True,
        "loop": "uvloop",
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "python": sys.version.split()[0],
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = result["configs"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), dpi=90, gridspec_kw={"width_ratios": [1.5, 1, 1]})
    names = [
        "gavel",
        "gavel_nofsync",
        "gavel_asyncio",
        "gavel_write_message",
        "gavel_tornado_read",
        "gavel_inline_archiver",
        "gavel_no_write_behind",
        "echo",
        "echo_write_message",
        "redis_lua",
    ]
    labels = [
        "Gavel",
        "no\nfsync",
        "asyncio\nloop",
        "frame\nonce off",
        "IOStream\nreads",
        "write-behind\ninline",
        "no write-\nbehind*",
        "transport\n(echo)",
        "echo with\nwrite_msg",
        "Redis-Lua\npeer",
    ]
    colours = ["#1f77b4", "#6baed6", "#9ecae1", "#c6dbef", "#c6dbef", "#c6dbef", "#deebf7"]
    colours += ["#7f7f7f", "#bdbdbd", "#d62728"]
    values = [configs[n]["closed"]["acked_bids_per_s"] or 0 for n in names]
    ax = axes[0]
    bars = ax.bar(range(len(names)), values, color=colours)
    for bar, name in zip(bars, names, strict=True):
        runs = [v for v in configs[name]["closed"]["runs"] if v]
        if runs:
            ax.vlines(bar.get_x() + bar.get_width() / 2, min(runs), max(runs), color="black", lw=1)
        ax.annotate(
            f"{bar.get_height():,.0f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), labels, fontsize=6.5)
    ax.text(
        0.99,
        0.97,
        "* diagnostic: bids not archived",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=6,
    )
    ax.set_title(f"Acknowledged bids/s, {result['bidders']} closed-loop bidders", fontsize=9)
    ax.set_ylabel("bids/s (median; line: min-max)", fontsize=8)

    ax = axes[1]
    quantiles = ["p50", "p99", "p99_9"]
    peers = [
        ("gavel", "Gavel", "#1f77b4"),
        ("gavel_inline_archiver", "Gavel, write-behind inline", "#6baed6"),
        ("gavel_no_write_behind", "Gavel, no write-behind*", "#9ecae1"),
        ("echo", "transport", "#7f7f7f"),
        ("redis_lua", "Redis-Lua", "#d62728"),
    ]
    peers = [peer for peer in peers if "half_peak" in configs.get(peer[0], {})]
    width = 0.8 / len(peers)
    for offset, (name, label, colour) in enumerate(peers):
        half = configs[name]["half_peak"]["ack_ms"]
        ax.bar(
            [i + offset * width for i in range(3)],
            [half.get(q) or 0 for q in quantiles],
            width,
            label=label,
            color=colour,
        )
    ax.axhline(10, color="black", ls="--", lw=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(3)], ["p50", "p99", "p99.9"], fontsize=8)
    ax.set_yscale("log")
    rate = result["ack_ms_at_half_peak"].get("rate") or 0
    ax.set_title(f"Ack latency (ms) at {rate:,.0f} bids/s (half Gavel's peak)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[2]
    broadcast_peers = [
        ("gavel", "Gavel\nframe once"),
        ("gavel_write_message", "Gavel\nwrite_message"),
        ("echo", "transport"),
        ("redis_lua", "Redis-Lua"),
    ]
    for offset, q in enumerate(["p50", "p99"]):
        ax.bar(
            [i + offset * 0.38 for i in range(len(broadcast_peers))],
            [configs[n]["broadcast"]["bcast_ms"][q] or 0 for n, _ in broadcast_peers],
            0.38,
            label=q,
            color=["#9ecae1", "#1f77b4"][offset],
        )
    ax.axhline(100, color="black", ls="--", lw=0.8)
    ax.set_xticks(
        [i + 0.19 for i in range(len(broadcast_peers))], [label for _, label in broadcast_peers], fontsize=7
    )
    ax.set_yscale("log")
    ax.set_title(
        f"Broadcast latency (ms), {result['watchers']:,} watchers, {result['bcast_rate']:g} bids/s",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bidders", type=int, default=100, help="bidders (even; pairs share two lots)")
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--bcast-rate", type=float, default=20.0, help="bids/s during the broadcast run")
    parser.add_argument(
        "--bcast-sweep",
        default="50,100",
        help="higher bid rates (comma-separated) Gavel's broadcast run goes on to ('' for none)",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per throughput phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--bcast-duration", type=float, default=5.0)
    parser.add_argument("--bcast-warmup", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        help="seconds the load client waits after each window for late answers and price frames "
        "(default: loadgen.py's DRAIN_S, 1.5)",
    )
    parser.add_argument(
        "--quiet-sample",
        type=float,
        default=0.3,
        help="seconds of each CPU sample while waiting for the machine to go quiet before and "
        "after a measurement",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round, shorter phases, no sweep (a minute and a half)"
    )
    parser.add_argument(
        "--chart",
        default=None,
        help=f"PNG to write ('' for none; default {DEFAULT_CHART.relative_to(ROOT)}, "
        f"with --quick {QUICK_CHART.relative_to(ROOT)})",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="a line per measurement on stderr")
    args = parser.parse_args()
    if args.chart is None:
        args.chart = str(QUICK_CHART if args.quick else DEFAULT_CHART)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 1.5, 0.5
        args.bcast_duration, args.bcast_warmup, args.bcast_sweep = 2.0, 0.5, ""
    args.bcast_sweep = [float(rate) for rate in args.bcast_sweep.split(",") if rate.strip()]
    if args.bidders < 2 or args.bidders % 2:
        parser.error("--bidders must be even and at least 2")
    started = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="gavel-e2e-", dir=args.dir))
    children: dict[str, Child] = {}
    try:
        with Services.from_env(root / "services", os.environ) as services:
            try:
                children = start_servers([*GAVELS, "echo", "echo_write_message", "redis_lua"], services, root)
                bench = Bench(args, root, services, children)

                async def set_up_all() -> list[dict[str, Any]]:
                    return await asyncio.gather(
                        *(set_up_gavel(children[name].port, args.bidders) for name in GAVELS)
                    )

                for name, setup in zip(GAVELS, asyncio.run(set_up_all()), strict=True):
                    bench.setups[name] = setup
                for number in range(args.runs):
                    bench.round(number)
                result = report(bench, args, started, load_before)
            finally:
                for child in children.values():
                    child.stop()
        if args.chart:
            chart(result, Path(args.chart))
            result["chart"] = args.chart
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
