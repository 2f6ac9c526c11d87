"""Engine throughput with the journal (group-commit fsync) and replay speed. Prints one JSON object.

- engine_acked_bids_per_s: closed-loop clients (each sends its next bid when the previous one is
  acknowledged, as a websocket bidder does) against the engine with a real fsynced journal,
  under uvloop. Peer in the same run: the bare journal (append + the same fsync cadence, no
  book), i.e. the durability limit of this disk, reported as `ratio_to_bare_journal`.
- replay_records_per_s: recovery of a journal of `--replay-bids` bids (default 1,000,000).
Median of `--runs` runs.
"""

import argparse
import asyncio
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack
import uvloop

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.modes import add_interpreted, mode
from benchmarks.traffic import HOUR, START, T0, UNIT, mixed_traffic
from engine import journal
from engine.clock import FakeClock
from engine.commands import TAGS, Outcome, PlaceBid, PutLot, PutSession, SetMaxBid, Tick
from engine.engine import Engine


async def setup_engine(directory: pathlib.Path, lots: int, sync: bool) -> Engine:
    clock = FakeClock(T0)
    engine = Engine(clock, directory, None, sync=sync)
    await engine.start()
    await engine.execute(PutSession(1, T0, T0, T0, T0 + 24 * HOUR))
    for lot_id in range(1, lots + 1):
        engine.submit(PutLot(lot_id, 1, ["fixed", START, UNIT]))
    clock.set(T0 + 1)
    await engine.execute(Tick())
    return engine


async def closed_loop(engine: Engine, traffic: list[tuple[int, int, int, bool]], clients: int) -> float:
    """Each client keeps one bid in flight; returns acknowledged bids per second."""
    done = asyncio.get_running_loop().create_future()
    position = 0
    answered = 0
    total = len(traffic)

    def next_bid(reply: Callable[[Outcome], None]) -> None:
        nonlocal position
        if position >= total:
            return
        lot_id, bidder, amount, is_max = traffic[position]
        ref = f"b{position}"
        position += 1
        command = SetMaxBid(lot_id, bidder, amount, ref) if is_max else PlaceBid(lot_id, bidder, amount, ref)
        engine.submit(command, reply)

    def reply(_outcome: Outcome) -> None:
        nonlocal answered
        answered += 1
        if answered == total:
            done.set_result(None)
        else:
            next_bid(reply)

    started = time.perf_counter()
    for _ in range(clients):
        next_bid(reply)
    await done
    return total / (time.perf_counter() - started)


async def bare_journal(directory: pathlib.Path, payloads: list[bytes], batch: int) -> float:
    """The durability limit: the same records appended and fsynced in batches, no book."""
    writer = journal.JournalWriter(directory, 1, sync=True)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for first in range(0, len(payloads), batch):
        for payload in payloads[first : first + batch]:
            writer.append(payload)
        await loop.run_in_executor(None, writer.write_and_sync, writer.take_batch())
    elapsed = time.perf_counter() - started
    writer.close()
    return len(payloads) / elapsed


def write_replay_journal(directory: pathlib.Path, lots: int, bids: int) -> None:
    """A journal as the engine writes it: session, lots, a tick, then `bids` mixed bids."""
    writer = journal.JournalWriter(directory, 1, sync=False)
    pack = msgpack.packb
    writer.append(pack((TAGS[PutSession], T0, *PutSession(1, T0, T0, T0, T0 + 24 * HOUR))))
    for lot_id in range(1, lots + 1):
        writer.append(pack((TAGS[PutLot], T0, *PutLot(lot_id, 1, ["fixed", START, UNIT]))))
    writer.append(pack((TAGS[Tick], T0 + 1)))
    for n, (lot_id, bidder, amount, is_max) in enumerate(mixed_traffic(lots, bids, seed=3)):
        command: Any = (
            SetMaxBid(lot_id, bidder, amount, f"r{n}")
            if is_max
            else PlaceBid(lot_id, bidder, amount, f"r{n}")
        )
        writer.append(pack((TAGS[type(command)], T0 + 1, *command)))
        if writer.pending() >= 50_000:
            writer.write_and_sync(writer.take_batch())
    writer.write_and_sync(writer.take_batch())
    writer.close()


def replay_rate(directory: pathlib.Path) -> tuple[float, int]:
    engine = Engine(FakeClock(T0), directory, None, sync=False)
    started = time.perf_counter()
    count = engine.replay(journal.recover(directory))
    return count / (time.perf_counter() - started), count


async def measure(args: argparse.Namespace, root: pathlib.Path) -> dict[str, Any]:
    traffic = mixed_traffic(args.lots, args.bids)
    engine_rates, bare_rates, batch_sizes = [], [], []
    for run in range(args.runs):
        engine = await setup_engine(root / f"engine-{run}", args.lots, sync=True)
        before = dict(engine.stats)
        engine_rates.append(await closed_loop(engine, traffic, args.clients))
        batches = engine.stats["batches"] - before["batches"]
        batch_sizes.append((engine.stats["commands"] - before["commands"]) / max(batches, 1))
        await engine.stop(snapshot=False)
        payloads = [
            msgpack.packb((1, T0 + 1, lot, bidder, amount, f"b{i}"))
            for i, (lot, bidder, amount, _m) in enumerate(traffic)
        ]
        bare_rates.append(await bare_journal(root / f"bare-{run}", payloads, max(1, round(batch_sizes[-1]))))
    replay_dir = root / "replay"
    write_replay_journal(replay_dir, args.lots, args.replay_bids)
    replay_rates = []
    records = 0
    for _ in range(args.runs):
        rate, records = replay_rate(replay_dir)
        replay_rates.append(rate)
    engine_rate = statistics.median(engine_rates)
    bare_rate = statistics.median(bare_rates)
    return {
        "engine_acked_bids_per_s": round(engine_rate),
        "engine_acked_bids_per_s_runs": [round(r) for r in engine_rates],
        "mean_group_commit_size": round(statistics.median(batch_sizes), 1),
        "bare_journal_records_per_s": round(bare_rate),
        "ratio_to_bare_journal": round(engine_rate / bare_rate, 3),
        "replay_records_per_s": round(statistics.median(replay_rates)),
        "replay_records": records,
        "replay_seconds": round(records / statistics.median(replay_rates), 2),
        "clients": args.clients,
        "bids": args.bids,
        "lots": args.lots,
        "runs": args.runs,
        "loop": "uvloop",
        **mode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=10_000)
    parser.add_argument("--bids", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--replay-bids", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--dir", type=pathlib.Path, default=None, help="where to put journals (default: a temp dir)"
    )
    parser.add_argument(
        "--interpreted-too",
        action="store_true",
        help="when compiled, also run on the .py sources (a child process, afterwards) and compare",
    )
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="gavel-bench-", dir=args.dir))
    try:
        result = uvloop.run(measure(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.interpreted_too:
        add_interpreted(
            result,
            __file__,
            ["engine_acked_bids_per_s", "ratio_to_bare_journal", "replay_records_per_s"],
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
