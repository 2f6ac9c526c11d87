"""REST read paths against a Tornado hello-world in the same run (issue 25). Prints one JSON object.

Everything runs on 127.0.0.1 and is started here: embedded MongoDB and Redis, Gavel
(`benchmarks/e2e/gavel_server.py`: `run.py`'s `main()`, one process, ROLE=all) and the baseline,
`benchmarks/rest/hello_server.py` (Tornado + uvloop, one process, a small JSON answer). Through
REST first: a catalogue of 20 courses (4 subcategories, one or two price policies each, a course
page each), a session of 50 lots, 100 feed posts, and `--users` registered users whose carts hold
courses. Then, for every path:

- peak: `wrk` (C, one thread, `--connections` keep-alive sockets, closed loop) for `--duration` s
  after `--warmup` s: requests/s, non-2xx answers, CPU of the server (Gavel with MongoDB and
  Redis) and of wrk, and the server side's CPU per answer (`cpu_us_per_request`; `cpu_ratio` is
  hello-world's ÷ the path's: less moved by the other work on the machine than requests/s);
- half peak: `benchmarks/rest/paced.py` (open loop, `--connections` sockets) at half of that
  path's peak of the same round: p50/p99/p99.9 latency from each request's due time.

Paths: `hello` (the baseline), `sessions`, `session` (50 lots with live state), `lot` (the 50 lots
in turn, an anonymous viewer), `courses`, `course` (the 20 in turn), `categories`, `cart_view` and
`cart_add` (signed in, the users in turn; an add puts one of three courses in again, replacing the
choice) and `feed` (the latest posts' first page, anonymous). A round measures every path back to
back (the order rotates between rounds), each path's peak right after a peak of hello-world, and
its ratio is its requests/s ÷ that hello-world's: two loads seconds apart, so the other work on
this shared machine weighs on both sides alike. The figures are the median over `--runs` rounds.

    .venv/bin/python benchmarks/bench_rest.py            # the figures in docs/performance.md
    .venv/bin/python benchmarks/bench_rest.py --quick    # one short round

Needs `wrk` (Debian: `apt-get install -y wrk`); without it the script says so and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_e2e import (  # noqa: E402
    ADMIN_PASSWORD,
    PYTHON,
    Child,
    Rest,
    gavel_env,
    iso,
    peer_env,
    quiesce,
)
from benchmarks.e2e.procstat import cpu_seconds  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

DEFAULT_CHART = ROOT / "docs" / "performance" / "rest.png"
QUICK_CHART = ROOT / "benchmarks" / "out" / "rest-quick.png"  # benchmarks/out/ is not committed
COURSES, LOTS, POSTS = 20, 50, 100
TARGETS = {
    "sessions": 0.7,
    "session": 0.7,
    "lot": 0.7,
    "courses": 0.7,
    "course": 0.7,
    "categories": 0.7,
    "cart_view": 0.5,
    "cart_add": 0.5,
    "feed": 0.5,
}
PATHS = ("hello", *TARGETS)

# wrk prints this object (one line) when it is done; `requests` are answers in the window.
WRK_SCRIPT = """
local requests = {}
local count = 0
init = function(args)
  for i, raw in ipairs(REQUESTS) do
    requests[i] = wrk.format(raw[1], raw[2], raw[3], raw[4])
  end
