"""Pure book throughput and memory. Prints one JSON object.

Rates are measured in process CPU time (`time.process_time`), i.e. per core actually used, so a
busy neighbour on this shared 2-core machine slows them less than wall-clock timing would.

Figures: decisions per second on one core for mixed traffic over 10,000 open lots (median of
5 runs), and tracemalloc bytes per open lot (no bids), per retained bid and per compacted lot of an
ended session (the lot's share of its session with 100 whole-session depositors included: what a
closed, settled lot leaves in the book, docs/engine.md "Compacting closed lots"). The peer is a
minimal dict-based "highest bid wins" check over the same traffic in the same process, so the
ratio says how much the full rules (grid, proxy, reserve, deposits, soft close, events) cost.
"""

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.modes import add_interpreted, mode
from benchmarks.traffic import T0, mixed_traffic, open_book
from engine.book.book import Book
from engine.book.increments import FixedIncrement


def run_book(lots: int, traffic: list[tuple[int, int, int, bool]]) -> float:
    book = open_book(lots)
    place = book.place
    events = book.events
    now = T0 + 1
    gc.disable()
    started = time.process_time()
    for index, (lot_id, bidder, amount, is_max) in enumerate(traffic):
        place(lot_id, bidder, amount, is_max, now)
        if index & 1023 == 0:
            events.clear()  # the engine drains events every loop turn
    elapsed = time.process_time() - started
    gc.enable()
    return len(traffic) / elapsed


def run_peer(lots: int, traffic: list[tuple[int, int, int, bool]]) -> float:
    """The simplest thing that could decide a bid: a dict of highest prices."""
    highest = dict.fromkeys(range(1, lots + 1), 0)
    gc.disable()
    started = time.process_time()
    for lot_id, bidder, amount, _is_max in traffic:
        if amount > highest[lot_id] and bidder:
            highest[lot_id] = amount
    elapsed = time.process_time() - started
    gc.enable()
    return len(traffic) / elapsed


def measure_memory(lots: int, bids: int) -> tuple[float, float]:
    """tracemalloc bytes per open lot (no bids) and per retained bid line."""
    traffic = mixed_traffic(lots, bids, seed=11)  # allocated before tracing starts
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    book = open_book(lots)
    gc.collect()
    with_lots = tracemalloc.get_traced_memory()[0]
    now = T0 + 1
    for lot_id, bidder, amount, is_max in traffic:
        book.place(lot_id, bidder, amount, is_max, now)
        book.events.clear()
    gc.collect()
    after_bids = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    retained = sum(lot.bid_count for lot in book.lots.values())
    return (with_lots - base) / lots, (after_bids - with_lots) / retained


def ended_sessions(book: Book, sessions: int, first: int) -> None:
    """`sessions` sessions of 100 lots, 100 whole-session depositors, 3 bids a lot, closed and
    compacted as the compactor leaves them (`first`: the first session id; lot ids follow)."""
    for session_id in range(first, first + sessions):
        start = session_id * 10_000
        book.put_session(
            session_id,
            preview_start=start,
            preview_end=start,
            bidding_start=start + 10,
            bidding_end=start + 1_000,
            deposit=500,
        )
        lot_ids = list(range(session_id * 100, session_id * 100 + 100))
        for lot_id in lot_ids:
            book.put_lot(lot_id, session_id, FixedIncrement(100, 10))
        for bidder in range(1, 101):
            book.register_deposit(session_id, None, bidder)
        book.advance(start + 10)
        for index, lot_id in enumerate(lot_ids):
            for step in range(3):
                book.place(lot_id, 1 + (index + step) % 100, 100 + 10 * step, False, start + 20 + step)
        book.advance(start + 1_000)
        book.compact_lots(lot_ids)
        book.events.clear()


def measure_compacted(sessions: int) -> float:
    """tracemalloc bytes per compacted lot of an ended session, its session's share included."""
    book = Book()
    ended_sessions(book, 2, 1)  # the book's own tables and first objects, outside the measure
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ended_sessions(book, sessions, 3)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - base) / (sessions * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--memory-bids",
        type=int,
        default=300_000,
        help="bids placed under tracemalloc for bytes_per_bid (the slowest part with few --decisions)",
    )
    parser.add_argument(
        "--interpreted-too",
        action="store_true",
        help="when compiled, also run on the .py sources (a child process, afterwards) and compare",
    )
    args = parser.parse_args()
    traffic = mixed_traffic(args.lots, args.decisions)
    book_rates, peer_rates = [], []
    for _ in range(args.runs):
        book_rates.append(run_book(args.lots, traffic))
        peer_rates.append(run_peer(args.lots, traffic))
    per_lot, per_bid = measure_memory(args.lots, args.memory_bids)
    per_compacted = measure_compacted(100)
    book_rate = statistics.median(book_rates)
    peer_rate = statistics.median(peer_rates)
    result = {
        "book_decisions_per_s": round(book_rate),
        "book_decisions_per_s_runs": [round(r) for r in book_rates],
        "peer_dict_decisions_per_s": round(peer_rate),
        "ratio_to_dict_peer": round(book_rate / peer_rate, 3),
        "bytes_per_lot": round(per_lot, 1),
        "bytes_per_bid": round(per_bid, 1),
        "bytes_per_compacted_lot": round(per_compacted, 1),
        "compacted_to_open_lot": round(per_compacted / per_lot, 3),
        "lots": args.lots,
        "decisions": args.decisions,
        "runs": args.runs,
        "python": sys.version.split()[0],
        **mode(),
    }
    if args.interpreted_too:
        add_interpreted(result, __file__, ["book_decisions_per_s", "ratio_to_dict_peer"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
