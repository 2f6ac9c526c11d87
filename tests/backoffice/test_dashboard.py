"""The dashboard's pure figures: business-day buckets, totals since a moment, chart bars."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from backoffice import dashboard as dash

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = datetime.UTC
# Wednesday 2026-12-09 01:30 in Shanghai is still Tuesday 17:30 in UTC.
NOW = datetime.datetime(2026, 12, 8, 17, 30, tzinfo=UTC)


def ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_today_and_this_week_are_business_zone_periods() -> None:
    span = dash.periods(NOW, SHANGHAI)
    assert span.today == datetime.datetime(2026, 12, 8, 16, tzinfo=UTC)  # 2026-12-09 00:00 +08
    assert span.week == datetime.datetime(2026, 12, 6, 16, tzinfo=UTC)  # Monday 2026-12-07 00:00 +08
    assert span.chart_from == datetime.datetime(2026, 11, 25, 16, tzinfo=UTC)  # 13 days before today


def test_totals_since_count_and_sum_what_falls_inside() -> None:
    span = dash.periods(NOW, SHANGHAI)
    sales = [
        dash.Sale(datetime.datetime(2026, 12, 8, 16, 0, tzinfo=UTC), 100_00),  # today 00:00 local: in
        dash.Sale(ms(datetime.datetime(2026, 12, 8, 15, 59, tzinfo=UTC)), 50_00),  # yesterday 23:59 local
        dash.Sale(datetime.datetime(2026, 12, 6, 15, 0), 7_00),  # naive = UTC: Sunday local, last week
    ]
    assert dash.total_since(sales, span.today) == dash.Total(1, 100_00)
    assert dash.total_since(sales, span.week) == dash.Total(2, 150_00)
    assert dash.Total(1, 5) + dash.Total(2, 7) == dash.Total(3, 12)


def test_by_day_keeps_empty_days_and_drops_older_sales() -> None:
    sales = [
        dash.Sale(datetime.datetime(2026, 12, 8, 16, 30, tzinfo=UTC), 10),  # 12-09 local
        dash.Sale(datetime.datetime(2026, 12, 8, 15, 30, tzinfo=UTC), 20),  # 12-08 local
        dash.Sale(datetime.datetime(2026, 12, 8, 2, 0, tzinfo=UTC), 30),  # 12-08 local
        dash.Sale(datetime.datetime(2026, 11, 1, tzinfo=UTC), 999),  # too old
    ]
    days = dash.by_day(sales, NOW, SHANGHAI)
    assert len(days) == 14
    assert days[0].day == datetime.date(2026, 11, 26) and days[-1].day == datetime.date(2026, 12, 9)
    assert days[-1].total == dash.Total(1, 10) and days[-2].total == dash.Total(2, 50)
    assert sum(d.total.fen for d in days) == 60


def test_bars_scale_to_the_largest_value() -> None:
    bars = dash.bars([0, 50, 100], ["a", "b", "c"], ["0", "50", "100"], width=300, height=100)
    assert [b.height for b in bars] == [0, 50, 100]
    assert [b.y for b in bars] == [100, 50, 0]
    assert bars[1].x == 102 and bars[1].width == 96
    assert dash.bars([0, 0], ["a", "b"], ["", ""])[0].height == 0
    assert dash.bars([], [], []) == []
