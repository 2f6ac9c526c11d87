"""The business time zone: shown and entered in it, stored in UTC."""

from __future__ import annotations

import datetime

import pytest

from backoffice.timezone import (
    as_utc,
    business_zone,
    day_start,
    format_local,
    input_value,
    parse_local,
    week_start,
    zone_label,
)

SHANGHAI = business_zone("Asia/Shanghai")
UTC = datetime.UTC


def test_unknown_zone_is_refused() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(ValueError):
            business_zone(name)


def test_typed_time_is_read_in_the_business_zone_and_stored_in_utc() -> None:
    stored = parse_local("2026-12-06T20:00", SHANGHAI)
    assert stored == datetime.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert input_value(stored, SHANGHAI) == "2026-12-06T20:00"
    assert format_local(stored, SHANGHAI) == "2026-12-06 20:00:00"
    # epoch milliseconds and naive UTC datetimes are the same instant
    ms = int((stored - datetime.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    assert format_local(ms, SHANGHAI) == "2026-12-06 20:00:00"
    assert as_utc(stored.replace(tzinfo=None)) == stored
    assert format_local(None, SHANGHAI) == "—"


def test_explicit_offset_wins_and_garbage_is_refused() -> None:
    assert parse_local("2026-12-06T20:00+00:00", SHANGHAI) == datetime.datetime(2026, 12, 6, 20, tzinfo=UTC)
    for bad in ("tomorrow", "2026-13-01T00:00", "0001-01-01T00:00", ""):
        with pytest.raises(ValueError):
            parse_local(bad, SHANGHAI)


def test_business_day_and_week_start_at_local_midnight() -> None:
    # 2026-12-06 17:30 UTC is Monday 2026-12-07 01:30 in Shanghai.
    now = datetime.datetime(2026, 12, 6, 17, 30, tzinfo=UTC)
    assert day_start(now, SHANGHAI) == datetime.datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    assert week_start(now, SHANGHAI) == datetime.datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    # In UTC the same instant is still Sunday: its week began on Monday 2026-11-30.
    assert week_start(now, business_zone("UTC")) == datetime.datetime(2026, 11, 30, tzinfo=UTC)


def test_daylight_saving_zone_day_start_and_label() -> None:
    new_york = business_zone("America/New_York")
    # 2026-03-08 is the spring-forward day: the day starts at 05:00 UTC (EST).
    now = datetime.datetime(2026, 3, 8, 18, 0, tzinfo=UTC)
    assert day_start(now, new_york) == datetime.datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    assert zone_label(new_york, now) == "America/New_York (UTC-04:00)"
    assert zone_label(SHANGHAI, now) == "Asia/Shanghai (UTC+08:00)"
