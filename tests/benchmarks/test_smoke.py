"""The benchmark scripts run end to end with tiny parameters and print the JSON they promise.

No timing is asserted anywhere (the machine is shared and noisy): only that the scripts work and
their output has the expected shape.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_bench_e2e_prints_every_figure_with_tiny_parameters(tmp_path: Path) -> None:
    chart = tmp_path / "e2e.png"
    done = subprocess.run(
        [
            PYTHON,
            "benchmarks/bench_e2e.py",
            *shlex.split("--bidders 2 --watchers 4 --runs 1 --duration 0.3 --warmup 0.1"),
            *shlex.split("--bcast-duration 0.3 --bcast-warmup 0.1 --bcast-rate 10 --bcast-sweep 20"),
            # 17 measurements: the default 1.5 s drain after each broadcast window and 0.3 s CPU
            # samples while waiting for quiet (before each one, after each Gavel one) were ~13 s.
            *shlex.split("--drain 0.3 --quiet-sample 0.1"),
            *("--chart", str(chart), "--dir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = json.loads(done.stdout)
    for key in (
        "acked_bids_per_s",
        "ack_ms",
        "ack_ms_at_half_peak",
        "bcast_ms",
        "bcast_all_watchers_ms",
        "server_cpu_cores",
        "transport_acked_bids_per_s",
        "redis_lua_acked_bids_per_s",
        "ratio_to_transport",
        "ratio_to_redis_lua",
        "asyncio_acked_bids_per_s",
        "ratio_uvloop_to_asyncio",
        "nofsync_acked_bids_per_s",
        "frame_once",
        "targets",
        "configs",
        "bcast_sweep",
    ):
        assert key in result, key
    for quantile in ("p50", "p99", "p99_9"):
        assert quantile in result["ack_ms"] and quantile in result["ack_ms_at_half_peak"]
    assert {"p50", "p99"} <= set(result["bcast_ms"])
    assert result["acked_bids_per_s"] > 0 and result["transport_acked_bids_per_s"] > 0
    assert result["redis_lua_acked_bids_per_s"] > 0
    assert set(result["targets"]) == {
        "ratio_to_transport_ge_0.8",
        "ratio_to_redis_lua_ge_2",
        "ack_p99_le_10ms_at_half_peak",
        "bcast_p99_le_100ms",
    }
    assert set(result["bcast_sweep"]) == {"20"}
    assert set(result["configs"]) >= {"gavel", "gavel_write_message", "echo", "redis_lua"}
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_the_load_client_drives_the_echo_server(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "benchmarks/e2e/echo_server.py", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:
        wait_listening(port, server)
        config = {
            "port": port,
            "session_id": 1,
            "tokens": [None] * 4,
            "lots": [1, 2, 3, 4],
            "next_min": [100] * 4,
            "watchers": 3,
            "pids": {"server": server.pid},
            "drain_s": 0.5,  # not the default 1.5 s per phase: frames take ~1 ms on loopback
            "phases": [
                {"name": "closed", "mode": "closed", "warmup": 0.1, "duration": 0.4},
                {"name": "paced", "mode": "paced", "rate_from": {"phase": "closed", "fraction": 0.5},
                 "warmup": 0.1, "duration": 0.4},
            ],
        }  # fmt: skip
        done = subprocess.run(
            [PYTHON, "benchmarks/e2e/loadgen.py", json.dumps(config)],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        result: dict[str, Any] = json.loads(done.stdout)
    finally:
        stop(server)
    closed, paced = result["phases"]
    assert closed["accepted"] > 0 and not closed["rejected"] and closed["disconnects"] == 0
    assert closed["delivery_ratio"] == 1.0  # every watcher got every price frame
    assert {"p50", "p99", "p99_9", "max", "n"} <= set(closed["ack_ms"])
    assert {"server", "client"} <= set(closed["cpu_cores"])
    assert paced["rate_target"] == pytest.approx(closed["acked_per_s"] / 2, rel=0.01)
    assert paced["send_lag_ms"]["n"] > 0 and paced["bcast_ms"]["n"] > 0


def test_the_locust_scenarios_run_headless_against_run_py(tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        PORT=str(port),
        DATA_DIR=str(tmp_path / "data"),
        ADMIN_PASSWORD="locust-smoke-admin",
        JOURNAL_FSYNC="0",
        LOG_LEVEL="WARNING",
        LOCUST_LOTS="4",
        LOCUST_COURSES="2",
    )
    env.pop("MONGODB_URL", None)
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [PYTHON, "run.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, server, timeout=90)
        done = subprocess.run(
            [
                str(Path(PYTHON).parent / "locust"),
                *("-f", str(ROOT / "benchmarks" / "locustfile.py")),
                *shlex.split("--headless -u 3 -r 3 -t 6s --only-summary"),
                *("--host", f"http://127.0.0.1:{port}"),
                *("--csv", str(tmp_path / "locust"), "--html", str(tmp_path / "locust.html")),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        stop(server)
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-3000:]
    stats = (tmp_path / "locust_stats.csv").read_text()
    assert stats.startswith("Type,Name,Request Count,Failure Count")
    assert "WS,connect" in stats  # the bidder and the watcher subscribed over the websocket
    assert (tmp_path / "locust.html").stat().st_size > 0


def test_app_load_runs_app_users_beside_bidders_and_prints_page_load_p95() -> None:
    done = subprocess.run(
        # 15 s: each app user opens the app (`/`, the modules, `/api/v1/me`) in its on_start, after the
        # shared set-up; 6 s was not always enough for that on a loaded machine.
        [PYTHON, "benchmarks/app_load.py", "--minutes", "0.25", "--users", "4", "--spawn-rate", "4"],
        cwd=ROOT,
        env=dict(os.environ, LOCUST_LOTS="3", LOCUST_COURSES="1"),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()[-3000:]
    result = json.loads(done.stdout)
    assert {"/", "/api/v1/me", "/static/app/* (conditional)"} <= set(result["page_load_p95_ms"])
    assert result["requests"]["WS app connect"]["count"] >= 1  # the app users' socket subscribed
    assert set(result["bid_ack_ms"]) == {"count", "p50_ms", "p95_ms", "p99_ms"}


def test_feed_load_runs_the_feed_beside_bidders_and_prints_each_phase() -> None:
    done = subprocess.run(
        [
            PYTHON,
            "benchmarks/feed_load.py",
            "--minutes",
            # 12 s a phase: each bidder's on_start (sign-up, credit, deposit, connect) must end
            # within the baseline phase for it to bid there, also on a machine busy with the suite
            "0.2",
            "--readers",
            "4",
            "--writers",
            "2",
            "--bidders",
            "2",
        ],
        cwd=ROOT,
        env=dict(os.environ, LOCUST_LOTS="3", LOCUST_COURSES="1"),
        capture_output=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()[-3000:]
    result = json.loads(done.stdout)
    assert set(result["bid_ack_p99_ms"]) == {"baseline", "feed", "after"}
    feed = result["phases"]["feed"]
    assert feed["failures"] == 0, feed
    assert feed["feed_requests"]["GET /api/v1/posts?feed=latest"]["count"] >= 1
    assert result["phases"]["baseline"]["bid_ack_ms"]["count"] >= 1
