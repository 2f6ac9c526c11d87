"""An export of 100,000 ledger rows streams without holding them, and matches the database.

The rows are bulk-inserted into the embedded MongoDB, then exported through the running handler by
a client that reads the response as it arrives (it keeps only counters, a running sum and the first
and last rows). The test process's RSS (server and client are both in it; MongoDB is another
process) is sampled on every chunk received. Holding the rows instead is measured afterwards in the
same process: the export must grow RSS by less than `STREAM_BOUND_BYTES` and by less than a
quarter of what holding them costs (benchmarks/export_rss.py measures the same in a child server;
docs/performance.md "Exports").
"""

from __future__ import annotations

import csv
import datetime
import gc
import io
import pathlib
import time

import bson
import tornado.httpclient

from tests.admin.conftest import AdminClient

ROWS = 100_000
USERS = 1_000
INSERT_BATCH = 2_000  # small, so the freed insert lists leave little slack in RSS before the export
# One export batch is 500 rows (~80 KB of CSV, ~0.5 MB of documents); cursors, the socket buffer and
# allocator slack come on top. 100,000 rows held as documents cost ~100 MB (measured below), so a
# bound of 24 MB is far below anything that grows with the row count.
STREAM_BOUND_BYTES = 24 * 1024 * 1024
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def rss_bytes() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def amount_of(n: int) -> int:
    """Mixed signs and cents, so the sum checks the yuan and fen columns both ways."""
    return (n * 7919) % 200_001 - 100_000


class Reader:
    """Parses the CSV as it streams in, keeping only what the assertions need."""

    def __init__(self) -> None:
        self.pending = b""
        self.header: list[str] | None = None
        self.rows = 0
        self.fen_sum = 0
        self.yuan_sum_fen = 0
        self.first: dict[str, str] | None = None
        self.last: dict[str, str] | None = None
        self.bytes = 0
        self.peak_rss = 0

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        self.peak_rss = max(self.peak_rss, rss_bytes())
        self.pending += chunk
        complete, _, self.pending = self.pending.rpartition(b"\r\n")
        if complete:
            self.lines(complete.decode("utf-8-sig" if self.header is None else "utf-8"))

    def lines(self, text: str) -> None:
        for cells in csv.reader(io.StringIO(text, newline="")):
            if self.header is None:
                self.header = cells
                continue
            row = dict(zip(self.header, cells, strict=True))
            self.rows += 1
            self.fen_sum += int(row["amount_fen"])
            whole, _, cents = row["amount_yuan"].lstrip("-").partition(".")
            sign = -1 if row["amount_yuan"].startswith("-") else 1
            self.yuan_sum_fen += sign * (int(whole) * 100 + int(cents))
            if self.first is None:
                self.first = row
            self.last = row


async def test_a_100k_row_ledger_export_streams_and_matches_the_database(admin_client: AdminClient) -> None:
    server = admin_client.server
    db = server.ctx.db
    await db.users.insert_many(
        [{"_id": 10_000 + u, "username": f"load{u}", "username_key": f"load{u}"} for u in range(USERS)]
    )
    # The export reads `ledger` by `_id` only; the embedded MongoDB keeps the two secondary indexes
    # (unique `ref`, `user_id`+`at`) at about a millisecond per document, which would make this
    # setup, not the export, take minutes.
    await db.ledger.drop_indexes()
    # Increasing (the export's order) by construction: ObjectId()'s 3-byte counter can wrap within
    # a run of 100,000, and the ids made after the wrap would sort first.
    second = int(time.time())
    ids = [bson.ObjectId(f"{second:08x}{n:016x}") for n in range(ROWS)]
    for start in range(0, ROWS, INSERT_BATCH):
        await db.ledger.insert_many(
            [
                {
                    "_id": ids[n],
                    "user_id": 10_000 + n % USERS,
                    "kind": "load_test",
                    "amount": amount_of(n),
                    "balance_after": n,
                    "ref": f"load-{n}",
                    "at": T0 + datetime.timedelta(seconds=n),
                }
                for n in range(start, start + INSERT_BATCH)
            ],
            ordered=False,
        )
    assert await db.ledger.count_documents({}) == ROWS
    expected_sum = sum(amount_of(n) for n in range(ROWS))

    await admin_client.sign_in()
    reader = Reader()
    gc.collect()
    before = rss_bytes()
    request = tornado.httpclient.HTTPRequest(
        server.base_url + "/admin/exports/ledgers.csv?kind=load_test",
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in admin_client.cookies.items())},
        streaming_callback=reader.feed,
        request_timeout=600,
    )
    answer = await server.http.fetch(request, raise_error=False)
    assert answer.code == 200
    assert reader.pending == b""
    stream_growth = reader.peak_rss - before

    # what the database holds, and the CSV says
    assert reader.rows == ROWS
    assert reader.fen_sum == reader.yuan_sum_fen == expected_sum
    assert reader.first is not None and reader.last is not None
    assert reader.first["entry_id"] == str(ids[0]) and reader.first["ref"] == "load-0"
    assert reader.last["entry_id"] == str(ids[-1]) and reader.last["ref"] == f"load-{ROWS - 1}"
    assert reader.first["username"] == "load0" and reader.last["username"] == f"load{(ROWS - 1) % USERS}"
    assert reader.last["at_utc"] == (T0 + datetime.timedelta(seconds=ROWS - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = await db.audit.find_one({"action": "export.ledgers"})
    assert entry is not None and entry["after"]["rows"] == ROWS and entry["after"]["complete"] is True

    # what holding the rows costs, in the same process
    gc.collect()
    held_before = rss_bytes()
    held = [doc async for doc in db.ledger.find({"kind": "load_test"})]
    held_growth = rss_bytes() - held_before
    assert len(held) == ROWS
    del held
    print(
        f"\nexport of {ROWS} rows ({reader.bytes} bytes): RSS +{stream_growth / 2**20:.1f} MiB"
        f" while streaming; holding the documents: +{held_growth / 2**20:.1f} MiB"
    )
    assert stream_growth < STREAM_BOUND_BYTES
    assert stream_growth < held_growth / 4
