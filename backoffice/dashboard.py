"""The dashboard's figures: takings and counts per business day, totals over a period, and the bars
of its small charts (docs/admin.md "Dashboard").

Pure: the handler (admin/pages.py) reads the documents and the clock and passes them in; days are
the business zone's (`backoffice/timezone.py`), so "today" ends at the zone's midnight, not UTC's.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from backoffice.timezone import as_utc, day_start, to_local, week_start

CHART_DAYS = 14


@dataclasses.dataclass(frozen=True)
class Sale:
    """One payment received: when (stored UTC, datetime or epoch ms) and how much (fen)."""

    at: datetime.datetime | int
    fen: int


@dataclasses.dataclass(frozen=True)
class Total:
    count: int = 0
    fen: int = 0

    def __add__(self, other: Total) -> Total:
        return Total(self.count + other.count, self.fen + other.fen)


@dataclasses.dataclass(frozen=True)
class Day:
    day: datetime.date
    total: Total


@dataclasses.dataclass(frozen=True)
class Periods:
    """Where "today" and "this week" begin (UTC instants of the business zone's midnights)."""

    today: datetime.datetime
    week: datetime.datetime
    chart_from: datetime.datetime  # midnight `CHART_DAYS - 1` business days before today's


def periods(now: datetime.datetime | int, zone: ZoneInfo, days: int = CHART_DAYS) -> Periods:
    today = day_start(now, zone)
    local_today = to_local(today, zone).date()
    first = local_today - datetime.timedelta(days=days - 1)
    chart_from = day_start(datetime.datetime(first.year, first.month, first.day, 12, tzinfo=zone), zone)
    return Periods(today, week_start(now, zone), chart_from)


def total_since(sales: Iterable[Sale], since: datetime.datetime) -> Total:
    """Count and sum of the sales at or after `since` (a UTC instant)."""
    total = Total()
    for sale in sales:
        if as_utc(sale.at) >= since:
            total += Total(1, sale.fen)
    return total


def by_day(
    sales: Iterable[Sale], now: datetime.datetime | int, zone: ZoneInfo, days: int = CHART_DAYS
) -> list[Day]:
    """The last `days` business days, oldest first, each with its sales' count and sum (empty days
    included); sales outside them are left out."""
    local_today = to_local(now, zone).date()
    first = local_today - datetime.timedelta(days=days - 1)
    totals = {first + datetime.timedelta(days=i): Total() for i in range(days)}
    for sale in sales:
        day = to_local(sale.at, zone).date()
        if day in totals:
            totals[day] += Total(1, sale.fen)
    return [Day(day, total) for day, total in totals.items()]


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar of an inline SVG chart (user units), with its label and its value as shown."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


def bars(
    values: Sequence[int], labels: Sequence[str], shown: Sequence[str], *, width: int = 560, height: int = 120
) -> list[Bar]:
    """Bars scaled to the largest value (all zero: flat bars of height 0), side by side with a gap."""
    if not values:
        return []
    top = max(max(values), 1)
    slot = width / len(values)
    gap = min(4.0, slot / 4)
    return [
        Bar(
            round(i * slot + gap / 2, 2),
            round(height - height * max(v, 0) / top, 2),
            round(slot - gap, 2),
            round(height * max(v, 0) / top, 2),
            label,
            text,
        )
        for i, (v, label, text) in enumerate(zip(values, labels, shown, strict=True))
    ]
