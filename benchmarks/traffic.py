"""Deterministic mixed bid traffic for the book and engine benchmarks.

70% valid plain bids, 20% too-low bids, 10% maximum (proxy) bids, spread over many open lots.
Commands are generated against a shadow book so that "valid" and "too low" are exactly that
when the same commands are later applied, in order, to a fresh book.
"""

import random

from engine.book.book import Book
from engine.book.increments import FixedIncrement

T0 = 1_700_000_000_000
HOUR = 3_600_000
START, UNIT = 10_000, 100


def open_book(lots: int) -> Book:
    book = Book()
    book.put_session(1, preview_start=T0, preview_end=T0, bidding_start=T0, bidding_end=T0 + 24 * HOUR)
    for lot_id in range(1, lots + 1):
        book.put_lot(lot_id, 1, FixedIncrement(START, UNIT))
    book.advance(T0)
    book.drain_events()
    return book


def mixed_traffic(
    lots: int, count: int, seed: int = 7, bidders: int = 1_000
) -> list[tuple[int, int, int, bool]]:
    """(lot_id, bidder, amount, is_max) tuples; valid/too-low/max = 70/20/10 percent."""
    rng = random.Random(seed)
    shadow = open_book(lots)
    traffic = []
    now = T0 + 1
    for _ in range(count):
        lot_id = rng.randint(1, lots)
        lot = shadow.lots[lot_id]
        bidder = rng.randint(1, bidders)
        if bidder == lot.leader:
            bidder = bidder % bidders + 1
        roll = rng.random()
        if roll < 0.7:
            amount, is_max = lot.next_min() + UNIT * rng.randint(0, 2), False
        elif roll < 0.9:
            amount, is_max = max(START - UNIT, lot.price), False
        else:
            amount, is_max = lot.next_min() + UNIT * rng.randint(3, 20), True
        shadow.place(lot_id, bidder, amount, is_max, now)
        shadow.events.clear()
        traffic.append((lot_id, bidder, amount, is_max))
    return traffic
