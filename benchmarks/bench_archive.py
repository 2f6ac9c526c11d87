"""Write-behind throughput: bids/s the archiver stores into MongoDB (embedded SecantusDB unless
MONGODB_URL is set). Prints one JSON object. Peer in the same run: plain `insert_many` of the same
bid documents with no mirror, the storage limit the archiver works against.
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


async def measure(url: str, total: int) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    db = client[f"bench_{uuid.uuid4().hex[:8]}"]
    try:
        await db.lots.insert_many([{"_id": lot} for lot in range(100)])
        archiver = BidArchiver(db)
        archiver.start()
        batches = make_batches(total, 20)
        started = time.perf_counter()
        for batch in batches:
            archiver.on_batch(batch)
        assert await archiver.wait_caught_up(total, timeout=300)
        archive_rate = total / (time.perf_counter() - started)
        await archiver.stop()
        docs = [{"_id": f"peer:{n}", "lot_id": n % 100, "price": n} for n in range(total)]
        started = time.perf_counter()
        for first in range(0, total, 5000):
            await db.peer.insert_many(docs[first : first + 5000], ordered=False)
        peer_rate = total / (time.perf_counter() - started)
        return {
            "archive_bids_per_s": round(archive_rate),
            "peer_insert_many_docs_per_s": round(peer_rate),
            "ratio_to_insert_many": round(archive_rate / peer_rate, 3),
            "bids": total,
        }
    finally:
        await client.drop_database(db.name)
        await client.close()


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp, Services.from_env(pathlib.Path(tmp), os.environ) as services:
        print(json.dumps(asyncio.run(measure(services.mongo_url, total))))


if __name__ == "__main__":
    main()
