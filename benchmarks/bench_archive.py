"""Write-behind throughput: bids/s the archiver stores into MongoDB (embedded SecantusDB unless
MONGODB_URL is set), and MongoDB's CPU per bid when it is the embedded server. Prints one JSON
object. Peers in the same run:

- `insert_many` of small documents with no index and no mirror: the storage limit;
- the archive as it was before the bid buckets: one document per bid with the `bids` collection's
  two secondary indexes, written in the same chunks (`ratio_to_per_bid_documents`).

    .venv/bin/python benchmarks/bench_archive.py [BIDS]
"""

import asyncio
import json
import os
import pathlib
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pymongo import AsyncMongoClient

from engine.book.events import BidPlaced, PriceChanged
from engine.engine import CommittedBatch
from persistence.archive import BidArchiver
from persistence.embedded import Services
from persistence.mongo import ensure_indexes

T0 = 1_700_000_000_000


def make_batches(total: int, per_batch: int) -> list[CommittedBatch]:
    batches = []
    for n in range(total // per_batch):
        events: list[Any] = []
        seqs: list[int] = []
        for seq in range(n * per_batch + 1, (n + 1) * per_batch + 1):
            lot, bidder, price = seq % 100, seq % 97 + 1, 1000 + seq
            events.append(BidPlaced(lot, 1, bidder, price, False, T0 + seq))
            events.append(PriceChanged(lot, 1, price, bidder, seq, price + 100, T0 + 60_000, T0 + seq))
            seqs += [seq, seq]
        batches.append(CommittedBatch(events, seqs))
    return batches


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, total: int, mongo_pid: int | None) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    db = client[f"bench_{uuid.uuid4().hex[:8]}"]
    try:
        await ensure_indexes(db)
        await db.lots.insert_many([{"_id": lot, "session_id": 1, "catalogue_no": lot} for lot in range(100)])
        archiver = BidArchiver(db)
        archiver.start()
        batches = make_batches(total, 20)
        started, cpu = time.perf_counter(), cpu_seconds(mongo_pid)
        for batch in batches:
            archiver.on_batch(batch)
        assert await archiver.wait_caught_up(total, timeout=300)
        archive_rate = total / (time.perf_counter() - started)
        archive_cpu = cpu_seconds(mongo_pid) - cpu
        await archiver.stop()

        # The previous design: a document per bid, in the archiver's chunks (5,000 events = 2,500 bids).
        per_bid = [
            {
                "_id": f"{n}:0",
                "lot_id": n % 100,
                "session_id": 1,
                "bidder": n % 97 + 1,
                "price": 1000 + n,
                "auto": False,
                "at": T0 + n,
                "seq": n,
            }
            for n in range(1, total + 1)
        ]
        started, cpu = time.perf_counter(), cpu_seconds(mongo_pid)
        for first in range(0, total, 2500):
            await db.bids.insert_many(per_bid[first : first + 2500], ordered=False)
        per_bid_rate = total / (time.perf_counter() - started)
        per_bid_cpu = cpu_seconds(mongo_pid) - cpu

        docs = [{"_id": f"peer:{n}", "lot_id": n % 100, "price": n} for n in range(total)]
        started = time.perf_counter()
        for first in range(0, total, 5000):
            await db.peer.insert_many(docs[first : first + 5000], ordered=False)
        peer_rate = total / (time.perf_counter() - started)
        result: dict[str, Any] = {
            "archive_bids_per_s": round(archive_rate),
            "per_bid_documents_bids_per_s": round(per_bid_rate),
            "ratio_to_per_bid_documents": round(archive_rate / per_bid_rate, 2),
            "peer_insert_many_docs_per_s": round(peer_rate),
            "ratio_to_insert_many": round(archive_rate / peer_rate, 3),
            "bids": total,
        }
        if mongo_pid is not None:
            result["mongo_cpu_us_per_bid"] = {
                "archive": round(archive_cpu / total * 1e6, 1),
                "per_bid_documents": round(per_bid_cpu / total * 1e6, 1),
            }
        return result
    finally:
        await client.drop_database(db.name)
        await client.close()


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp, Services.from_env(pathlib.Path(tmp), os.environ) as services:
        mongo_pid = next((s.process.pid for s in services.embedded if s.name == "mongo"), None)
        print(json.dumps(asyncio.run(measure(services.mongo_url, total, mongo_pid))))


if __name__ == "__main__":
    main()
