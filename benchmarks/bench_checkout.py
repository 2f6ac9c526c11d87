"""Checkout and payment notify against a bare MongoDB transaction of as many writes. Prints one JSON
object.

    .venv/bin/python benchmarks/bench_checkout.py            # median of 3 rounds; chart in docs/performance/
    .venv/bin/python benchmarks/bench_checkout.py --quick    # one short round, chart in benchmarks/out/
    .venv/bin/python benchmarks/bench_checkout.py --keep-logs benchmarks/out/checkout-logs  # logs kept

It starts embedded MongoDB (SecantusDB, a one-member replica set: multi-document transactions) and
Redis, then Gavel (`benchmarks/e2e/gavel_server.py`, i.e. `run.py`, with the sandbox payment
provider and `GAVEL_BENCH_COMMANDS`: every MongoDB command the server sends is counted). Through
REST: the admin creates `--courses` courses with a price policy; `--concurrency` × `--buyers` users
register, get a balance from the admin and fill their carts (a closed-loop user that has bought
every course of one buyer's cart goes on as its next buyer, and each round goes on where the last
one stopped: every measured checkout is a first purchase of its course, as the counted ones are;
a course bought again extends the enrolment, two more commands per notification). One more user
does the counted operations.

1. Round trips: one user checks out `--count` times one after the other (`POST /api/v1/checkout`,
   then `POST /api/v1/checkout/pay` with part of the price from the balance, so the order is
   pending at the provider), then each order's signed notification is posted once; the server's
   command counts before and after each phase, less what its background work (the settlement
   worker's polling) sent over an idle window as long, divided by the number of operations, give
   the writes (insert, update, delete, findAndModify), the reads and the commits of one
   operation.
2. Each round: `--concurrency` closed-loop users check out (one operation, the two requests, in
   flight each); then the notifications of the orders just placed are posted by as many
   closed-loop senders (signed beforehand with the sandbox's key from the server's DATA_DIR, as
   the sandbox signs them). The baselines, in this process with PyMongo's `AsyncMongoClient` on
   the same server: as many closed-loop workers each running one transaction of exactly as many
   writes as the operation does (inserts of copies of the operation's own documents, updates and
   findAndModifys of one copy per worker, inserted afresh for each window, in `bare_*` copies of
   the same collections). A second baseline, reported beside it (never instead), runs the same
   transactions on copies that carry the product collections' secondary indexes (made non-unique:
   the copies repeat one document's values), since the product's writes maintain those indexes
   and the first baseline's bare collections have none.
3. The sides take turns: each operation's `--duration` s per side are measured in `--slices`
   slices, Gavel's, the bare and the indexed baseline's alternating (G B I, then B I G, I G B, ...;
   the notifications are split into as many parts, each sent until it runs out), each slice
   counting the operations that finish between the end of a `--slice-warmup` and its end, all
   workers busy throughout. The embedded MongoDB stalls now and then for seconds (with every
   process idle: not the checkpoint; docs/performance.md): in one long window per side a stall
   lands in one side only and swings the round's ratio; in slices it is as likely to hit either.
   Each side's slices are pooled (operations / measured seconds, the latencies together), and the
   slices with an operation of `STALL_S` or more are listed (`stalls`).

Figures per operation: completed operations/s, latency p50/p99; the ratios Gavel / bare (throughput
and p99) are taken within a round, then their median is reported. Target: throughput >= 0.6x
(against the first baseline, the target's definition; the indexed one explains the gap).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import uvloop  # noqa: E402
from pymongo import AsyncMongoClient, IndexModel  # noqa: E402

from benchmarks.bench_e2e import ADMIN_PASSWORD, Child, gavel_env, quiesce  # noqa: E402
from benchmarks.e2e.procstat import cpu_seconds  # noqa: E402
from payments.signing import SIGN_TYPE, load_private_key, sign_params  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402
from shop.pricing import yuan_text  # noqa: E402

PYTHON = sys.executable
DB_NAME = "gavel_checkout_bench"
BARE_DB = "gavel_checkout_bare"
BARE_INDEXED_DB = "gavel_checkout_bare_indexed"
APP_ID = "gavel-sandbox"  # payments/config.py's default sandbox app_id
PRICE, BALANCE_PER_ORDER = 99_00, 10_00  # part paid from the balance: a ledger entry and a pending order
CREDIT = 50_000_00
WRITE_COMMANDS = ("insert", "update", "delete", "findAndModify")
TX_COMMANDS = ("commitTransaction", "abortTransaction")
DEFAULT_CHART = ROOT / "docs" / "performance" / "checkout.png"
QUICK_CHART = ROOT / "benchmarks" / "out" / "checkout-quick.png"  # benchmarks/out/ is not committed


# -- a keep-alive HTTP/1.1 client (one connection per simulated user) ------------------------------
class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return status, b"".join(parts)

    async def json(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, answer = await self.request(
            method, path, orjson.dumps(body) if body is not None else b"", headers
        )
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
        return orjson.loads(answer) if answer else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- the server and its command counts ---------------------------------------------------------------
class Gavel:
    def __init__(self, services: Services, work: Path) -> None:
        self.port = free_port()
        self.data_dir = work / "gavel"
        self.commands_path = work / "commands.json"
        env = gavel_env(
            services.mongo_url,
            services.redis_url,
            DB_NAME,
            PORT=str(self.port),
            DATA_DIR=str(self.data_dir),
            PAYMENT_PROVIDER="sandbox",
            GAVEL_BENCH_COMMANDS=str(self.commands_path),
        )
        argv = [PYTHON, "-m", "benchmarks.e2e.gavel_server"]
        self.child = Child("gavel", argv, env, work, self.port)
        self.child.wait_listening()

    def commands(self) -> Counter[str]:
        """The server's command counts so far (it writes them on SIGHUP)."""
        with contextlib.suppress(FileNotFoundError):
            self.commands_path.unlink()
        self.child.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return Counter(json.loads(self.commands_path.read_text()))
            time.sleep(0.01)
        raise RuntimeError("the server did not write its command counts")

    def private_key(self) -> Any:
        return load_private_key((self.data_dir / "payments" / "sandbox_private.pem").read_bytes())


