"""Every locust scenario at once (issue 25, "Proof"): `run.py` on a fresh data directory, then locust
headless against it in two phases:

1. `alone`: the bidders alone (`Bidder` only, as many as the mixed run gives them by weight) for
   `--baseline-minutes`: the bids' acknowledgement p99 with nothing else running;
2. `all`: every user class of benchmarks/locustfile.py by its weight (Bidder 5, Watcher 3, Shopper
   2, AppUser 4, Student 3, FeedReader 4, FeedWriter 1) for `--minutes`, `--users` in all.

Nothing is reset after spawning (a failure while users sign up counts like any other). Prints one
JSON object: per request name count / failures / p50 / p95 / p99 and requests/s, per scenario (user
class, from the request events each user tags with its class) the same, the total failures, the
bids' ack p50/p95/p99 in each phase and `ack_p99_ratio` = all ÷ alone, the CPU (cores) of the
server, its write-behind, MongoDB, Redis and locust over the mixed phase, the server's RSS at the
start and end of it, and the machine's load average. Exits 1 on any failure or a locust error.

    .venv/bin/python benchmarks/load_all.py                          # 10 minutes, 66 users
    .venv/bin/python benchmarks/load_all.py --minutes 1 --baseline-minutes 0.5 --chart none

`--host URL` runs against a server already running instead (it must allow REGISTRATIONS_PER_ADDRESS
and MAX_CONNECTIONS_PER_IP for every user from one address, run with COMMUNITY_RATE_LIMITS=0, and
ADMIN_PASSWORD must be its admin password); CPU and RSS are then not measured.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.app_load import ADMIN_PASSWORD, BIN, ROOT, start_server, stop, summarise
from benchmarks.e2e.procstat import cpu_seconds

SCENARIOS = ["Bidder", "Watcher", "Shopper", "AppUser", "Student", "FeedReader", "FeedWriter"]
WEIGHTS = {
    "Bidder": 5,
    "Watcher": 3,
    "Shopper": 2,
    "AppUser": 4,
    "Student": 3,
    "FeedReader": 4,
    "FeedWriter": 1,
}
# What the server runs beside itself, told apart by command line (run.py starts the embedded servers).
HELPERS = {"archiver": b"archive_process", "mongodb": b"secantus", "redis": b"redis-server"}
SAMPLE_EVERY_S = 5.0


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (all threads' children), depth first."""
    found: list[int] = []
    try:
        tasks = [path.name for path in pathlib.Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return found
    for task in tasks:
        try:
            text = pathlib.Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        for child in map(int, text.split()):
            found += [child, *children(child)]
    return found


def labelled(server_pid: int) -> dict[str, list[int]]:
    """The server's process and its helpers by role; anything unrecognised counts as `other`."""
    roles: dict[str, list[int]] = {"server": [server_pid]}
    for pid in children(server_pid):
        try:
            command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().lower()
        except OSError:
            continue
        role = next((name for name, mark in HELPERS.items() if mark in command), "other")
        roles.setdefault(role, []).append(pid)
    return roles


def rss_mb(pid: int) -> float | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """CPU seconds of each role and the server's RSS every few seconds while a phase runs."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        super().__init__(daemon=True)
        self.roles = roles
        self.stopped = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.last_cpu: dict[int, float] = {}  # a process that has exited keeps its last figure

    def cpu(self, pid: int) -> float:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            self.last_cpu[pid] = seconds
        return self.last_cpu.get(pid, 0.0)

    def take(self) -> dict[str, Any]:
        cpu = {role: sum(self.cpu(pid) for pid in pids) for role, pids in self.roles.items()}
        return {
            "t": time.monotonic(),
            "cpu": cpu,
            "rss_mb": rss_mb(self.roles["server"][0]) if "server" in self.roles else None,
            "load": os.getloadavg(),
        }

    def run(self) -> None:
        self.samples.append(self.take())
        while not self.stopped.wait(SAMPLE_EVERY_S):
            self.samples.append(self.take())

    def finish(self) -> dict[str, Any]:
        self.stopped.set()
        self.join()
        self.samples.append(self.take())
        first, last = self.samples[0], self.samples[-1]
        seconds = last["t"] - first["t"]
        timeline = [
            {
                "t": round(later["t"] - first["t"], 1),
                **{
                    role: round((later["cpu"][role] - earlier["cpu"][role]) / (later["t"] - earlier["t"]), 2)
                    for role in first["cpu"]
                },
                "load_1m": round(later["load"][0], 2),
            }
            for earlier, later in zip(self.samples, self.samples[1:], strict=False)
            if later["t"] > earlier["t"]
        ]
        return {
            "cpu_timeline": timeline,
            "cpu_cores": {
                role: round((last["cpu"][role] - first["cpu"][role]) / seconds, 3)
                for role in first["cpu"]
                if seconds > 0
            },
            "server_rss_mb": {
                "start": first["rss_mb"],
                "end": last["rss_mb"],
                "peak": max((s["rss_mb"] or 0.0) for s in self.samples) or None,
            },
            "load_average_1m": {
                "start": round(first["load"][0], 2),
                "end": round(last["load"][0], 2),
                "max": round(max(s["load"][0] for s in self.samples), 2),
            },
        }


def locust_pids(process: subprocess.Popen[bytes]) -> list[int]:
    return [process.pid, *children(process.pid)]


def percentile(times: dict[int, int], fraction: float) -> float | None:
    """locust.stats.calculate_response_time_percentile's rule (importing locust here would
    monkey-patch this process with gevent): the largest kept response time such that at most
    `fraction` of the requests took less."""
    total = sum(times.values())
    if not total:
        return None
    allowed_below = int(total * fraction)
    above = 0
    for milliseconds in sorted(times, reverse=True):
        above += times[milliseconds]
        if total - above <= allowed_below:
            return float(milliseconds)
    return 0.0


def merge_scenarios(directory: pathlib.Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The per-process files of locustfile.ScenarioStats, merged: scenario -> request -> figures."""
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(directory.glob("scenarios-*.json")):
        for scenario, requests in json.loads(path.read_text()).items():
            for name, entry in requests.items():
                into = merged.setdefault(scenario, {}).setdefault(
                    name, {"count": 0, "failures": 0, "times": {}}
                )
                into["count"] += entry["count"]
                into["failures"] += entry["failures"]
                for milliseconds, n in entry["times"].items():
                    key = int(milliseconds)
                    into["times"][key] = into["times"].get(key, 0) + n
    return merged


