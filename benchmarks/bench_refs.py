"""Memory of the engine's reference cache, per remembered ref. Prints one JSON object.

The engine takes `--bids` bids of mixed traffic (benchmarks/traffic.py) from `--bidders`
bidders, each with a ref of `--ref-length` characters (a UUID is 36), with the cache large enough
to keep every one. Then the cache alone is dropped under tracemalloc: the bytes freed, divided by
the refs it held, are what one remembered ref costs (the ref string, the bid it was given to, its
answer and the decision inside, the dict slot), accepted and rejected apart. The same again for
the cache a replay of that journal rebuilds (`replayed_*`), which must cost the same.
"""

import argparse
import asyncio
import gc
import json
import pathlib
import sys
import tempfile
import tracemalloc
from typing import Any

import uvloop

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.modes import mode
from benchmarks.traffic import HOUR, START, T0, UNIT, mixed_traffic
from engine import journal
from engine.clock import FakeClock
from engine.commands import PlaceBid, PutLot, PutSession, SetMaxBid, Tick
from engine.engine import Engine


def dropped_bytes(engine: Engine, side: str) -> tuple[int, int]:
    """(bytes freed by dropping the accepted or rejected side of the cache, refs it held)."""
    book = getattr(engine.refs, side)
    refs = sum(len(entries) for entries in book.values())
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    setattr(engine.refs, side, {})
    del book
    gc.collect()
    return before - tracemalloc.get_traced_memory()[0], refs


async def measure(args: argparse.Namespace, directory: pathlib.Path) -> dict[str, Any]:
    tracemalloc.start()  # from the start: only blocks allocated under it are counted when freed
    clock = FakeClock(T0)
    big = 1 << 30  # remember everything: the cost per ref is what is measured
    engine = Engine(clock, directory, None, sync=False, refs_per_user=big)
    if hasattr(engine.refs, "rejected_per_user"):  # builds from before it existed share per_user
        engine.refs.rejected_per_user = big
    await engine.start()
    await engine.execute(PutSession(1, T0, T0 + 1, T0 + 1, T0 + 24 * HOUR))
    for lot_id in range(1, args.lots + 1):
        assert (await engine.execute(PutLot(lot_id, 1, ["fixed", START, UNIT]))).ok
    clock.set(T0 + 1)
    await engine.execute(Tick())
    traffic = mixed_traffic(args.lots, args.bids, bidders=args.bidders)
    pad = "x" * args.ref_length
    for start in range(0, len(traffic), 1000):
        answers = [
            engine.execute(
                (SetMaxBid if is_max else PlaceBid)(lot_id, bidder, amount, f"{n}{pad}"[: args.ref_length])
            )
            for n, (lot_id, bidder, amount, is_max) in enumerate(traffic[start : start + 1000], start)
        ]
        await asyncio.gather(*answers)
    await engine.stop(snapshot=False)
    accepted_bytes, accepted = dropped_bytes(engine, "answers")
    rejected_bytes, rejected = dropped_bytes(engine, "rejections")

    replica = Engine(FakeClock(T0), directory, None, sync=False, refs_per_user=big)
    replica.replay(journal.recover(directory))
    replayed_bytes, replayed = dropped_bytes(replica, "answers")
    tracemalloc.stop()
    return {
        "bytes_per_accepted_ref": round(accepted_bytes / max(accepted, 1)),
        "bytes_per_rejected_ref": round(rejected_bytes / max(rejected, 1)),
        "bytes_per_replayed_ref": round(replayed_bytes / max(replayed, 1)),
        "accepted_refs": accepted,
        "rejected_refs": rejected,
        "replayed_refs": replayed,
        "ref_length": args.ref_length,
        "bids": args.bids,
        "bidders": args.bidders,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=1_000)
    parser.add_argument("--bids", type=int, default=100_000)
    parser.add_argument("--bidders", type=int, default=50)
    parser.add_argument("--ref-length", type=int, default=36)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gavel-bench-refs-") as root:
        result = uvloop.run(measure(args, pathlib.Path(root)))
    result.update(mode())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
