"""The audit page's readable before/after: only changed fields, dotted paths, money in yuan."""

from __future__ import annotations

import datetime

from backoffice.audit_diff import (
    FieldChange,
    diff,
    flatten,
    is_money_field,
    is_time_ms_field,
    reason_of,
    shown,
)
from backoffice.timezone import business_zone


def lines(before: object, after: object) -> list[str]:
    return [change.line() for change in diff(before, after)]


def test_only_changed_fields_are_listed() -> None:
    before = {"title": "Bowl", "state": 1, "deposit": 0}
    after = {"title": "Celadon bowl", "state": 1, "deposit": 0}
    assert lines(before, after) == ["title: Bowl → Celadon bowl"]


def test_nested_documents_and_lists_become_dotted_paths() -> None:
    before = {"refund": {"status": "requested"}, "specs": [{"key": "Size", "value": "30 cm"}]}
    after = {"refund": {"status": "refunded"}, "specs": [{"key": "Size", "value": "32 cm"}]}
    assert lines(before, after) == ["refund.status: requested → refunded", "specs.0.value: 30 cm → 32 cm"]
    assert flatten({"a": {"b": [1, {"c": 2}]}}) == {"a.b.0": 1, "a.b.1.c": 2}


def test_list_indexes_sort_as_numbers() -> None:
    before = {"images": [str(n) for n in range(11)]}
    after = {"images": [str(n) for n in range(9)] + ["x", "y"]}
    assert [c.field for c in diff(before, after)] == ["images.9", "images.10"]


def test_added_and_removed_fields_are_marked() -> None:
    changes = diff({"note": "old", "kept": 1}, {"kept": 1, "tracking_no": "SF123"})
    assert changes == [
        FieldChange("note", "removed", "old", ""),
        FieldChange("tracking_no", "added", "", "SF123"),
    ]
    assert [c.line() for c in changes] == ["note: old (removed)", "tracking_no: (added) SF123"]


def test_a_creation_lists_every_field_as_added_and_a_removal_as_removed() -> None:
    assert lines(None, {"name": "Pottery 101", "price": 9900}) == [
        "name: (added) Pottery 101",
        "price: (added) ¥99.00 (9900)",
    ]
    assert lines({"price": 100}, None) == ["price: ¥1.00 (100) (removed)"]
    assert lines(None, None) == []


def test_money_fields_are_shown_in_yuan_too() -> None:
    before = {"price": 10000, "reserve_price": 300_00, "balance": -5, "deposit": 0, "to_pay_fen": 1}
    after = {
        "price": 12050,
        "reserve_price": 350_00,
        "balance": 1_000_000_00,
        "deposit": 500,
        "to_pay_fen": 2,
    }
    assert lines(before, after) == [
        "balance: -¥0.05 (-5) → ¥1,000,000.00 (100000000)",
        "deposit: ¥0.00 (0) → ¥5.00 (500)",
        "price: ¥100.00 (10000) → ¥120.50 (12050)",
        "reserve_price: ¥300.00 (30000) → ¥350.00 (35000)",
        "to_pay_fen: ¥0.01 (1) → ¥0.02 (2)",
    ]
    assert is_money_field("lot.start_price") and is_money_field("amount") and is_money_field("reserve")
    assert not is_money_field("bid_count") and not is_money_field("state")
    assert shown("price", "12.5") == "12.5"  # only integers are amounts in fen


def test_type_changes_count_and_values_are_readable() -> None:
    assert lines({"flag": True}, {"flag": 1}) == ["flag: true → 1"]
    assert lines({"flag": False}, {"flag": None}) == ["flag: false → null"]
    at = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
    assert lines({"ends_at": None}, {"ends_at": at}) == ["ends_at: null → 2026-12-06T12:00:00Z"]
    assert lines({"tags": ["a"]}, {"tags": []}) == ["tags: (added) []", "tags.0: a (removed)"]


def test_long_text_is_cut_and_bare_values_compare_as_value() -> None:
    (change,) = diff({"body": "x" * 500}, {"body": "y"})
    assert change.old == "x" * 200 + "…"
    assert lines(1, 2) == ["value: 1 → 2"]


def test_the_reason_is_the_field_or_the_legacy_one_inside_after() -> None:
    assert reason_of({"reason": "consignor withdrew", "after": {"reason": "other"}}) == "consignor withdrew"
    assert reason_of({"reason": "", "after": {"reason": "satire", "action": "dismiss"}}) == "satire"
    assert reason_of({"after": None}) == ""
    assert reason_of({"after": {"reason": 5}}) == ""


def test_times_are_shown_in_the_business_zone_when_given_one() -> None:
    shanghai = business_zone("Asia/Shanghai")
    at = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
    ends = 1_796_558_400_000  # 2026-12-06 12:00:00 UTC in epoch ms
    changes = diff(
        {"preview_start": None, "ends_at": ends, "deadline_ms": 0, "bid_count": ends},
        {"preview_start": at, "ends_at": ends + 60_000, "deadline_ms": ends, "bid_count": ends + 1},
        shanghai,
    )
    assert [c.line() for c in changes] == [
        f"bid_count: {ends} → {ends + 1}",  # not a time field: the number as it is
        f"deadline_ms: 0 → 2026-12-06 20:00:00 ({ends})",  # 0 is "none", not 1970
        f"ends_at: 2026-12-06 20:00:00 ({ends}) → 2026-12-06 20:01:00 ({ends + 60_000})",
        "preview_start: null → 2026-12-06 20:00:00",
    ]
    assert is_time_ms_field("lot.paused_since") and not is_time_ms_field("items")
