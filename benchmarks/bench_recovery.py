"""Restart after SIGKILL: how long until Gavel serves again, as the history behind it grows.
Prints one JSON object.

    .venv/bin/python benchmarks/bench_recovery.py                  # 0, 100k, 1M bids; 3 restarts each
    .venv/bin/python benchmarks/bench_recovery.py --sizes 10000000 # the 10M history (~40 min to make)
    .venv/bin/python benchmarks/bench_recovery.py --quick          # 0 and 100k bids, one restart each

For each history size it starts embedded MongoDB and Redis once (persistence/embedded.py), then, on
a fresh `DATA_DIR` and database:

1. the real service (`benchmarks/e2e/gavel_server.py`, i.e. `run.py`) sets up, through its REST
   API, one session open for bidding with two lots and two bidders who paid the deposit, and is
   SIGKILLed;
2. a generator process (this script with `--generate`) drives the engine in-process through its
   real journal (the same records, fsynced; the same MongoDB snapshot sink and the same snapshot
   trigger as `Service._snapshots`, `composition.service.snapshot_due`): sessions of 100 lots, 100
   bids per lot from 1,000 bidders, each bid with a ref as clients send, each session's lots closing
   on their timer while the next session bids, on a simulated clock at 200 bids/s (so the 10-minute
   ref window holds what a steady day holds, not the whole history). It is SIGKILLed mid-load, once
   it has had N bids acknowledged. Behind it run, as in `Service`, the product's archive process
   (`ArchiverProcess`, fed the journal's records; the snapshots wait for it) and the product's
   compaction of closed lots (`engine.compaction.Compactor`, COMPACT_INTERVAL); the settlement
   worker is stood in for by marking each archived close done (the generated lots have no
   catalogue documents or orders). It bids on only while the archive is at most
   ARCHIVE_LAG_RECORDS behind, i.e. at the pace the archive sustains (its process under
   SCHED_IDLE as in the product);
3. the real service restarts on that `DATA_DIR` and database, `--runs` times (each one SIGKILLed
   after it answered): from its exec, the time to `/healthz` answering 200, to the first REST
   answer (the session's page) and to the first accepted bid on a websocket (the set-up's bidder,
   who connects and bids the moment the port is open);
4. checks, by recovering the engine in this process from the same snapshot and journal, that every
   acknowledged bid is there: each lot of a session wholly acknowledged holds its 100 bids at the
   price of its last one, and no more bids are in the book than were submitted. The same recovery
   gives the tail's replay rate, and its baseline: the same records decoded by the journal's own
   record decoder (`engine.journal.recover`, read-only) and nothing else, in the same run.

Disk use (journal segments, the snapshots' bytes in MongoDB) is reported per size, and each
restart's RSS once it served its first bid. The chart is restart time, snapshot size and RSS
against bids since start, and replay rate against the decoder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
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
import tornado.websocket  # noqa: E402

from benchmarks.bench_e2e import E2E, PYTHON, START_PRICE, UNIT, gavel_env, set_up_gavel  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

DEFAULT_CHART = ROOT / "docs" / "performance" / "recovery.png"
QUICK_CHART = ROOT / "benchmarks" / "out" / "recovery-quick.png"  # benchmarks/out/ is not committed

LOTS_PER_SESSION = 100
BIDS_PER_LOT = 100
BIDDERS = 1_000
SIM_BIDS_PER_S = 200
BIDS_PER_SESSION = LOTS_PER_SESSION * BIDS_PER_LOT
SESSION_MS = BIDS_PER_SESSION * 1000 // SIM_BIDS_PER_S  # the simulated time one session's bids take
# Far above what the REST set-up creates, so the generated sessions, lots and bidders never meet it.
SESSION0, LOT0, USER0 = 1_000_000, 1_000_000, 1_000_000
TARGET_S = 3.0
ARCHIVE_LAG_RECORDS = 2 * BIDS_PER_SESSION
# A history that cannot be made in time is cut here (then smaller than asked: the check and the JSON
# give the bids it holds); GAVEL_RECOVERY_GENERATE_LIMIT_S.
GENERATE_LIMIT_S = float(os.environ.get("GAVEL_RECOVERY_GENERATE_LIMIT_S", "1e9"))
STALL_S = 60.0


def bidder(lot_index: int, bid_index: int) -> int:
    """Who places bid `bid_index` on a session's lot `lot_index`: never the same twice running, and
    every one of the BIDDERS in each session (10 * lot + bid covers 0..1089)."""
    return USER0 + (10 * lot_index + bid_index) % BIDDERS


def lot_ids(session_index: int) -> list[int]:
    first = LOT0 + session_index * LOTS_PER_SESSION
    return list(range(first, first + LOTS_PER_SESSION))


# ------------------------------------------------------------------------------------ generator
class SimClock:
    """The generator's clock: moves on only when told (see the module docstring)."""

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def now_ms(self) -> int:
        return self.now


