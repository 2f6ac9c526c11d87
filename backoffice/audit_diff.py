"""A readable before/after of an audit entry: only what changed, one line per field.

Pure: the audit page (admin/audit.py) passes an entry's stored `before` and `after` and shows the
lines. Nested documents are flattened to dotted paths ("specs.0.value", "refund.status") so a
change deep inside one is named exactly; lists are indexed the same way. Money fields (integer fen,
named by the suffixes below) also get their amount in yuan, formatted with integers only; times
(datetimes, and epoch-millisecond fields) are shown in the business zone the page passes.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from backoffice.timezone import format_local

# Field names whose integer values are money in fen (the repo's naming: price, start_price,
# reserve_price, amount, deposit, balance, balance_after, to_pay_fen, reserve ...).
MONEY_SUFFIXES: Final = ("price", "amount", "deposit", "balance", "_fen", "reserve")
# Integer fields holding a moment in epoch milliseconds (the engine's times: a lot's `ends_at`,
# `paused_since`; settlement's `deadline_ms`, `paid_at_ms` ...); shown as a time too.
TIME_MS_NAMES: Final = frozenset({"ends_at", "paused_since"})
TIME_MS_SUFFIX: Final = "_ms"
_PLAUSIBLE_MS: Final = 10**11  # after 1973: smaller values (0 = none) are not moments
# A value longer than this is cut in the diff (the raw JSON beside it keeps all of it).
SHOWN_MAX: Final = 200
# Flattening stops this deep (the audit log stores at most six levels anyway).
DEPTH_MAX: Final = 8

Change = Literal["added", "removed", "changed"]
_MISSING: Final = object()


@dataclasses.dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed field: its dotted path, what it was and became (shown text), and how it changed."""

    field: str
    change: Change
    old: str
    new: str

    def line(self) -> str:
        """ "price: ¥100.00 (10000) → ¥120.00 (12000)", "note: (added) x", "tag: y (removed)"."""
        if self.change == "added":
            return f"{self.field}: (added) {self.new}"
        if self.change == "removed":
            return f"{self.field}: {self.old} (removed)"
        return f"{self.field}: {self.old} → {self.new}"


def flatten(value: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [5]} -> {"a.b": 1, "c.0": 5}; scalars (and empty containers) are leaves."""
    if depth < DEPTH_MAX and isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key), depth + 1))
        return flat
    if depth < DEPTH_MAX and isinstance(value, list | tuple) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}.{index}" if prefix else str(index), depth + 1))
        return flat
    return {prefix: value}


def is_money_field(path: str) -> bool:
    """Whether the last part of a dotted path names an amount in fen."""
    name = path.rsplit(".", 1)[-1].lower()
    return name.endswith(MONEY_SUFFIXES)


def yuan(fen: int) -> str:
    """12345 -> "¥123.45" (integer arithmetic only)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def is_time_ms_field(path: str) -> bool:
    """Whether the last part of a dotted path names a moment in epoch milliseconds."""
    name = path.rsplit(".", 1)[-1].lower()
    return name in TIME_MS_NAMES or name.endswith(TIME_MS_SUFFIX)


def shown(path: str, value: Any, zone: ZoneInfo | None = None) -> str:
    """A value as the diff shows it: money in yuan and fen, times in the business zone `zone`
    (ISO UTC without one; epoch-ms fields with their number too), text cut."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and is_money_field(path):
        return f"{yuan(value)} ({value})"
    if isinstance(value, int) and zone is not None and is_time_ms_field(path) and value > _PLAUSIBLE_MS:
        return f"{format_local(value, zone)} ({value})"
    if isinstance(value, datetime.datetime):
        if zone is not None:
            return format_local(value, zone)
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping | list | tuple):  # an empty container (a leaf of the flattening)
        return "{}" if isinstance(value, Mapping) else "[]"
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "…"


def _same(old: Any, new: Any) -> bool:
    # True == 1 in Python: a flag that became a count (or back) is a change worth showing.
    return type(old) is type(new) and old == new


def diff(before: Any, after: Any, zone: ZoneInfo | None = None) -> list[FieldChange]:
    """The fields that differ between `before` and `after`, in path order; times shown in `zone`.

    A whole side missing (None: a creation or a removal) makes every field of the other side
    "added" or "removed". A non-document side (a bare value) is compared as the field "value".
    """
    old_flat = flatten(before) if before is not None else {}
    new_flat = flatten(after) if after is not None else {}
    old_flat = {path or "value": item for path, item in old_flat.items()}
    new_flat = {path or "value": item for path, item in new_flat.items()}
    changes: list[FieldChange] = []
    for path in sorted(old_flat.keys() | new_flat.keys(), key=_path_order):
        old = old_flat.get(path, _MISSING)
        new = new_flat.get(path, _MISSING)
        if old is _MISSING:
            changes.append(FieldChange(path, "added", "", shown(path, new, zone)))
        elif new is _MISSING:
            changes.append(FieldChange(path, "removed", shown(path, old, zone), ""))
        elif not _same(old, new):
            changes.append(FieldChange(path, "changed", shown(path, old, zone), shown(path, new, zone)))
    return changes


def _path_order(path: str) -> tuple[tuple[int, int, str], ...]:
    """Dotted paths in reading order, list indexes numerically ("x.2" before "x.10")."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.split("."))


def reason_of(entry: Mapping[str, Any]) -> str:
    """An entry's reason: the `reason` field, or (entries written before it existed) `after.reason`."""
    reason = entry.get("reason")
    if isinstance(reason, str) and reason:
        return reason
    after = entry.get("after")
    if isinstance(after, Mapping):
        legacy = after.get("reason")
        if isinstance(legacy, str):
            return legacy
    return ""