class World:
    """Courses, users with a balance and full carts, made through REST."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = Http(port)
        self.courses: list[tuple[int, int]] = []
        self.users: list[tuple[int, str]] = []
        self.counting: tuple[int, str] = (0, "")  # the user of count_round_trips, none of a worker's
        self.bought: dict[int, int] = {}  # per closed-loop worker: the purchases it made, all rounds
        self.admin = ""

    async def build(self, courses: int, users: int) -> None:
        http = self.http
        self.admin = (
            await http.json("POST", "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD})
        )["token"]
        top = await http.json("POST", "/api/v1/admin/shop/categories", {"name": "Bench"}, self.admin)
        sub = await http.json(
            "POST", "/api/v1/admin/shop/categories", {"name": "Bench sub", "parent_id": top["id"]}, self.admin
        )
        for number in range(courses):
            course = await http.json(
                "POST",
                "/api/v1/admin/shop/courses",
                {
                    "name": f"Bench course {number}",
                    "sub_category_id": sub["id"],
                    "course_type": "paid",
                    "status": "online",
                    "brief": "benchmarks/bench_checkout.py",
                },
                self.admin,
            )
            policy = await http.json(
                "POST",
                f"/api/v1/admin/shop/courses/{course['id']}/policies",
                {"valid_days": 30, "price": PRICE},
                self.admin,
            )
            self.courses.append((int(course["id"]), int(policy["id"])))
        for number in range(users):
            answer = await http.json(
                "POST",
                "/api/v1/auth/register",
                {"username": f"buyer{number}", "password": "bench-password-1"},
            )
            user_id = int(answer["user_id"])
            await http.json("POST", f"/api/v1/admin/users/{user_id}/credit", {"amount": CREDIT}, self.admin)
            self.users.append((user_id, str(answer["token"])))
        self.counting = self.users.pop()

    async def fill_carts(self) -> None:
        """Every course in every user's cart (a bought course leaves the cart)."""

        async def fill(token: str) -> None:
            http = Http(self.port)
            try:
                for course_id, policy_id in self.courses:
                    await http.json(
                        "POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy_id}, token
                    )
            finally:
                http.close()

        await asyncio.gather(*(fill(token) for _user, token in [*self.users, self.counting]))