async def generate(data_dir: Path, mongo_url: str, database: str, bids: int, progress: Path) -> None:
    """Bid until killed; `progress` holds how many bids were acknowledged, rewritten per session."""
    from composition.service import SNAPSHOT_CHECK_SECONDS, engine_snapshots, snapshot_due
    from composition.settings import Settings
    from engine.commands import PlaceBid, PutLot, PutSession
    from engine.compaction import Compactor
    from engine.engine import Engine
    from persistence import mongo
    from persistence.archive_process import ArchiverProcess
    from persistence.cluster import DEFAULT_ENGINE_ID
    from persistence.compaction import MongoSettledCloses

    settings = Settings()
    interval = float(os.environ.get("SNAPSHOT_INTERVAL", settings.snapshot_interval))
    every = int(os.environ.get("SNAPSHOT_RECORDS", settings.snapshot_records))
    client = mongo.connect(mongo_url, app_name="gavel-recovery-generator")
    db = client[database]
    clock = SimClock(int(time.time() * 1000))
    sink = engine_snapshots(data_dir, db, DEFAULT_ENGINE_ID)
    engine = Engine(clock, data_dir / "journal", sink, sync=True)
    # The product's archive, as `Service` runs it: its own process fed the journal's records, the
    # snapshots waiting on it; and the product's compaction of closed lots behind it.
    archiver = ArchiverProcess(
        db,
        mongodb_url=mongo_url,
        journal_dir=data_dir / "journal",
        snapshot_dir=data_dir / "snapshots",
        log_level="WARNING",
    )
    await archiver.load_archived_seq()
    engine.before_snapshot = archiver.wait_caught_up
    engine.record_observer = archiver.on_records
    await engine.start()
    # The simulated clock starts after the set-up's commands (journaled by the real service at the
    # real time): a clock behind them would stamp every ref with the set-up's time (stamps never go
    # back, see RefCache), so no ref would ever leave the 10-minute window and each bidder would keep
    # up to REFS_MAX_PER_USER of them. The history then runs ahead of the wall clock (10M bids at
    # 200 bids/s: ~14 h), which the restarted service takes as it is.
    clock.now = max(clock.now, engine.refs.clock + 1)
    archiver.start(durable_seq=engine.last_seq)
    compactor = Compactor(
        lambda: engine.book,
        lambda: engine.last_seq,
        engine.execute,
        archiver,
        MongoSettledCloses(db),
        interval=settings.compact_interval,
    )
    compactor.adopt_book()
    engine.listeners.append(compactor.on_batch)

    async def settle() -> None:
        # Stands in for the settlement worker (not run here: the generated lots have no catalogue
        # documents, bidders or orders to settle): a close the archive has written is done.
        while True:
            await asyncio.sleep(5.0)
            try:
                await db.settlement_outbox.update_many({"status": "pending"}, {"$set": {"status": "done"}})
            except Exception as error:
                print(f"generator: settle failed: {error!r}"[:300], file=sys.stderr, flush=True)

    async def snapshots() -> None:  # Service._snapshots' trigger
        last, taken_at = engine.last_seq, time.monotonic()
        while True:
            await asyncio.sleep(min(SNAPSHOT_CHECK_SECONDS, interval))
            if snapshot_due(
                engine.last_seq - last, time.monotonic() - taken_at, interval=interval, every_records=every
            ):
                taken_at = time.monotonic()
                attempted = engine.last_seq
                try:
                    last = await engine.snapshot()
                except Exception as error:  # as the service: logged, retried when due again
                    print(f"generator: snapshot failed: {error!r}"[:300], file=sys.stderr, flush=True)
                    last = attempted

    background = [asyncio.create_task(settle()), asyncio.create_task(compactor.run())]
    snapshotter = asyncio.create_task(snapshots())
    acked = 0
    session_index = 0
    while True:
        session_id = SESSION0 + session_index
        start = clock.now
        await engine.execute(PutSession(session_id, start, start, start + 1000, start + SESSION_MS))
        lots = lot_ids(session_index)
        puts = [engine.execute(PutLot(lot, session_id, ["fixed", START_PRICE, UNIT])) for lot in lots]
        for outcome in await asyncio.gather(*puts):
            assert outcome.ok, outcome
        clock.now = start + 1000  # the session's bidding starts (a journaled Tick opens its lots)
        engine.poke()
        placed = [
            engine.execute(PlaceBid(lot, bidder(j, k), START_PRICE + UNIT * k, f"g{session_index}.{j}.{k}"))
            for k in range(BIDS_PER_LOT)
            for j, lot in enumerate(lots)
        ]
        for outcome in await asyncio.gather(*placed):
            if not outcome.ok:
                raise SystemExit(f"generator: a bid was refused: {outcome}")
        acked += len(placed)
        session_index += 1
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "acked": acked,
                    "sessions": session_index,
                    "last_seq": engine.last_seq,
                    "archived_seq": archiver.archived_seq,
                    "compacted_lots": compactor.compacted,
                    "lots": len(engine.book.lots),
                }
            )
        )
        tmp.replace(progress)
        clock.now = start + SESSION_MS  # its end: the next session's first Tick closes its lots
        # The simulated clock runs far ahead of what the archive can write (~14k bids/s here against
        # its few thousand): bid on only while the archive is at most ARCHIVE_LAG_RECORDS behind, as
        # a service bidding at a rate its archive sustains. Otherwise snapshots (which wait for it)
        # and compaction (which follows it) would fall behind without bound.
        await archiver.wait_caught_up(engine.last_seq - ARCHIVE_LAG_RECORDS)
        for task in (snapshotter, *background):
            if task.done():
                task.result()