def figures(count: int, failures: int, times: dict[int, int], seconds: float) -> dict[str, Any]:
    return {
        "count": count,
        "failures": failures,
        "rps": round(count / seconds, 2),
        "p50_ms": percentile(times, 0.50),
        "p95_ms": percentile(times, 0.95),
        "p99_ms": percentile(times, 0.99),
    }


def by_scenario(merged: dict[str, dict[str, dict[str, Any]]], seconds: float) -> dict[str, Any]:
    """Per scenario: every request together (sockets' frame delays apart from page and API calls,
    whose p95 means something else), and each request of it."""
    result: dict[str, Any] = {}
    for scenario in sorted(merged):
        requests = merged[scenario]
        http = {n: e for n, e in requests.items() if not n.startswith("WS ")}
        sockets = {n: e for n, e in requests.items() if n.startswith("WS ")}
        groups: dict[str, Any] = {}
        for label, group in (("http", http), ("ws", sockets)):
            if not group:
                continue
            times: dict[int, int] = {}
            for entry in group.values():
                for milliseconds, n in entry["times"].items():
                    times[milliseconds] = times.get(milliseconds, 0) + n
            groups[label] = figures(
                sum(e["count"] for e in group.values()),
                sum(e["failures"] for e in group.values()),
                times,
                seconds,
            )
        result[scenario] = {
            **groups,
            "requests": {
                name: figures(entry["count"], entry["failures"], entry["times"], seconds)
                for name, entry in sorted(requests.items())
            },
        }
    return result


def history(path: pathlib.Path) -> list[dict[str, float]]:
    """Locust's aggregated requests/s and failures/s over time (its --csv-full-history rows)."""
    if not path.exists():
        return []
    rows = []
    start = None
    for row in csv.DictReader(path.open()):
        if row["Name"] != "Aggregated":
            continue
        stamp = int(row["Timestamp"])
        start = stamp if start is None else start
        rows.append(
            {
                "t": stamp - start,
                "users": int(row["User Count"]),
                "rps": float(row["Requests/s"]),
                "failures_per_s": float(row["Failures/s"]),
            }
        )
    return rows


def spawned(log: pathlib.Path) -> dict[str, int] | None:
    """How many users of each class locust started (its "All users spawned: {...}" line)."""
    for line in log.read_text(errors="replace").splitlines():
        if "All users spawned: " in line:
            counts = line.split("All users spawned: ", 1)[1].rsplit(" (", 1)[0]
            return {str(k): int(v) for k, v in json.loads(counts).items()}
    return None


