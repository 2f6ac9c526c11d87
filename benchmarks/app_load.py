"""App users beside bidders: `run.py` on a fresh data directory, then locust headless with the
`Bidder` and `AppUser` scenarios (benchmarks/locustfile.py) for a set time; prints one JSON object:
the p95 of every page load the app makes (per request name), the bids' acknowledgement p50/p95/p99,
the request counts and failures.

    .venv/bin/python benchmarks/app_load.py --minutes 2 --users 40     # or: make app-load MINUTES=2

`--host URL` runs against a server already running (ADMIN_PASSWORD must be its admin password, and
it must allow that many registrations from one address: REGISTRATIONS_PER_ADDRESS).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
ADMIN_PASSWORD = "app-load-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("run.py exited before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def start_server(data_dir: pathlib.Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        env,
        PORT=str(port),
        DATA_DIR=str(data_dir),
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        REGISTRATIONS_PER_ADDRESS="1000000",
        LOG_LEVEL="WARNING",
    )
    env.pop("MONGODB_URL", None)  # the embedded servers, in the data directory
    env.pop("REDIS_URL", None)
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
    wait_listening(port, process)
    return process, f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def summarise(stats_csv: pathlib.Path) -> dict[str, Any]:
    rows = list(csv.DictReader(stats_csv.open()))
    requests = {
        f"{row['Type']} {row['Name']}".strip(): {
            "count": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "p50_ms": number(row["50%"]),
            "p95_ms": number(row["95%"]),
            "p99_ms": number(row["99%"]),
        }
        for row in rows
    }
    page_loads = {
        name.split(" ", 1)[1]: figures["p95_ms"]
        for name, figures in requests.items()
        if name.startswith("GET ") and figures["count"]
    }
    acks = requests.get("WS bid accepted", {})
    return {
        "page_load_p95_ms": page_loads,
        "bid_ack_ms": {key: acks.get(key) for key in ("count", "p50_ms", "p95_ms", "p99_ms")},
        "app_frame_p95_ms": requests.get("WS app frame", {}).get("p95_ms"),
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=40, help="bidders and app users together (5 : 4)")
    parser.add_argument("--spawn-rate", type=float, default=5.0)
    parser.add_argument("--host", help="a running server (default: start run.py on a fresh data dir)")
    parser.add_argument("--keep", type=pathlib.Path, help="write locust's CSV and HTML reports here")
    parser.add_argument(
        "--scenarios",
        default="Bidder,AppUser",
        help="locust user classes, comma-separated (e.g. Bidder,AppUser,Student; benchmarks/locustfile.py)",
    )
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="gavel-app-load-"))
    env = dict(os.environ, LOCUST_LOTS=os.environ.get("LOCUST_LOTS", "20"))
    server = None
    try:
        if args.host:
            host = args.host
        else:
            (work / "data").mkdir()
            server, host = start_server(work / "data", env)
            env["ADMIN_PASSWORD"] = ADMIN_PASSWORD
        seconds = max(1, round(args.minutes * 60))
        done = subprocess.run(
            [
                str(BIN / "locust"),
                *("-f", str(ROOT / "benchmarks" / "locustfile.py")),
                *("--headless", "--only-summary", "-u", str(args.users), "-r", str(args.spawn_rate)),
                *("-t", f"{seconds}s", "--host", host, "--csv", str(work / "locust")),
                *("--html", str(work / "locust.html")),
                *args.scenarios.split(","),
            ],
            cwd=work,
            env=env,
            capture_output=True,
            timeout=seconds + 300,
            check=False,
        )
        if not (work / "locust_stats.csv").exists():
            sys.stderr.write(done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:])
            raise SystemExit("locust wrote no statistics")
        result = {
            "minutes": args.minutes,
            "users": args.users,
            "scenarios": args.scenarios.split(","),
            "locust_exit": done.returncode,
            **summarise(work / "locust_stats.csv"),
        }
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in work.glob("locust*"):
                shutil.copy(path, args.keep / path.name)
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