class Pending:
    """A pending order's provider payment, to be notified."""

    def __init__(self, out_trade_no: str, to_pay: int) -> None:
        self.out_trade_no, self.to_pay = out_trade_no, to_pay


async def checkout_once(http: Http, token: str, course_id: int, key: str) -> Pending:
    await http.json("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token)
    paid = await http.json(
        "POST", "/api/v1/checkout/pay", {"balance": BALANCE_PER_ORDER, "idempotency_key": key}, token
    )
    order = paid["order"]
    if order["status"] != "pending" or not paid["pay_url"]:
        raise RuntimeError(f"unexpected order: {paid}")
    return Pending(urllib.parse.unquote(paid["pay_url"].rsplit("/", 1)[1]), int(order["to_pay"]))


def notification(key: Any, pending: Pending, serial: int) -> bytes:
    """The sandbox's signed form (payments/sandbox.py `notification`) for a paid trade."""
    params = {
        "app_id": APP_ID,
        "charset": "utf-8",
        "notify_id": f"bench{serial:012d}",
        "notify_time": "2026-12-07 10:00:00",
        "notify_type": "trade_status_sync",
        "out_trade_no": pending.out_trade_no,
        "subject": "Courses",
        "total_amount": yuan_text(pending.to_pay),
        "trade_no": f"SBXBENCH{serial:012d}",
        "trade_status": "TRADE_SUCCESS",
        "version": "1.0",
    }
    params["sign"] = sign_params(params, key)
    params["sign_type"] = SIGN_TYPE
    return urllib.parse.urlencode(params).encode()


# A notification answered 503 (the server could not settle it now: e.g. MongoDB did not answer
# within its timeout) is sent again, as the provider does; the operation's time runs from its first
# send, and the JSON counts the resends (`resent_503`).
NOTIFY_RESENDS = 5
NOTIFY_RESEND_AFTER_S = 0.2


async def notify_once(http: Http, form: bytes) -> int:
    """One notification until `success`; returns how many times it was sent again after a 503."""
    for resent in range(NOTIFY_RESENDS + 1):
        status, answer = await http.request(
            "POST",
            "/api/v1/payments/notify",
            form,
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        if status == 200 and answer == b"success":
            return resent
        if status != 503:
            break
        await asyncio.sleep(NOTIFY_RESEND_AFTER_S)
    raise RuntimeError(f"notify answered {status} {answer!r}")


# -- round trips of one operation ----------------------------------------------------------------------
def per_operation(before: Counter[str], after: Counter[str], operations: int) -> dict[str, Any]:
    diff = after - before
    by_kind: Counter[str] = Counter()
    writes: dict[str, float] = {}
    for key, count in sorted(diff.items()):
        name, collection, scope = key.split(" ")
        if name in WRITE_COMMANDS:
            by_kind["writes_" + scope] += count
            writes[f"{name} {collection} ({scope})"] = round(count / operations, 2)
        elif name in TX_COMMANDS:
            by_kind[f"{name}_{collection}"] += count  # of a transaction that wrote, or only read
        elif name in ("find", "aggregate", "count", "distinct", "getMore"):
            by_kind["reads_" + scope] += count
        else:
            by_kind["other"] += count
    figures: dict[str, Any] = {k: round(v / operations, 2) for k, v in sorted(by_kind.items())}
    # "bulk": a write sent with others in one bulkWrite command of a transaction (also counted
    # as that command, under "other").
    figures["writes"] = round(
        (by_kind["writes_tx"] + by_kind["writes_bulk"] + by_kind["writes_direct"]) / operations, 2
    )
    figures["reads"] = round((by_kind["reads_tx"] + by_kind["reads_direct"]) / operations, 2)
    figures["write_commands"] = writes
    figures["all_commands"] = {key: round(count / operations, 2) for key, count in sorted(diff.items())}
    return figures


def write_plan(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The writes of one operation as (command, collection), each as often as it happens per
    operation (rounded): what the bare transaction repeats."""
    plan: list[tuple[str, str]] = []
    for key, per_op in figures["write_commands"].items():
        name, collection, _scope = key.split(" ")
        plan += [(name, collection)] * round(per_op)
    return plan


async def count_round_trips(gavel: Gavel, world: World, count: int) -> dict[str, Any]:
    _user_id, token = world.counting
    http = Http(gavel.port)
    key = gavel.private_key()
    forms: list[bytes] = []

    async def checkouts() -> None:
        for n in range(count):
            course_id = world.courses[n % len(world.courses)][0]
            pending = await checkout_once(http, token, course_id, f"count-{n}")
            forms.append(notification(key, pending, 900_000 + n))

    async def notifies() -> None:
        for form in forms:
            await notify_once(http, form)

    try:
        return {
            "checkout": await counted(gavel, checkouts, count),
            "notify": await counted(gavel, notifies, count),
        }
    finally:
        http.close()


async def counted(gavel: Gavel, phase: Any, operations: int) -> dict[str, Any]:
    """The commands of `operations` sequential operations, less what the server's background work
    (the settlement worker's polling, the sweeper) sent over an idle window as long as the phase."""
    before = gavel.commands()
    started = time.perf_counter()
    await phase()
    seconds = time.perf_counter() - started
    during = gavel.commands()
    await asyncio.sleep(seconds)
    idle = gavel.commands() - during
    return per_operation(before + idle, during, operations)


# -- closed loops ------------------------------------------------------------------------------------------
class Window:
    """A closed loop's measurement: the operations that finish between the end of the warm-up and
    the end of the window (all workers busy throughout); those finishing later only drain."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.measure_from = time.perf_counter() + warmup
        self.stop_at = self.measure_from + duration
        self.finished: list[tuple[float, float]] = []  # (when, latency)

    def running(self) -> bool:
        return time.perf_counter() < self.stop_at

    def done(self, started: float) -> None:
        now = time.perf_counter()
        self.finished.append((now, now - started))

    def counted(self, end: float | None = None) -> list[float]:
        end = self.stop_at if end is None else end
        return [latency for when, latency in self.finished if self.measure_from <= when <= end]

    def seconds(self, end: float | None = None) -> float:
        return max((self.stop_at if end is None else end) - self.measure_from, 1e-9)


def percentile_ms(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else 0.0


# An operation that takes this long is a stall (a round's p99 is 0.2-0.6 s at 16 concurrent; the
# server gives up on MongoDB after 3 s).
STALL_S = 2.0


class Side:
    """One side (Gavel, or a baseline) of one operation within a round: its slices pooled. The
    slices of the three sides alternate (A/B/C, then B/C/A, ...), so that a stall of the shared
    server, or of the machine, is as likely to land in either side's time."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.all_operations = 0  # warm-ups and drains too (CPU per operation)
        self.cpu: Counter[str] = Counter()
        self.slices: list[dict[str, Any]] = []
        self.resent_503 = 0

    def add(self, window: Window, cpu: CpuWindow, end: float | None = None) -> None:
        counted = window.counted(end)
        seconds = window.seconds(end)
        self.latencies += counted
        self.seconds += seconds
        self.all_operations += len(window.finished)
        self.cpu.update(cpu.used)
        slowest = max((latency for _when, latency in window.finished), default=0.0)
        self.slices.append(
            {
                "per_s": round(len(counted) / seconds, 1),
                "seconds": round(seconds, 2),
                "slowest_ms": round(slowest * 1000),
                "stalled": sum(1 for _when, latency in window.finished if latency >= STALL_S),
            }
        )

    def summary(self) -> dict[str, Any]:
        count = max(1, self.all_operations)
        return {
            "operations": len(self.latencies),
            "all_operations": self.all_operations,
            "seconds": round(self.seconds, 2),
            "per_s": round(len(self.latencies) / max(self.seconds, 1e-9), 1),
            "p50_ms": percentile_ms(self.latencies, 0.50),
            "p99_ms": percentile_ms(self.latencies, 0.99),
            "cpu_ms_per_op": {name: round(sec * 1000 / count, 2) for name, sec in sorted(self.cpu.items())},
            "slices": self.slices,
            **({"resent_503": self.resent_503} if self.resent_503 else {}),
        }


async def gavel_checkouts(
    world: World, concurrency: int, warmup: float, duration: float, tag: str
) -> tuple[Window, list[Pending]]:
    window = Window(warmup, duration)
    placed: list[Pending] = []

    async def user(index: int) -> None:
        # One operation in flight per worker; when one buyer's cart is bought out (CART_LIMIT
        # courses) the worker goes on as its next buyer (each worker has --buyers of its own). A
        # round goes on where the worker's last one stopped: a course is never bought twice (a
        # second purchase extends the enrolment: not the operation counted, nor its baseline).
        http = Http(world.port)
        purchases = [
            (buyer, n)
            for buyer in range(index, len(world.users), concurrency)
            for n in range(len(world.courses))
        ]
        try:
            while window.running():
                done = world.bought.get(index, 0)
                if done == len(purchases):
                    raise RuntimeError(
                        "every buyer bought every course before the window ended: add --buyers"
                    )
                buyer, n = purchases[done]
                _user_id, token = world.users[buyer]
                started = time.perf_counter()
                placed.append(await checkout_once(http, token, world.courses[n][0], f"{tag}-{buyer}-{n}"))
                world.bought[index] = done + 1
                window.done(started)
        finally:
            http.close()

    await asyncio.gather(*(user(i) for i in range(concurrency)))
    return window, placed


async def gavel_notifies(
    port: int, forms: list[bytes], concurrency: int, warmup: float
) -> tuple[Window, float, int]:
    """Until the forms run out: the window ends when the last one is taken (all senders busy).
    Returns the window, its end and how many notifications were sent again after a 503."""
    window = Window(warmup, 0.0)
    queue = list(reversed(forms))
    emptied = [0.0]
    resent = [0]

    async def sender() -> None:
        http = Http(port)
        try:
            while queue:
                form = queue.pop()
                if not queue:
                    emptied[0] = time.perf_counter()
                started = time.perf_counter()
                resent[0] += await notify_once(http, form)
                window.done(started)
        finally:
            http.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    if emptied[0] - window.measure_from < 1.0:
        window.measure_from = started  # too few forms for a warm-up: the whole run is measured
    return window, emptied[0], resent[0]


class Bare:
    """One transaction of the operation's writes (`write_plan`) per operation, on the same server.

    Its inserts are new copies of the operation's own documents; its updates and findAndModifys
    (`$inc`) hit one copy per worker (workers never conflict), inserted afresh for each window so
    that no document carries the versions of an earlier window. (A copy per operation instead, a
    few thousand documents per collection, made SecantusDB's concurrent transactions take seconds
    each: that baseline would measure a weakness of this server, not a transaction's writes.)"""

    def __init__(self, mongo_url: str, samples: dict[str, dict[str, Any]], *, indexed: bool = False) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        self.db = self.client[BARE_INDEXED_DB if indexed else BARE_DB]
        self.indexed = indexed
        self.with_indexes: set[str] = set()
        self.samples = samples
        self.serial = 0
        self.windows = 0

    def _collection(self, op: str, collection: str) -> Any:
        return self.db[f"bare_{op}_{collection}"]

    def _copy(self, collection: str, new_id: str) -> dict[str, Any]:
        doc = copy.deepcopy(self.samples.get(collection) or {"payload": "x" * 200})
        doc["_id"] = new_id
        doc["n"] = 0
        return doc

    async def _copy_indexes(self, op: str, collections: set[str]) -> None:
        """The product collection's secondary indexes on the bare copy (non-unique: the copies
        repeat one document's values), created once."""
        for collection in sorted(collections):
            models = []
            async for spec in await self.client[DB_NAME][collection].list_indexes():
                if spec["name"] == "_id_":
                    continue
                options = {k: spec[k] for k in ("partialFilterExpression", "sparse") if k in spec}
                models.append(IndexModel(list(spec["key"].items()), name=spec["name"], **options))
            if models:
                await self._collection(op, collection).create_indexes(models)

    async def _prepare(self, op: str, plan: list[tuple[str, str]], workers: list[str]) -> None:
        if self.indexed and op not in self.with_indexes:
            await self._copy_indexes(op, {c for _name, c in plan})
            self.with_indexes.add(op)
        for collection in sorted({c for name, c in plan if name != "insert"}):
            await self._collection(op, collection).insert_many([self._copy(collection, w) for w in workers])
        for collection in sorted({c for name, c in plan if name == "insert"}):
            # The collection exists before the first transaction (no implicit creation in one).
            await self._collection(op, collection).update_one({"_id": "warm"}, {"$set": {}}, upsert=True)

    async def one(self, op: str, plan: list[tuple[str, str]], own: str) -> None:
        async with self.client.start_session() as session:

            async def writes(s: Any) -> None:
                for name, collection in plan:
                    target = self._collection(op, collection)
                    if name == "insert":
                        self.serial += 1
                        await target.insert_one(self._copy(collection, f"i{self.serial}"), session=s)
                    elif name == "update":
                        await target.update_one({"_id": own}, {"$inc": {"n": 1}}, session=s)
                    elif name == "findAndModify":
                        await target.find_one_and_update({"_id": own}, {"$inc": {"n": 1}}, session=s)
                    else:
                        raise ValueError(f"no bare {name}")

            await session.with_transaction(writes)

    async def loop(
        self, op: str, plan: list[tuple[str, str]], concurrency: int, warmup: float, duration: float
    ) -> Window:
        self.windows += 1
        workers = [f"w{self.windows}-{index}" for index in range(concurrency)]
        await self._prepare(op, plan, workers)
        window = Window(warmup, duration)

        async def worker(own: str) -> None:
            while window.running():
                started = time.perf_counter()
                await self.one(op, plan, own)
                window.done(started)

        await asyncio.gather(*(worker(own) for own in workers))
        return window

    async def close(self) -> None:
        await self.client.close()


async def samples_of(mongo_url: str, collections: set[str]) -> dict[str, dict[str, Any]]:
    """One real document of each collection the operations write (the bare copies' size)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        found = {}
        for name in collections:
            doc = await client[DB_NAME][name].find_one(sort=[("_id", -1)])
            if doc is not None:
                found[name] = doc
        return found
    finally:
        await client.close()


def sizes(samples: dict[str, dict[str, Any]]) -> dict[str, int]:
    import bson

    return {name: len(bson.encode(doc)) for name, doc in sorted(samples.items())}


class CpuWindow:
    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self.before = {name: cpu_seconds(pid) or 0.0 for name, pid in processes.items()}
        self.used: dict[str, float] = {}

    def close(self) -> None:
        self.used = {
            name: (cpu_seconds(pid) or 0.0) - self.before[name] for name, pid in self.processes.items()
        }

    def per_operation(self, figures: dict[str, Any]) -> dict[str, float]:
        """CPU milliseconds per completed operation, per process (the client: this process)."""
        count = max(1, int(figures["all_operations"]))
        return {name: round(seconds * 1000 / count, 2) for name, seconds in self.used.items()}


@contextlib.contextmanager
def cpu_per_operation(processes: dict[str, int]) -> Iterator[CpuWindow]:
    window = CpuWindow(processes)
    try:
        yield window
    finally:
        window.close()


# -- slices: the sides of one operation take turns ---------------------------------------------------
SIDES = ("gavel", "bare", "bare_indexed")


def turns(slice_index: int) -> tuple[str, ...]:
    """The sides' order in one slice: each slice starts one side later (G B I, B I G, I G B, ...)."""
    shift = slice_index % len(SIDES)
    return SIDES[shift:] + SIDES[:shift]


async def checkout_slices(
    args: argparse.Namespace,
    world: World,
    bares: dict[str, Bare],
    plan: list[tuple[str, str]],
    processes: dict[str, int],
    number: int,
) -> tuple[dict[str, Side], list[Pending]]:
    """`--slices` turns of each side, `--duration` / `--slices` s measured each after a
    `--slice-warmup`; the orders Gavel placed, to be notified."""
    sides = {side: Side() for side in SIDES}
    placed: list[Pending] = []
    measured = args.duration / args.slices
    for index in range(args.slices):
        for side in turns(index):
            quiesce(list(processes.values()))
            with cpu_per_operation(processes) as cpu:
                if side == "gavel":
                    window, new = await gavel_checkouts(
                        world, args.concurrency, args.slice_warmup, measured, f"r{number}s{index}"
                    )
                    placed += new
                else:
                    window = await bares[side].loop(
                        "checkout", plan, args.concurrency, args.slice_warmup, measured
                    )
            sides[side].add(window, cpu)
    return sides, placed


async def notify_slices(
    args: argparse.Namespace,
    port: int,
    forms: list[bytes],
    bares: dict[str, Bare],
    plan: list[tuple[str, str]],
    processes: dict[str, int],
) -> dict[str, Side]:
    """The notifications in `--slices` parts, each sent until it runs out, taking turns with the
    baselines' slices (each as long as the checkout's measured slices)."""
    sides = {side: Side() for side in SIDES}
    parts = [forms[index :: args.slices] for index in range(args.slices)]
    measured = args.duration / args.slices
    for index, part in enumerate(parts):
        for side in turns(index):
            quiesce(list(processes.values()))
            with cpu_per_operation(processes) as cpu:
                if side == "gavel":
                    window, end, resent = await gavel_notifies(
                        port, part, args.concurrency, args.slice_warmup
                    )
                    sides[side].resent_503 += resent
                else:
                    window = await bares[side].loop(
                        "notify", plan, args.concurrency, args.slice_warmup, measured
                    )
                    end = None
            sides[side].add(window, cpu, end)
    return sides


# -- the run ------------------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


async def bench(args: argparse.Namespace, services: Services, work: Path) -> dict[str, Any]:
    gavel = Gavel(services, work)
    try:
        world = World(gavel.port)
        await world.build(args.courses, args.concurrency * args.buyers + 1)
        await world.fill_carts()
        round_trips = await count_round_trips(gavel, world, args.count)
        plans = {op: write_plan(round_trips[op]) for op in ("checkout", "notify")}
        collections = {c for plan in plans.values() for _n, c in plan}
        samples = await samples_of(services.mongo_url, collections)
        bares = {
            "bare": Bare(services.mongo_url, samples),
            "bare_indexed": Bare(services.mongo_url, samples, indexed=True),
        }
        key = gavel.private_key()
        processes = {"server": gavel.child.pid, "client": os.getpid()}
        processes |= {server.name: server.pid for server in services.embedded}
        rounds = []
        for number in range(args.runs):
            await world.fill_carts()
            record: dict[str, Any] = {"round": number + 1}
            checkout, placed = await checkout_slices(args, world, bares, plans["checkout"], processes, number)
            forms = [notification(key, p, number * 1_000_000 + i) for i, p in enumerate(placed)]
            notify = await notify_slices(args, gavel.port, forms, bares, plans["notify"], processes)
            for op, sides in (("checkout", checkout), ("notify", notify)):
                record[op] = sides["gavel"].summary()
                record["bare_" + op] = sides["bare"].summary()
                record["bare_indexed_" + op] = sides["bare_indexed"].summary()
            record["stalls"] = [
                {"op": op, "side": side, "slice": index + 1, **piece}
                for op, sides in (("checkout", checkout), ("notify", notify))
                for side, pooled in sides.items()
                for index, piece in enumerate(pooled.slices)
                if piece["stalled"]
            ]
            for op in ("checkout", "notify"):
                ours = record[op]
                for suffix, base in (("", record["bare_" + op]), ("_indexed", record["bare_indexed_" + op])):
                    record[op + "_ratio" + suffix] = {
                        "throughput": ratio(ours["per_s"], base["per_s"]),
                        "p99_over_bare_p99": ratio(ours["p99_ms"], base["p99_ms"]),
                    }
            print(json.dumps(record), file=sys.stderr)
            rounds.append(record)
        for bare in bares.values():
            await bare.close()
        world.http.close()
        return {
            "round_trips": round_trips,
            "plans": plans,
            "document_bytes": sizes(samples),
            "rounds": rounds,
        }
    finally:
        gavel.child.stop()


def median_of(rounds: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for record in rounds:
        value: Any = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(float(value))
    return round(statistics.median(values), 3) if values else None


def report(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    rounds = measured["rounds"]
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "runs": args.runs,
        "mongodb": "SecantusDB, one-member replica set (multi-document transactions)",
        "round_trips_per_operation": measured["round_trips"],
        "bare_transaction_writes": {
            op: [f"{n} {c}" for n, c in plan] for op, plan in measured["plans"].items()
        },
        "document_bytes": measured["document_bytes"],
    }
    for op in ("checkout", "notify"):
        result[op] = {
            side: {field: median_of(rounds, key, field) for field in ("per_s", "p50_ms", "p99_ms")}
            for side, key in (("gavel", op), ("bare", "bare_" + op), ("bare_indexed", "bare_indexed_" + op))
        }
        for suffix in ("", "_indexed"):
            key = op + "_ratio" + suffix
            result[op]["ratio_throughput" + suffix] = median_of(rounds, key, "throughput")
            result[op]["ratio_p99" + suffix] = median_of(rounds, key, "p99_over_bare_p99")
            result[op]["ratio_throughput_runs" + suffix] = [r[key]["throughput"] for r in rounds]
        # The target is against the first baseline (bare collections), as defined.
        result[op]["target_0_6_met"] = (result[op]["ratio_throughput"] or 0) >= 0.6
    # Stalls (an operation of >= STALL_S): per operation and side, so that one landing in one side's
    # time and not the other's shows next to the ratio it swung.
    result["stalls"] = {
        "threshold_s": STALL_S,
        "slices_with_a_stall": [{"round": r["round"], **stall} for r in rounds for stall in r["stalls"]],
    }
    result["slices"] = args.slices
    result["rounds"] = rounds
    return result


def ratios(figures: dict[str, Any]) -> str:
    return f"{figures['ratio_throughput']}x; indexed {figures['ratio_throughput_indexed']}x"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    ops = ("checkout", "notify")
    width = 0.27
    sides = (
        ("gavel", "Gavel (HTTP, whole path)", "#3b6ea5"),
        ("bare", "bare transaction, same writes", "#b0b0b0"),
        ("bare_indexed", "the same, on collections with the product's indexes", "#707070"),
    )
    for axis, field, title in ((left, "per_s", "operations/s (closed loop)"), (right, "p99_ms", "p99 (ms)")):
        xs = range(len(ops))
        for offset, (side, label, color) in zip((-1, 0, 1), sides, strict=True):
            values = [result[op][side][field] or 0 for op in ops]
            axis.bar([x + offset * width for x in xs], values, width, label=label, color=color)
        axis.set_xticks(
            list(xs),
            [f"{op}\n({ratios(result[op])})" if field == "per_s" else op for op in ops],
        )
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    left.axhline(0, color="black", linewidth=0.5)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(
        f"Checkout and payment notify vs a bare MongoDB transaction, {result['concurrency']} concurrent, "
        f"median of {result['runs']}\n(the sides take turns: {result['slices']} slices each per round; "
        f"slices with a stall of >= {STALL_S:g} s: {len(result['stalls']['slices_with_a_stall'])})"
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))  # room for the legend below the axes
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round, chart in benchmarks/out/")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds of checkouts per round"
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="turns each side takes per operation and round (A/B/C, B/C/A, ...)",
    )
    parser.add_argument(
        "--slice-warmup", type=float, default=0.5, help="seconds before each slice is measured"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop users (and notifiers)")
    parser.add_argument("--courses", type=int, default=50, help="courses, each in every cart (CART_LIMIT)")
    parser.add_argument("--count", type=int, default=20, help="sequential operations counted")
    parser.add_argument(
        "--buyers", type=int, default=8, help="buyers per closed-loop user (a full cart each)"
    )
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy the server's, MongoDB's and Redis's logs to DIR at the end (else they go with the run)",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.slices = 1, 4.0, 2
    chart_path = args.chart or (QUICK_CHART if args.quick else DEFAULT_CHART)
    work = Path(tempfile.mkdtemp(prefix="gavel-checkout-"))
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "REDIS_URL")}
    try:
        with Services.from_env(work / "services", env) as services:
            measured = uvloop.run(bench(args, services, work))
        result = report(args, measured)
        chart(result, chart_path)
        result["chart"] = (
            str(chart_path.relative_to(ROOT)) if chart_path.is_relative_to(ROOT) else str(chart_path)
        )
        print(json.dumps(result, indent=2, default=str))
    finally:
        if args.keep_logs is not None:
            keep_logs(work, args.keep_logs)
        shutil.rmtree(work, ignore_errors=True)


def keep_logs(work: Path, target: Path) -> None:
    """The run's logs (gavel.log, and services/logs/mongo.log, redis.log) copied out of its
    temporary directory: a failed request's cause is in the server's."""
    target.mkdir(parents=True, exist_ok=True)
    for log in [work / "gavel.log", *sorted((work / "services").rglob("*.log"))]:
        if log.is_file():
            shutil.copy(log, target / log.name)


if __name__ == "__main__":
    main()
