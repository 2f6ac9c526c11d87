"""Not a benchmark: bench_checkout.py's cart filling (every user adds every course, all users at
once) repeated with idle gaps, every answer counted. Prints one JSON object.

    .venv/bin/python benchmarks/cart_burst.py                      # 10 bursts, gaps 0 35 35 2 35 ...
    .venv/bin/python benchmarks/cart_burst.py --bursts 3 --gaps 40 --keep-logs benchmarks/out/burst-logs

Gaps longer than the token cache's 30 s (persistence/accounts.py) and MONGODB_MAX_IDLE (30 s)
make each burst start with every user's token to be read again and the MongoDB pool emptied: the
conditions of the 503 UNAVAILABLE the fifth round met once in bench_checkout's set-up
(docs/performance.md, checkout, sixth round). A burst of cart additions must be answered 201
throughout; the JSON lists each burst's answers by status, its seconds, the slowest and the p99
addition, and the first few failures with their bodies (the cause is in the server's log: keep it
with `--keep-logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import uvloop  # noqa: E402

from benchmarks.bench_checkout import Gavel, Http, World, keep_logs  # noqa: E402
from persistence.embedded import Services  # noqa: E402

DEFAULT_GAPS = [0.0, 35.0, 35.0, 2.0, 35.0, 35.0, 10.0, 35.0, 35.0, 35.0]


async def burst(world: World) -> dict[str, Any]:
    """Every user (`world.users` and the counting one) adds every course, one request at a time,
    all users at once, each on a new connection (as bench_checkout's `fill_carts`)."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    failures: list[str] = []

    async def fill(token: str) -> None:
        http = Http(world.port)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        try:
            for course_id, policy_id in world.courses:
                body = orjson.dumps({"course_id": course_id, "price_policy_id": policy_id})
                started = time.monotonic()
                status, answer = await http.request("POST", "/api/v1/cart", body, headers)
                latencies.append(time.monotonic() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 300 and len(failures) < 5:
                    failures.append(f"{time.strftime('%H:%M:%S')} {status} {answer[:200]!r}")
        finally:
            http.close()

    started = time.monotonic()
    await asyncio.gather(*(fill(token) for _user, token in [*world.users, world.counting]))
    latencies.sort()
    return {
        "seconds": round(time.monotonic() - started, 2),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "slowest_ms": round(latencies[-1] * 1000),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000),
        "failures": failures,
    }


async def run(args: argparse.Namespace, services: Services, work: Path) -> list[dict[str, Any]]:
    gavel = Gavel(services, work)
    try:
        world = World(gavel.port)
        await world.build(args.courses, args.users)
        bursts = []
        for number in range(args.bursts):
            gap = args.gaps[number % len(args.gaps)]
            if number:
                await asyncio.sleep(gap)
            record = {"burst": number + 1, "gap_s": gap, **(await burst(world))}
            print(json.dumps(record), file=sys.stderr, flush=True)
            bursts.append(record)
        world.http.close()
        return bursts
    finally:
        gavel.child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument(
        "--gaps", type=float, nargs="+", default=DEFAULT_GAPS, help="idle seconds before each burst, cycled"
    )
    parser.add_argument("--users", type=int, default=129, help="bench_checkout's 16 x 8 buyers + 1")
    parser.add_argument("--courses", type=int, default=50, help="courses, each in every cart (CART_LIMIT)")
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gavel-cart-burst-"))
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "REDIS_URL")}
    try:
        with Services.from_env(work / "services", env) as services:
            bursts = uvloop.run(run(args, services, work))
    finally:
        if args.keep_logs is not None:
            keep_logs(work, args.keep_logs)
        shutil.rmtree(work, ignore_errors=True)
    additions = sum(sum(b["statuses"].values()) for b in bursts)
    failed = sum(count for b in bursts for status, count in b["statuses"].items() if status != "201")
    after_gap = [b for b in bursts if b["gap_s"] > 30]
    print(
        json.dumps(
            {
                "users": args.users,
                "courses": args.courses,
                "additions": additions,
                "failed": failed,
                "bursts_with_a_failure": sum(
                    1 for b in bursts if len(b["statuses"]) > 1 or "201" not in b["statuses"]
                ),
                "slowest_ms_after_a_gap_over_30_s": max((b["slowest_ms"] for b in after_gap), default=None),
                "bursts": bursts,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