# ------------------------------------------------------------------------------------ restarts
def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    out = log.open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, str(E2E / "gavel_server.py")], cwd=ROOT, env=env, stdout=out, stderr=out
    )
    return process, started


def rss_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash; its archiver child dies with it (PR_SET_PDEATHSIG)."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


async def first_answers(
    port: int, session_id: int, lot_id: int, token: str, started: float, process: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Seconds from exec to /healthz 200, to the first REST answer and to the first accepted bid."""
    base = f"http://127.0.0.1:{port}"
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    seen: dict[str, float] = {}

    async def poll(name: str, path: str) -> dict[str, Any]:
        while True:
            if process.poll() is not None:
                raise RuntimeError("the server exited during its restart")
            try:
                answer = await http.fetch(base + path, request_timeout=30, raise_error=False)
                if answer.code == 200:
                    seen[name] = time.perf_counter() - started
                    return json.loads(answer.body) if answer.body else {}
            except OSError:
                pass
            await asyncio.sleep(0.005)

    async def bid() -> None:
        while True:
            if process.poll() is not None:
                raise RuntimeError("the server exited during its restart")
            try:
                socket = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws?token={token}")
            except OSError:
                await asyncio.sleep(0.005)
                continue
            price, ref = 0, f"restart-{time.time_ns()}"
            while True:
                message = await socket.read_message()
                if message is None:
                    raise RuntimeError("the websocket closed before the bid was accepted")
                frame = json.loads(message)
                if frame.get("type") == "hello":
                    socket.write_message(json.dumps({"op": "subscribe", "session_id": session_id}))
                elif frame.get("type") == "snapshot" and not price:
                    lots = {lot["lot_id"]: lot for lot in frame.get("lots", [])}
                    price = int(lots[lot_id]["next_min"]) if lot_id in lots else 0
                    if not price:
                        raise RuntimeError(f"no lot {lot_id} in the session snapshot: {message[:300]!r}")
                    socket.write_message(
                        json.dumps({"op": "bid", "lot_id": lot_id, "price": price, "ref": ref})
                    )
                elif frame.get("type") == "accepted" and frame.get("ref") == ref:
                    seen["first_bid_s"] = time.perf_counter() - started
                    socket.close()
                    return
                elif frame.get("type") in ("rejected", "error"):
                    raise RuntimeError(f"the restart's bid was refused: {message[:300]!r}")

    await asyncio.wait_for(
        asyncio.gather(
            poll("healthz_s", "/healthz"), poll("rest_s", f"/api/v1/sessions/{session_id}"), bid()
        ),
        120,
    )
    http.close()
    return {key: round(value, 3) for key, value in sorted(seen.items())}


HELLO = """
import sys, tornado.ioloop, tornado.web
class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("ok")
tornado.web.Application([(r"/healthz", Hello)]).listen(int(sys.argv[1]), "127.0.0.1")
tornado.ioloop.IOLoop.current().start()
"""


def hello_world_start() -> float:
    """The baseline: exec of a Tornado hello-world process to its first 200, on this machine now."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([PYTHON, "-c", HELLO, str(port)], cwd=ROOT)
    try:
        http = tornado.httpclient.HTTPClient()
        while True:
            try:
                if (
                    http.fetch(f"http://127.0.0.1:{port}/healthz", request_timeout=5, raise_error=False).code
                    == 200
                ):
                    return round(time.perf_counter() - started, 3)
            except OSError:
                time.sleep(0.005)
    finally:
        kill(process)


# ------------------------------------------------------------------------------------ checks
def check_and_replay(
    data_dir: Path, mongo_url: str, database: str, progress: dict[str, Any]
) -> dict[str, Any]:
    """Recover the engine here as the service does; check the bids; time the tail's replay."""
    import gc

    from composition.service import engine_snapshots
    from engine import journal
    from engine.clock import SystemClock
    from engine.engine import Engine
    from persistence import mongo
    from persistence.cluster import DEFAULT_ENGINE_ID

    async def latest() -> tuple[int, bytes] | None:
        client = mongo.connect(mongo_url, app_name="gavel-recovery-check")
        try:
            return await engine_snapshots(data_dir, client[database], DEFAULT_ENGINE_ID).latest()
        finally:
            await client.close()

    snapshot = asyncio.run(latest())
    engine = Engine(SystemClock(), data_dir / "journal", None, sync=False)
    load_s = 0.0
    if snapshot is not None:
        started = time.perf_counter()
        engine.load_snapshot(snapshot[1])
        load_s = time.perf_counter() - started
    after = engine.last_seq
    journal_dir = data_dir / "journal"
    # The baseline: the same records through the journal's record decoder and nothing else.
    gc.collect()
    started = time.perf_counter()
    decoded = sum(1 for _ in journal.recover(journal_dir, after, read_only=True))
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    replayed = engine.replay(journal.recover(journal_dir, after, read_only=True))
    replay_s = time.perf_counter() - started
    assert replayed == decoded, (replayed, decoded)

    book = engine.book
    wrong: list[str] = []
    for session_index in range(progress.get("sessions", 0)):
        for lot_id in lot_ids(session_index):
            lot = book.lots.get(lot_id)
            want_price = START_PRICE + UNIT * (BIDS_PER_LOT - 1)
            if lot is None or lot.bid_count != BIDS_PER_LOT or lot.price != want_price:
                wrong.append(f"lot {lot_id}: {None if lot is None else (lot.bid_count, lot.price)}")
    generated = sum(lot.bid_count for lot_id, lot in book.lots.items() if lot_id >= LOT0)
    submitted_at_most = progress.get("acked", 0) + BIDS_PER_SESSION
    return {
        "acknowledged_bids": progress.get("acked", 0),
        "bids_in_book": generated,
        "lots_in_book": len(book.lots),
        "compacted_lots_in_book": sum(1 for lot in book.lots.values() if lot.compacted),
        "every_acknowledged_bid_there": not wrong
        and progress.get("acked", 0) <= generated <= submitted_at_most,
        "wrong_lots": wrong[:5],
        "snapshot_seq": after,
        "snapshot_bytes": 0 if snapshot is None else len(snapshot[1]),
        "snapshot_load_s": round(load_s, 3),
        "tail_records": replayed,
        "tail_replay_s": round(replay_s, 3),
        "tail_decode_s": round(decode_s, 3),
        "replay_records_per_s": round(replayed / replay_s) if replay_s else None,
        "decode_records_per_s": round(decoded / decode_s) if decode_s else None,
        "replay_to_decoder": round(decode_s / replay_s, 3) if replay_s and decode_s else None,
    }


def disk_use(data_dir: Path, mongo_url: str, database: str) -> dict[str, int]:
    from pymongo import MongoClient

    journal_bytes = sum(path.stat().st_size for path in (data_dir / "journal").glob("journal-*.log"))
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    heads = list(client[database].snapshots.find({}, {"size": 1}))
    client.close()
    local = list((data_dir / "snapshots").glob("snapshot-*.msgpack"))
    return {
        "journal_bytes": journal_bytes,
        "journal_segments": len(list((data_dir / "journal").glob("journal-*.log"))),
        "mongodb_snapshots_bytes": sum(int(head.get("size", 0)) for head in heads),
        "mongodb_snapshots_kept": len(heads),
        "local_snapshots_bytes": sum(path.stat().st_size for path in local),
        "local_snapshots_kept": len(local),
    }


# ------------------------------------------------------------------------------------ one size
def one_size(bids: int, runs: int, services: Services, work: Path, phase: str, say: Any) -> dict[str, Any]:
    """One history size: set up and generate (phase "generate" or "all"), restart and check
    (phase "restart" or "all"). The phases share `work` (its MongoDB and Redis data persist)."""
    data_dir = work / f"size-{bids}"
    database = f"bench_recovery_{bids}"
    state_path = data_dir / "bench.json"
    progress_path = data_dir / "progress.json"
    if phase in ("generate", "all"):
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        history = make_history(bids, services, data_dir, database, say)
        state_path.write_text(json.dumps({"port": free_port(), **history}))
        if phase == "generate":
            return {"bids_since_start": bids, "generate_s": history["generate_s"]}
    state = json.loads(state_path.read_text())
    progress = (
        json.loads(progress_path.read_text()) if progress_path.exists() else {"acked": 0, "sessions": 0}
    )
    port = state["port"]
    env = gavel_env(services.mongo_url, services.redis_url, database, PORT=str(port), DATA_DIR=str(data_dir))
    disk = disk_use(data_dir, services.mongo_url, database)
    restarts: list[dict[str, Any]] = []
    for run in range(runs):
        process, started = start_server(env, data_dir / "server.log")
        try:
            figures = asyncio.run(
                # The two bidders take turns, across runs too: a leader may not outbid itself.
                first_answers(
                    port,
                    state["session_id"],
                    state["lots"][0],
                    state["tokens"][state.get("restarts", 0) % 2],
                    started,
                    process,
                )
            )
            figures["rss_mb"] = rss_mb(process.pid)  # after recovery, as it serves its first bid
        finally:
            kill(process)
        state["restarts"] = state.get("restarts", 0) + 1
        state_path.write_text(json.dumps(state))
        figures["hello_world_s"] = hello_world_start()
        say(f"{bids:,}: restart {run + 1}: {figures}")
        restarts.append(figures)
    check = check_and_replay(data_dir, services.mongo_url, database, progress)
    say(f"{bids:,}: check: {check}")
    median = {key: statistics.median(run[key] for run in restarts) for key in restarts[0]}
    return {
        "bids_since_start": bids,
        "generate_s": state["generate_s"],
        "restarts": restarts,
        "median": median,
        "first_bid_over_hello_world": round(median["first_bid_s"] / median["hello_world_s"], 1),
        "disk": disk,
        "check": check,
    }


def make_history(bids: int, services: Services, data_dir: Path, database: str, say: Any) -> dict[str, Any]:
    """The REST set-up on the real service, then N acknowledged bids, SIGKILLed mid-load."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url)
    client.drop_database(database)  # a history made again starts from nothing
    client.close()
    port = free_port()
    env = gavel_env(services.mongo_url, services.redis_url, database, PORT=str(port), DATA_DIR=str(data_dir))
    process, _ = start_server(env, data_dir / "server.log")
    try:
        _wait_port(port, process)
        # The history runs ahead of the wall clock (10M bids: ~14 simulated hours); the set-up
        # session, which the restarts bid on, must still be open at its end.
        history_hours = bids / SIM_BIDS_PER_S / 3600
        setup = asyncio.run(set_up_gavel(port, 2, bidding_hours=max(8.0, 1.25 * history_hours + 2)))
    finally:
        kill(process)
    say(f"{bids:,}: set up: session {setup['session_id']}, lots {setup['lots']}")
    progress_path = data_dir / "progress.json"
    started = time.perf_counter()
    if bids:
        command = [PYTHON, __file__, "--generate", str(data_dir), services.mongo_url, database, str(bids)]
        generator = subprocess.Popen(
            [*command, str(progress_path)],
            cwd=ROOT,
            # The product's snapshot settings (the restarted service's SNAPSHOT_INTERVAL=3600 only
            # keeps a snapshot out of its measurement).
            env={key: value for key, value in os.environ.items() if not key.startswith("SNAPSHOT_")},
        )
        last_acked, moved_at = -1, time.perf_counter()
        try:
            while True:
                if generator.poll() is not None:
                    raise RuntimeError(f"the generator exited ({generator.returncode})")
                if progress_path.exists() and json.loads(progress_path.read_text())["acked"] >= bids:
                    break
                if time.perf_counter() - started > GENERATE_LIMIT_S:
                    say(f"{bids:,}: generation stopped at its time limit ({GENERATE_LIMIT_S:.0f} s)")
                    break
                acked = json.loads(progress_path.read_text())["acked"] if progress_path.exists() else 0
                if acked != last_acked:
                    last_acked, moved_at = acked, time.perf_counter()
                elif time.perf_counter() - moved_at > STALL_S:
                    # The embedded MongoDB (SecantusDB) hung now and then under this load (every
                    # thread waiting on a lock beside its TTL sweeper): the history ends where it stopped.
                    say(f"{bids:,}: generation stalled for {STALL_S:.0f} s at {acked:,} bids: stopped there")
                    break
                time.sleep(0.05)
            time.sleep(0.2)  # mid-load: the next session's bids are being applied and fsynced
        finally:
            kill(generator)
        say(f"{bids:,}: generated {json.loads(progress_path.read_text())['acked']:,} acknowledged bids")
    return {**setup, "generate_s": round(time.perf_counter() - started, 1)}


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# ------------------------------------------------------------------------------------ chart
def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    # A history cut by its time limit is plotted at the bids it holds.
    bids = [size["check"].get("acknowledged_bids", size["bids_since_start"]) for size in sizes]
    xs = [max(count, 1) for count in bids]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label in (
        ("healthz_s", "/healthz 200"),
        ("rest_s", "first REST answer"),
        ("first_bid_s", "first accepted bid"),
        ("hello_world_s", "hello-world start (baseline)"),
    ):
        left.plot(xs, [size["median"][key] for size in sizes], marker="o", label=label)
    left.axhline(TARGET_S, color="grey", linestyle="--", label=f"target {TARGET_S:.0f} s")
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("acknowledged bids since start (0 plotted at 1)")
    left.set_ylabel("seconds from exec (median of restarts)")
    left.set_title("Restart after SIGKILL")
    left.legend(fontsize=8)
    middle.plot(
        xs, [size["check"]["snapshot_bytes"] / 2**20 for size in sizes], marker="o", label="snapshot (MiB)"
    )
    middle.plot(
        xs, [size["median"].get("rss_mb", 0) for size in sizes], marker="o", label="RSS after recovery (MiB)"
    )
    middle.set_xscale("log")
    middle.set_ylim(bottom=0)
    middle.set_xlabel("acknowledged bids since start (0 plotted at 1)")
    middle.set_title("What the history costs a restart")
    middle.legend(fontsize=8)
    names = [f"{count:,}" for count in bids]
    replay = [size["check"]["replay_records_per_s"] or 0 for size in sizes]
    decode = [size["check"]["decode_records_per_s"] or 0 for size in sizes]
    positions = range(len(sizes))
    right.bar([p - 0.2 for p in positions], decode, 0.4, label="bare record decoder")
    right.bar([p + 0.2 for p in positions], replay, 0.4, label="replay (engine)")
    right.set_xticks(list(positions), names)
    right.set_xlabel("bids since start")
    right.set_ylabel("journal records/s (tail after the snapshot)")
    right.set_title("Replay rate vs the decoder, same run")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        data_dir, mongo_url, database, bids, progress = sys.argv[2:7]
        asyncio.run(generate(Path(data_dir), mongo_url, database, int(bids), Path(progress)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0,100000,1000000", help="bids since start, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="restarts per size (median)")
    parser.add_argument("--quick", action="store_true", help="0 and 100k bids, one restart each")
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: a temp dir, removed)"
    )
    parser.add_argument(
        "--phase",
        choices=("all", "generate", "restart"),
        default="all",
        help="generate: set-up and history only (no lock needed); restart: the restarts on them (--dir)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    sizes = [0, 100_000] if args.quick else [int(size) for size in args.sizes.split(",")]
    runs = 1 if args.quick else args.runs
    chart_path = args.chart or (QUICK_CHART if args.quick else DEFAULT_CHART)
    if args.phase != "all" and args.dir is None:
        parser.error("--phase generate/restart need --dir")
    work = args.dir or Path(tempfile.mkdtemp(prefix="gavel-recovery-"))

    def say(text: str) -> None:
        if args.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    env = {key: value for key, value in os.environ.items() if key not in ("MONGODB_URL", "REDIS_URL")}
    with Services.from_env(work / "services", env) as services:
        results = [one_size(size, runs, services, work, args.phase, say) for size in sizes]
    if args.phase == "generate":
        print(json.dumps({"generated": results}))
        return
    result: dict[str, Any] = {
        "target_s": TARGET_S,
        "sizes": results,
        "targets": {
            f"first_bid_le_{TARGET_S:.0f}s_at_{size['bids_since_start']}": size["median"]["first_bid_s"]
            <= TARGET_S
            for size in results
        },
        "every_acknowledged_bid_there": all(
            size["check"]["every_acknowledged_bid_there"] for size in results
        ),
        "runs": runs,
        "history": {
            "lots_per_session": LOTS_PER_SESSION,
            "bids_per_lot": BIDS_PER_LOT,
            "bidders": BIDDERS,
            "simulated_bids_per_s": SIM_BIDS_PER_S,
        },
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "python": sys.version.split()[0],
        "elapsed_s": round(time.perf_counter() - started, 1),
        "chart": str(chart_path),
    }
    chart(result, chart_path)
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