def run_phase(
    name: str,
    host: str,
    work: pathlib.Path,
    env: dict[str, str],
    users: int,
    spawn_rate: float,
    classes: list[str],
    seconds: int,
    processes: int,
    roles: dict[str, list[int]] | None,
) -> dict[str, Any]:
    prefix = work / name
    scenario_dir = work / f"{name}-scenarios"
    scenario_dir.mkdir()
    command = [
        str(BIN / "locust"),
        *("-f", str(ROOT / "benchmarks" / "locustfile.py")),
        *("--headless", "--only-summary", "-u", str(users), "-r", str(spawn_rate)),
        *("-t", f"{seconds}s", "--stop-timeout", "15", "--host", host),
        *("--csv", str(prefix), "--csv-full-history"),
        *(("--processes", str(processes)) if processes > 1 else ()),
        *classes,
    ]
    with (work / f"{name}-locust.log").open("wb") as log:
        process = subprocess.Popen(
            command, cwd=work, env=dict(env, LOCUST_SCENARIO_STATS=str(scenario_dir)), stdout=log, stderr=log
        )
        # Locust's workers (with --processes) start within a second or two: sampled once they are up.
        time.sleep(3)
        sampler = Sampler(dict(roles or {}, locust=locust_pids(process)))
        sampler.start()
        try:
            returncode = process.wait(timeout=seconds + 600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            measured = sampler.finish()
    stats = pathlib.Path(f"{prefix}_stats.csv")
    if not stats.exists():
        sys.stderr.write((work / f"{name}-locust.log").read_text()[-3000:])
        raise SystemExit(f"locust wrote no statistics for {name}")
    summary = summarise(stats)
    requests = {
        key: {**entry, "rps": round(entry["count"] / seconds, 2)}
        for key, entry in summary["requests"].items()
        if key != "Aggregated"
    }
    errors: list[dict[str, Any]] = []
    failures_csv = pathlib.Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        errors = [
            {
                "request": f"{row['Method']} {row['Name']}",
                "error": row["Error"],
                "occurrences": int(row["Occurrences"]),
            }
            for row in csv.DictReader(failures_csv.open())
        ]
    # An exception in a user's own code (its sign-up in on_start, a set-up call) is no request
    # failure to locust: it is only listed in the exceptions CSV, and the user stops. Counted here.
    exceptions: list[dict[str, Any]] = []
    exceptions_csv = pathlib.Path(f"{prefix}_exceptions.csv")
    if exceptions_csv.exists():
        exceptions = [
            {"message": row["Message"][:300], "occurrences": int(row["Count"])}
            for row in csv.DictReader(exceptions_csv.open())
        ]
    scenarios = by_scenario(merge_scenarios(scenario_dir), seconds)
    timeline = history(pathlib.Path(f"{prefix}_stats_history.csv"))
    return {
        "users": users,
        "users_per_scenario": spawned(work / f"{name}-locust.log"),
        "classes": classes,
        "seconds": seconds,
        "locust_exit": returncode,
        "users_running_at_end": timeline[-1]["users"] if timeline else None,
        "failures": sum(entry["failures"] for entry in requests.values())
        + sum(entry["occurrences"] for entry in exceptions),
        "request_failures": sum(entry["failures"] for entry in requests.values()),
        "errors": errors,
        "exceptions": exceptions,
        "bid_ack_ms": summary["bid_ack_ms"],
        "scenarios": scenarios,
        "requests": requests,
        "history": timeline,
        **measured,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def chart(result: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    together = result["phases"]["all"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), dpi=90, gridspec_kw={"width_ratios": [1.2, 1]})
    labels, values, colours = [], [], []
    for scenario in SCENARIOS:
        for kind, colour in (("http", "tab:blue"), ("ws", "tab:orange")):
            entry = together["scenarios"].get(scenario, {}).get(kind)
            if entry and entry["p95_ms"] is not None:
                labels.append(f"{scenario}\n{'REST' if kind == 'http' else 'socket'}")
                values.append(entry["p95_ms"])
                colours.append(colour)
    bars = left.bar(range(len(values)), values, color=colours)
    left.bar_label(bars, labels=[f"{v:g}" for v in values], fontsize=8)
    left.set_xticks(range(len(labels)), labels, fontsize=7.5)
    left.set_ylabel("p95, ms")
    alone = result["bid_ack_p99_ms"]
    load = together["load_average_1m"]
    left.set_title(
        f"p95 per scenario, {together['users']} users, {result['minutes']} min, "
        f"{together['failures']} failures\n"
        f"bids' ack p99 {alone['all']} ms together, {alone['alone']} ms alone; "
        f"load average {load['start']}-{load['max']} on 2 cores",
        fontsize=10,
    )
    points = together["history"]
    right.plot(
        [p["t"] / 60 for p in points], [p["rps"] for p in points], label="requests/s", color="tab:blue"
    )
    right.plot(
        [p["t"] / 60 for p in points],
        [p["failures_per_s"] for p in points],
        label="failures/s",
        color="tab:red",
    )
    users = right.twinx()
    users.plot([p["t"] / 60 for p in points], [p["users"] for p in points], color="grey", linestyle=":")
    users.set_ylabel("users running (dotted)", color="grey")
    right.set_xlabel("minutes")
    right.set_ylabel("per second")
    right.set_title("all scenarios: locust's request events/s (REST, bid answers, frames)", fontsize=10)
    right.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="the phase with every scenario")
    parser.add_argument("--baseline-minutes", type=float, default=2.0, help="the bidders alone first")
    parser.add_argument("--users", type=int, default=66, help="all scenarios together, spread by weight")
    parser.add_argument("--spawn-rate", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1, help="locust processes (--processes)")
    parser.add_argument("--host", help="a running server (default: start run.py on a fresh data dir)")
    parser.add_argument(
        "--chart",
        default=str(ROOT / "docs" / "performance" / "load_all.png"),
        help="where the PNG goes ('none': no chart)",
    )
    parser.add_argument("--keep", type=pathlib.Path, help="copy locust's CSV files and logs here")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="gavel-load-all-"))
    env = dict(
        os.environ,
        LOCUST_LOTS=os.environ.get("LOCUST_LOTS", "20"),
        LOCUST_COURSES=os.environ.get("LOCUST_COURSES", "10"),
    )
    env.pop("FEED_READERS", None)  # every class by its weight
    env.pop("FEED_WRITERS", None)
    server = None
    roles = None
    bidders = max(1, round(args.users * WEIGHTS["Bidder"] / sum(WEIGHTS.values())))
    try:
        if args.host:
            host = args.host
        else:
            (work / "data").mkdir()
            server, host = start_server(
                work / "data",
                # Every simulated user comes from 127.0.0.1: its sockets and HTTP connections
                # together far exceed one address's default cap; the feed writers like faster
                # than a person may.
                dict(env, MAX_CONNECTIONS_PER_IP="100000", COMMUNITY_RATE_LIMITS="0"),
            )
            env["ADMIN_PASSWORD"] = ADMIN_PASSWORD
            roles = labelled(server.pid)
        started = datetime.datetime.now(datetime.UTC)
        alone = run_phase(
            "alone",
            host,
            work,
            env,
            bidders,
            args.spawn_rate,
            ["Bidder"],
            max(5, round(args.baseline_minutes * 60)),
            1,
            roles,
        )
        together = run_phase(
            "all",
            host,
            work,
            env,
            args.users,
            args.spawn_rate,
            SCENARIOS,
            max(5, round(args.minutes * 60)),
            args.processes,
            roles,
        )
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in work.iterdir():
                if path.is_file():
                    shutil.copy(path, args.keep / path.name)
            if (work / "data" / "server.log").exists():
                shutil.copy(work / "data" / "server.log", args.keep / "server.log")
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)
    p99 = {"alone": alone["bid_ack_ms"].get("p99_ms"), "all": together["bid_ack_ms"].get("p99_ms")}
    failures = alone["failures"] + together["failures"]
    result = {
        "date": started.date().isoformat(),
        "minutes": args.minutes,
        "baseline_minutes": args.baseline_minutes,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "locust_processes": args.processes,
        "failures": failures,
        "bid_ack_p99_ms": p99,
        "ack_p99_ratio": ratio(p99["all"], p99["alone"]),
        "p95_ms_per_scenario": {
            scenario: {kind: entry[kind]["p95_ms"] for kind in ("http", "ws") if kind in entry}
            for scenario, entry in together["scenarios"].items()
        },
        # The load: page and API requests/s, and socket events/s (bid answers, frames received).
        "rps_per_scenario": {
            scenario: {kind: entry[kind]["rps"] for kind in ("http", "ws") if kind in entry}
            for scenario, entry in together["scenarios"].items()
        },
        "users_per_scenario": together["users_per_scenario"],
        "phases": {"alone": alone, "all": together},
    }
    if args.chart != "none":
        chart(result, pathlib.Path(args.chart))
        result["chart"] = args.chart
    print(json.dumps(result, indent=2))
    if failures or alone["locust_exit"] or together["locust_exit"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
