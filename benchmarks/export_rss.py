"""A streamed CSV export's memory: the server's RSS while it exports N ledger rows, against building
the same CSV in memory. Prints one JSON object.

    .venv/bin/python benchmarks/export_rss.py [ROWS]        # default 100000; ~3 min on 2 cores

It starts embedded MongoDB and Redis (persistence/embedded.py), bulk-inserts ROWS ledger entries
(and 1,000 users), starts `run.py` on them as a child process, signs in to the back office and
downloads `/admin/exports/ledgers.csv` while a thread samples the child's VmRSS every 10 ms. The
baseline is a fresh Python process that reads the same documents into a list and builds the whole
CSV with the same row function (what an export that is not streamed does), reporting its own RSS.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import requests
from pymongo import MongoClient

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.app_load import ADMIN_PASSWORD, free_port, stop, wait_listening
from persistence.embedded import Services

ROOT = pathlib.Path(__file__).resolve().parent.parent
DB_NAME = "gavel_export_rss"
USERS = 1_000
INSERT_BATCH = 10_000
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
MIB = 2**20


def rss(pid: int) -> int:
    """VmRSS of `pid` in bytes (0 once it is gone)."""
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    found = re.search(r"^VmRSS:\s+([0-9]+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else 0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.01)


def insert_rows(url: str, rows: int) -> float:
    started = time.perf_counter()
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    db = client[DB_NAME]
    db.users.insert_many(
        [{"_id": 10_000 + u, "username": f"load{u}", "username_key": f"load{u}"} for u in range(USERS)]
    )
    for start in range(0, rows, INSERT_BATCH):
        db.ledger.insert_many(
            [
                {
                    "user_id": 10_000 + n % USERS,
                    "kind": "load_test",
                    "amount": (n * 7919) % 200_001 - 100_000,
                    "balance_after": n,
                    "ref": f"load-{n}",
                    "at": T0 + datetime.timedelta(seconds=n),
                }
                for n in range(start, min(rows, start + INSERT_BATCH))
            ],
            ordered=False,
        )
    client.close()
    return time.perf_counter() - started


def signed_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(base + "/admin/login", timeout=30)
    token = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert token, "no XSRF token on the sign-in page"
    answer = session.post(
        base + "/admin/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "_xsrf": token.group(1)},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code in (302, 303), answer.text[:300]
    return session


def streamed(url: str, env: dict[str, str], work: pathlib.Path) -> dict[str, Any]:
    port = free_port()
    log = (work / "server.log").open("wb")
    server_env = dict(
        env,
        PORT=str(port),
        DATA_DIR=str(work / "data"),
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        LOG_LEVEL="WARNING",
        SEED_DEMO="0",
    )
    server = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=server_env, stdout=log, stderr=log)
    try:
        wait_listening(port, server)
        base = f"http://127.0.0.1:{port}"
        session = signed_in(base)
        session.get(base + "/admin/exports", timeout=30)  # the page's code paths warm, as in use
        time.sleep(1.0)
        before = rss(server.pid)
        sampler = Sampler(server.pid)
        sampler.start()
        started = time.perf_counter()
        size = lines = 0
        with session.get(
            base + "/admin/exports/ledgers.csv?kind=load_test", stream=True, timeout=600
        ) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_content(65536):
                size += len(chunk)
                lines += chunk.count(b"\r\n")
        seconds = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        time.sleep(0.5)
        after = rss(server.pid)
        return {
            "rows": lines - 1,
            "bytes": size,
            "seconds": round(seconds, 2),
            "rows_per_s": round((lines - 1) / seconds),
            "rss_before_mib": round(before / MIB, 1),
            "rss_peak_mib": round(max(sampler.peak, before) / MIB, 1),
            "rss_after_mib": round(after / MIB, 1),
            "rss_growth_mib": round((max(sampler.peak, before) - before) / MIB, 1),
        }
    finally:
        stop(server)


BASELINE = """
import json, re, sys, time, pathlib
from zoneinfo import ZoneInfo
from pymongo import MongoClient
from backoffice import exports as ex

def rss(field):
    text = pathlib.Path("/proc/self/status").read_text()
    return int(re.search(r"^" + field + r":\\s+([0-9]+) kB", text, re.M).group(1)) * 1024

url, name = sys.argv[1], sys.argv[2]
zone = ZoneInfo("Asia/Shanghai")
db = MongoClient(url)[name]
names = {u["_id"]: u["username"] for u in db.users.find({}, {"username": 1})}
before = rss("VmRSS")
started = time.perf_counter()
docs = list(db.ledger.find({"kind": "load_test"}).sort("_id", 1))
body = ex.BOM + ex.csv_lines([ex.KINDS["ledgers"].columns])
body += ex.csv_lines(ex.ledger_row(d, names.get(d["user_id"], ""), zone) for d in docs)
data = body.encode()
seconds = time.perf_counter() - started
print(json.dumps({"rows": len(docs), "bytes": len(data), "seconds": seconds,
                  "before": before, "peak": rss("VmHWM"), "after": rss("VmRSS")}))
"""


def in_memory(url: str) -> dict[str, Any]:
    """The baseline in a fresh process, so its peak (VmHWM) is its own."""
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, url, DB_NAME], cwd=ROOT, capture_output=True, check=True, text=True
    )
    figures = json.loads(out.stdout)
    return {
        "rows": figures["rows"],
        "bytes": figures["bytes"],
        "seconds": round(figures["seconds"], 2),
        "rows_per_s": round(figures["rows"] / figures["seconds"]),
        "rss_before_mib": round(figures["before"] / MIB, 1),
        "rss_peak_mib": round(figures["peak"] / MIB, 1),
        "rss_after_mib": round(figures["after"] / MIB, 1),
        "rss_growth_mib": round((figures["peak"] - figures["before"]) / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    rows = parser.parse_args().rows
    work = pathlib.Path(tempfile.mkdtemp(prefix="gavel-export-rss-"))
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "REDIS_URL")}
    with Services.from_env(work / "services", env) as services:
        insert_seconds = insert_rows(services.mongo_url, rows)
        child_env = dict(
            env, MONGODB_URL=services.mongo_url, REDIS_URL=services.redis_url, MONGODB_DB=DB_NAME
        )
        stream = streamed(services.mongo_url, child_env, work)
        baseline = in_memory(services.mongo_url)
    growth = max(stream["rss_growth_mib"], 0.1)
    print(
        json.dumps(
            {
                "rows": rows,
                "insert_seconds": round(insert_seconds, 1),
                "streamed": stream,
                "in_memory_baseline": baseline,
                "baseline_growth_over_streamed_growth": round(baseline["rss_growth_mib"] / growth, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