end
request = function()
  count = count + 1
  return requests[(count % #requests) + 1]
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK{"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_ms":%.3f,"p99_ms":%.3f}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for this text


def wrk_script(requests: list[tuple[str, str, dict[str, str], str | None]]) -> str:
    rows = []
    for method, path, headers, body in requests:
        header_table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        rows.append(
            f"{{{lua_string(method)}, {lua_string(path)}, {{{header_table}}}, "
            f"{'nil' if body is None else lua_string(body)}}}"
        )
    return "REQUESTS = {\n  " + ",\n  ".join(rows) + "\n}\n" + WRK_SCRIPT


def raw_request(method: str, path: str, headers: dict[str, str], body: str | None) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: bench-rest"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    data = body or ""
    if body is not None:
        lines.append(f"Content-Length: {len(data.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + data


# -- set-up through REST -------------------------------------------------------------------------
async def set_up(port: int, users: int) -> dict[str, Any]:
    """The catalogue, the session, the feed and the users, through the public and admin API."""
    rest = Rest(port)
    admin = (
        await rest.call("POST", "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD})
    )["token"]
    subcategories = []
    for top_number in range(2):
        top = await rest.call("POST", "/api/v1/admin/shop/categories", {"name": f"Area {top_number}"}, admin)
        for sub_number in range(2):
            sub = await rest.call(
                "POST",
                "/api/v1/admin/shop/categories",
                {"name": f"Topic {top_number}.{sub_number}", "parent_id": top["id"]},
                admin,
            )
            subcategories.append(sub["id"])
    teacher = await rest.call("POST", "/api/v1/admin/shop/teachers", {"name": "Teacher"}, admin)
    courses: list[tuple[int, int]] = []  # (course id, a policy id)
    for number in range(COURSES):
        course = await rest.call(
            "POST",
            "/api/v1/admin/shop/courses",
            {
                "name": f"Course {number:02d}",
                "sub_category_id": subcategories[number % len(subcategories)],
                "course_type": "paid",
                "brief": "A course of the benchmark's catalogue. " * 4,
                "level": ("beginner", "intermediate", "advanced")[number % 3],
                "order": number,
            },
            admin,
        )
        policy = await rest.call(
            "POST",
            f"/api/v1/admin/shop/courses/{course['id']}/policies",
            {"valid_days": 30, "price": 99_00 + number * 100},
            admin,
        )
        if number % 2:
            await rest.call(
                "POST",
                f"/api/v1/admin/shop/courses/{course['id']}/policies",
                {"valid_days": 365, "price": 299_00 + number * 100},
                admin,
            )
        await rest.call(
            "PUT",
            f"/api/v1/admin/shop/courses/{course['id']}/detail",
            {
                "hours": 10 + number,
                "slogan": "Learn it well",
                "why_study": "Because. " * 20,
                "teacher_ids": [teacher["id"]],
                "recommend_course_ids": [courses[-1][0]] if courses else [],
            },
            admin,
        )
        courses.append((int(course["id"]), int(policy["id"])))
    now = datetime.datetime.now(datetime.UTC)
    session = await rest.call(
        "POST",
        "/api/v1/admin/sessions",
        {
            "title": "Benchmark session",
            "description": "Fifty lots. " * 10,
            "preview_start": iso(now),
            "preview_end": iso(now),
            "bidding_start": iso(now + datetime.timedelta(hours=1)),
            "bidding_end": iso(now + datetime.timedelta(hours=8)),
        },
        admin,
    )
    lots = []
    for number in range(LOTS):
        lot = await rest.call(
            "POST",
            f"/api/v1/admin/sessions/{session['id']}/lots",
            {
                "catalogue_no": f"L{number:03d}",
                "title": f"Lot {number}",
                "description": "An object of the benchmark. " * 5,
                "start_price": 100_00,
                "unit": 1_00,
                "specs": [{"key": "size", "value": "30 x 40 cm"}],
            },
            admin,
        )
        lots.append(int(lot["id"]))
    gate = asyncio.Semaphore(4)

    async def user(number: int) -> tuple[str, int]:
        async with gate:
            answer = await rest.call(
                "POST",
                "/api/v1/auth/register",
                {"username": f"rest{number:04d}", "password": "bench-password"},
            )
            token = str(answer["token"])
            for course_id, policy_id in courses[:3]:
                await rest.call(
                    "POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy_id}, token
                )
            return token, int(answer["user_id"])

    accounts = await asyncio.gather(*(user(n) for n in range(users)))
    tokens = [token for token, _ in accounts]
    for number in range(POSTS):
        await rest.call(
            "POST",
            "/api/v1/posts",
            {"text": f"Post {number}: what I saw at the auction today."},
            tokens[number % 5],
        )
    rest.http.close()
    return {"session_id": int(session["id"]), "lots": lots, "courses": courses, "tokens": tokens}


def path_requests(path: str, setup: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str | None]]:
    """The requests a path's load sends, in turn."""
    tokens = setup["tokens"]
    courses = setup["courses"]
    if path == "hello":
        return [("GET", "/", {}, None)]
    if path == "sessions":
        return [("GET", "/api/v1/sessions", {}, None)]
    if path == "session":
        return [("GET", f"/api/v1/sessions/{setup['session_id']}", {}, None)]
    if path == "lot":
        return [("GET", f"/api/v1/lots/{lot}", {}, None) for lot in setup["lots"]]
    if path == "courses":
        return [("GET", "/api/v1/courses", {}, None)]
    if path == "course":
        return [("GET", f"/api/v1/courses/{course_id}", {}, None) for course_id, _ in courses]
    if path == "categories":
        return [("GET", "/api/v1/shop/categories", {}, None)]
    if path == "cart_view":
        return [("GET", "/api/v1/cart", {"Authorization": f"Bearer {t}"}, None) for t in tokens]
    if path == "cart_add":
        return [
            (
                "POST",
                "/api/v1/cart",
                {"Authorization": f"Bearer {t}", "Content-Type": "application/json"},
                json.dumps({"course_id": courses[n % 3][0], "price_policy_id": courses[n % 3][1]}),
            )
            for n, t in enumerate(tokens)
        ]
    if path == "feed":
        return [("GET", "/api/v1/posts?feed=latest", {}, None)]
    raise ValueError(path)


# -- measuring -----------------------------------------------------------------------------------
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak(port: int, script: Path, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    """wrk closed loop: a warm-up run (not counted), then the measured run with CPU around it."""
    base = ["wrk", "-t1", f"-c{args.connections}", "--timeout", "10s", "-s", str(script)]
    url = f"http://127.0.0.1:{port}"
    subprocess.run([*base, f"-d{args.warmup}s", url], capture_output=True, check=True, timeout=120)
    cpu_before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    client_before = children_cpu()
    done = subprocess.run(
        [*base, f"-d{args.duration}s", url], capture_output=True, check=True, timeout=args.duration + 60
    )
    client = children_cpu() - client_before
    cpu_after = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    line = next(x for x in done.stdout.decode().splitlines() if x.startswith("WRK"))
    figures: dict[str, Any] = json.loads(line[3:])
    seconds = figures["duration_us"] / 1e6
    figures["rps"] = round(figures["requests"] / seconds, 1)
    figures["cores"] = {name: round((cpu_after[name] - cpu_before[name]) / seconds, 3) for name in pids}
    figures["cores"]["client_wrk"] = round(client / seconds, 3)
    return figures


def paced(port: int, requests: list[str], rate: float, args: argparse.Namespace) -> dict[str, Any]:
    config = {
        "port": port,
        "requests": requests,
        "rate": rate,
        "duration": args.duration,
        "warmup": args.warmup,
        "connections": args.connections,
    }
    done = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "rest" / "paced.py"), "-"],
        input=json.dumps(config).encode(),
        capture_output=True,
        timeout=args.duration + args.warmup + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"paced client failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def measure_round(
    number: int,
    args: argparse.Namespace,
    ports: dict[str, int],
    setup: dict[str, Any],
    pids: dict[str, dict[str, int]],
    work: Path,
) -> dict[str, Any]:
    order = list(PATHS[number % len(PATHS) :] + PATHS[: number % len(PATHS)])
    results: dict[str, Any] = {}
    hello_script = work / "hello.lua"
    hello_script.write_text(wrk_script(path_requests("hello", setup)))
    for path in order:
        server = "hello" if path == "hello" else "gavel"
        requests = path_requests(path, setup)
        script = work / f"{path}.lua"
        script.write_text(wrk_script(requests))
        paired = None
        if path != "hello":
            # Hello-world again just before: the ratio pairs two loads seconds apart, so the other
            # work on this shared machine weighs on both alike.
            quiesce(list(pids["hello"].values()), sample=0.2, timeout=10)
            paired = peak(ports["hello"], hello_script, args, pids["hello"])
        quiesce(list(pids[server].values()), sample=0.2, timeout=10)
        top = peak(ports[server], script, args, pids[server])
        half = paced(ports[server], [raw_request(*r) for r in requests], max(1.0, top["rps"] / 2), args)
        results[path] = {"peak": top, "half_peak": half, "hello_before": paired}
        if args.verbose:
            print(
                f"round {number} {path}: {top['rps']} req/s (non-2xx {top['non_2xx']}), "
                f"half p50 {half['p50_ms']} p99 {half['p99_ms']} ms",
                file=sys.stderr,
            )
    return results


def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def cpu_us_per_request(figures: dict[str, Any]) -> float | None:
    """CPU of the server side (Gavel with its MongoDB and Redis; hello-world alone) per answer."""
    used = sum(cores for name, cores in figures["cores"].items() if name != "client_wrk")
    return round(used / figures["rps"] * 1e6, 1) if figures["rps"] else None


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, started: float) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path in PATHS:
        runs = [r[path] for r in rounds]
        hellos = [r[path]["hello_before"] or r["hello"]["peak"] for r in rounds]
        cpu = [cpu_us_per_request(run["peak"]) for run in runs]
        hello_cpu = [cpu_us_per_request(hello) for hello in hellos]
        ratios = [
            round(r[path]["peak"]["rps"] / (r[path]["hello_before"] or r["hello"]["peak"])["rps"], 3)
            for r in rounds
        ]
        entry: dict[str, Any] = {
            "rps_runs": [r["peak"]["rps"] for r in runs],
            "rps": med([r["peak"]["rps"] for r in runs]),
            "hello_before_rps_runs": [(r["hello_before"] or {}).get("rps") for r in runs],
            "ratio_runs": ratios,
            "ratio": med(list(ratios)),
            "non_2xx": sum(r["peak"]["non_2xx"] + r["half_peak"]["non_2xx"] for r in runs),
            "socket_errors": sum(
                r["peak"]["connect_errors"] + r["peak"]["read_errors"] + r["peak"]["timeouts"] for r in runs
            ),
            "half_peak_rate": med([r["half_peak"]["rate_asked"] for r in runs]),
            "half_peak_p50_ms_runs": [r["half_peak"]["p50_ms"] for r in runs],
            "half_peak_p99_ms_runs": [r["half_peak"]["p99_ms"] for r in runs],
            "half_peak_p50_ms": med([r["half_peak"]["p50_ms"] for r in runs]),
            "half_peak_p99_ms": med([r["half_peak"]["p99_ms"] for r in runs]),
            "half_peak_p999_ms": med([r["half_peak"]["p999_ms"] for r in runs]),
            "peak_p99_ms": med([r["peak"]["p99_ms"] for r in runs]),
            "cores": {
                name: med([r["peak"]["cores"].get(name) for r in runs]) for name in runs[0]["peak"]["cores"]
            },
            "paced_client_cores": med([r["half_peak"]["client_cores"] for r in runs]),
            # Less moved by the neighbours than req/s: what one answer costs the server side, and
            # hello-world's cost ÷ this path's (the req/s ratio both would have on the same CPU).
            "cpu_us_per_request_runs": cpu,
            "cpu_us_per_request": med(list(cpu)),
            "cpu_ratio_runs": [
                round(h / c, 3) if h and c else None for h, c in zip(hello_cpu, cpu, strict=True)
            ],
        }
        entry["cpu_ratio"] = med(entry["cpu_ratio_runs"])
        if path in TARGETS:
            entry["target"] = TARGETS[path]
            entry["met"] = entry["ratio"] is not None and entry["ratio"] >= TARGETS[path]
        paths[path] = entry
    return {
        "benchmark": "rest",
        "date": datetime.date.today().isoformat(),
        "runs": len(rounds),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "users": args.users,
        "catalogue": {"courses": COURSES, "lots": LOTS, "posts": POSTS},
        "load_average": os.getloadavg(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "paths": paths,
        "all_met": all(paths[p]["met"] for p in TARGETS),
    }


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = result["paths"]
    names = list(PATHS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), dpi=90)
    ratios = [paths[n]["ratio"] or 0 for n in names]
    colours = [
        "#888888" if n == "hello" else ("#2a9d8f" if paths[n].get("met") else "#e76f51") for n in names
    ]
    bars = left.bar(names, ratios, color=colours)
    for name, bar in zip(names, bars, strict=True):
        left.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{paths[name]['rps']:.0f}/s",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    cpu_ratios = [paths[n].get("cpu_ratio") for n in names]
    left.scatter(
        [i for i, r in enumerate(cpu_ratios) if r is not None],
        [r for r in cpu_ratios if r is not None],
        marker="D",
        color="#1d3557",
        zorder=3,
        label="CPU per answer: hello ÷ path",
    )
    left.axhline(0.7, color="#264653", linestyle="--", linewidth=1, label="0.7× (catalogue, courses)")
    left.axhline(0.5, color="#e9c46a", linestyle="--", linewidth=1, label="0.5× (cart, feed)")
    left.set_ylabel("requests/s ÷ hello-world's (median of rounds)")
    left.set_title("Peak throughput against Tornado hello-world")
    left.tick_params(axis="x", rotation=45)
    left.legend(fontsize=7)
    p50 = [paths[n]["half_peak_p50_ms"] or 0 for n in names]
    p99 = [paths[n]["half_peak_p99_ms"] or 0 for n in names]
    x = range(len(names))
    right.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#8ab17d")
    right.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#264653")
    right.set_xticks(list(x), names, rotation=45)
    right.set_yscale("log")
    right.set_ylabel("ms (log scale)")
    right.set_title("Latency at half of each path's peak (paced)")
    right.legend(fontsize=7)
    fig.suptitle(
        f"REST paths, {result['runs']} round(s), {result['connections']} connections, "
        f"{result['date']} (this machine: 2 shared cores)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds measured per path and load")
    parser.add_argument("--warmup", type=int, default=1, help="seconds (wrk takes whole seconds)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=20, help="signed-in users for the cart paths")
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--quick", action="store_true", help="one round of short loads")
    parser.add_argument(
        "--chart",
        default=None,
        help=f"PNG to write ('' for none; default {DEFAULT_CHART.relative_to(ROOT)}, "
        f"with --quick {QUICK_CHART.relative_to(ROOT)})",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="a line per measurement on stderr")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_rest: needs wrk (Debian: apt-get install -y wrk); not measured", file=sys.stderr)
        print(json.dumps({"benchmark": "rest", "skipped": "wrk is not installed"}))
        return
    if args.chart is None:
        args.chart = str(QUICK_CHART if args.quick else DEFAULT_CHART)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 2, 1
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="gavel-rest-", dir=args.dir))
    children: dict[str, Child] = {}
    try:
        with Services.from_env(root / "services", os.environ) as services:
            try:
                ports = {"gavel": free_port(), "hello": free_port()}
                while ports["hello"] == ports["gavel"]:
                    ports["hello"] = free_port()
                env = gavel_env(
                    services.mongo_url,
                    services.redis_url,
                    f"bench_rest_{os.getpid()}",
                    PORT=str(ports["gavel"]),
                    DATA_DIR=str(root / "gavel"),
                    COMMUNITY_RATE_LIMITS="0",
                )
                logs = root / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                children["gavel"] = Child(
                    "gavel",
                    [PYTHON, str(ROOT / "benchmarks" / "e2e" / "gavel_server.py")],
                    env,
                    logs,
                    ports["gavel"],
                )
                children["hello"] = Child(
                    "hello",
                    [PYTHON, str(ROOT / "benchmarks" / "rest" / "hello_server.py"), str(ports["hello"])],
                    peer_env(),
                    logs,
                    ports["hello"],
                )
                for child in children.values():
                    child.wait_listening()
                setup = asyncio.run(set_up(ports["gavel"], args.users))
                embedded = {server.name: server.pid for server in services.embedded}
                pids = {
                    "gavel": {"server": children["gavel"].pid, **embedded},
                    "hello": {"server": children["hello"].pid},
                }
                rounds = [measure_round(n, args, ports, setup, pids, root) for n in range(args.runs)]
                result = report(rounds, args, started)
                result["rounds"] = rounds
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
