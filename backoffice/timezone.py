"""The business's one time zone (BUSINESS_TZ, default Asia/Shanghai): every time an admin sees is
shown in it and every time an admin types is read in it; everything is stored in UTC.

Pure functions over `zoneinfo`; the caller passes the zone (no clock reads here).
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_BUSINESS_TZ = "Asia/Shanghai"
UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)


def business_zone(name: str) -> ZoneInfo:
    """The zone named `name` (an IANA name such as "Asia/Shanghai"); ValueError when unknown."""
    text = name.strip()
    if not text or text.startswith(("/", ".")) or ".." in text:
        raise ValueError(f"{name!r} is not an IANA time zone such as Asia/Shanghai")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{name!r} is not an IANA time zone such as Asia/Shanghai") from error


def as_utc(moment: datetime.datetime | int) -> datetime.datetime:
    """A stored time (an aware or naive-UTC datetime, or epoch milliseconds) as an aware UTC datetime."""
    if isinstance(moment, int):
        return _EPOCH + datetime.timedelta(milliseconds=moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_local(moment: datetime.datetime | int, zone: ZoneInfo) -> datetime.datetime:
    """A stored time in the business zone."""
    return as_utc(moment).astimezone(zone)


def format_local(moment: datetime.datetime | int | None, zone: ZoneInfo, *, seconds: bool = True) -> str:
    """ "2026-12-06 20:00:00" in the business zone ("—" for none); pages name the zone once."""
    if moment is None:
        return "—"
    return to_local(moment, zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def input_value(moment: datetime.datetime | int | None, zone: ZoneInfo) -> str:
    """The value of an `<input type=datetime-local>` showing `moment` in the business zone."""
    if moment is None:
        return ""
    return to_local(moment, zone).strftime("%Y-%m-%dT%H:%M")


def parse_local(text: str, zone: ZoneInfo) -> datetime.datetime:
    """A wall-clock time typed in the business zone ("2026-12-06T20:00", seconds optional) as UTC.

    A time with an explicit offset is taken as given. ValueError for anything else. In a zone with
    daylight saving, a wall time that happens twice is read as the first (fold=0) and one that never
    happens is moved forward by the gap, as `zoneinfo` does.
    """
    value = text.strip().replace(" ", "T", 1)
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not 1970 <= parsed.year <= 9999:
        raise ValueError(f"{text!r}: year out of range")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def day_start(now: datetime.datetime | int, zone: ZoneInfo) -> datetime.datetime:
    """Midnight of `now`'s business day, in UTC (the start of "today" on the dashboard)."""
    local = to_local(now, zone)
    midnight = datetime.datetime(local.year, local.month, local.day, tzinfo=zone)
    return midnight.astimezone(UTC)


def week_start(now: datetime.datetime | int, zone: ZoneInfo) -> datetime.datetime:
    """Monday 00:00 of `now`'s business week, in UTC."""
    local = to_local(now, zone)
    monday = datetime.date(local.year, local.month, local.day) - datetime.timedelta(days=local.weekday())
    return datetime.datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(UTC)


def zone_label(zone: ZoneInfo, now: datetime.datetime | int) -> str:
    """How pages name the zone: "Asia/Shanghai (UTC+08:00)"."""
    offset = to_local(now, zone).utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{zone.key} (UTC{sign}{hours:02d}:{rest:02d})"


def date_start(day: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    """Midnight starting business day `day`, in UTC: a "from" date filter's bound (inclusive); the
    next day's is a "to" date filter's (exclusive), so "to 2026-12-06" includes all of that day."""
    return datetime.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
