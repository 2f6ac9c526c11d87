"""The community feed under load beside bidding (issue 23): `run.py` on a fresh data directory, then
locust headless three times against it, each phase `--minutes` long, statistics reset once every
user has started:

1. `baseline`: bidders only (`--bidders`, the `Bidder` scenario of benchmarks/locustfile.py);
2. `feed`: the same bidders plus `--readers` `FeedReader`s scrolling the feed and opening posts and
   `--writers` `FeedWriter`s posting, liking and commenting;
3. `after`: bidders only again, so a drift of the shared machine shows as a difference between 1 and 3.

Prints one JSON object: per phase the bids' acknowledgement p50/p95/p99 and count, and for the feed
phase each feed request's p50/p95/p99 and requests/s, the feed pages' total requests/s, failures,
and `ack_p99_ratio` = feed ÷ baseline (and after ÷ baseline).

    .venv/bin/python benchmarks/feed_load.py                 # 200 readers, 20 writers, 20 bidders, 2 min each
    .venv/bin/python benchmarks/feed_load.py --minutes 0.5 --readers 20   # a quick look

The server runs with COMMUNITY_RATE_LIMITS=0 (the writers like far faster than a person may).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.app_load import ADMIN_PASSWORD, BIN, ROOT, start_server, stop, summarise


def run_phase(
    name: str,
    host: str,
    work: pathlib.Path,
    env: dict[str, str],
    users: int,
    classes: list[str],
    seconds: int,
) -> dict[str, Any]:
    prefix = work / name
    done = subprocess.run(
        [
            str(BIN / "locust"),
            *("-f", str(ROOT / "benchmarks" / "locustfile.py")),
            *("--headless", "--only-summary", "--reset-stats", "-u", str(users), "-r", "20"),
            *("-t", f"{seconds}s", "--host", host, "--csv", str(prefix)),
            *classes,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        timeout=seconds + 600,
        check=False,
    )
    stats = pathlib.Path(f"{prefix}_stats.csv")
    if not stats.exists():
        sys.stderr.write(done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:])
        raise SystemExit(f"locust wrote no statistics for {name}")
    summary = summarise(stats)
    requests = summary["requests"]
    feed = {
        key: {**figures, "rps": round(figures["count"] / seconds, 1)}
        for key, figures in requests.items()
        if "/api/v1/posts" in key or "/api/v1/articles" in key or "/api/v1/profiles" in key
    }
    pages = [f for k, f in feed.items() if k.startswith("GET /api/v1/posts?feed=")]
    return {
        "users": users,
        "classes": classes,
        "locust_exit": done.returncode,
        "bid_ack_ms": summary["bid_ack_ms"],
        "failures": sum(f["failures"] for f in requests.values()),
        "feed_requests": feed,
        "feed_pages_rps": round(sum(f["count"] for f in pages) / seconds, 1),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="each phase")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--bidders", type=int, default=20)
    args = parser.parse_args()
    seconds = max(5, round(args.minutes * 60))
    work = pathlib.Path(tempfile.mkdtemp(prefix="gavel-feed-load-"))
    env = dict(os.environ, LOCUST_LOTS=os.environ.get("LOCUST_LOTS", "20"), ADMIN_PASSWORD=ADMIN_PASSWORD)
    (work / "data").mkdir()
    server, host = start_server(work / "data", dict(env, COMMUNITY_RATE_LIMITS="0"))
    try:
        baseline = run_phase("baseline", host, work, env, args.bidders, ["Bidder"], seconds)
        feed_env = dict(env, FEED_READERS=str(args.readers), FEED_WRITERS=str(args.writers))
        users = args.bidders + args.readers + args.writers
        feed = run_phase("feed", host, work, feed_env, users, ["Bidder", "FeedReader", "FeedWriter"], seconds)
        after = run_phase("after", host, work, env, args.bidders, ["Bidder"], seconds)
    finally:
        stop(server)
        shutil.rmtree(work, ignore_errors=True)
    p99 = {
        name: phase["bid_ack_ms"].get("p99_ms")
        for name, phase in (("baseline", baseline), ("feed", feed), ("after", after))
    }
    print(
        json.dumps(
            {
                "minutes_per_phase": args.minutes,
                "readers": args.readers,
                "writers": args.writers,
                "bidders": args.bidders,
                "bid_ack_p99_ms": p99,
                "ack_p99_ratio": {
                    "feed": ratio(p99["feed"], p99["baseline"]),
                    "after": ratio(p99["after"], p99["baseline"]),
                },
                "feed_pages_rps": feed["feed_pages_rps"],
                "phases": {"baseline": baseline, "feed": feed, "after": after},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
