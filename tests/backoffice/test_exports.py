"""The pure parts of the CSV exports: cells, yuan, times, filters and rows (backoffice/exports.py)."""

from __future__ import annotations

import csv
import datetime
import io
from zoneinfo import ZoneInfo

import pytest

from backoffice import exports as ex

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = datetime.UTC


@pytest.mark.parametrize(
    ("fen", "shown"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (-5, "-0.05"),
        (123450, "1234.50"),
        (-123456, "-1234.56"),
        (10**13, "100000000000.00"),
    ],
)
def test_yuan_is_exact_from_fen(fen: int, shown: str) -> None:
    assert ex.yuan(fen) == shown
    assert ex.yuan(None) == ""


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_text_cell_that_looks_like_a_formula_is_defused(start: str) -> None:
    assert ex.text(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"


def test_plain_text_and_chinese_are_kept() -> None:
    assert ex.text("张三 a=b") == "张三 a=b"
    assert ex.text(None) == ""
    assert ex.text(12) == "12"


def test_times_are_written_in_utc_and_in_the_business_zone() -> None:
    moment = datetime.datetime(2026, 12, 6, 12, 15, tzinfo=UTC)
    assert ex.utc_text(moment) == "2026-12-06T12:15:00Z"
    assert ex.local_text(moment, SHANGHAI) == "2026-12-06 20:15:00"
    ms = int(moment.timestamp() * 1000) + 250
    assert ex.utc_text(ms) == "2026-12-06T12:15:00.250Z"
    assert ex.utc_text(datetime.datetime(2026, 12, 6, 12, 15)) == "2026-12-06T12:15:00Z"  # naive = UTC
    assert ex.utc_text(None) == ex.local_text(None, SHANGHAI) == ""


def test_file_name_uses_the_business_zone_time() -> None:
    now = datetime.datetime(2026, 12, 6, 12, 15, tzinfo=UTC)
    assert ex.file_name("orders", now, SHANGHAI) == "gavel-orders-20261206-2015.csv"


def test_csv_lines_quote_commas_quotes_and_newlines() -> None:
    text = ex.csv_lines([["a,b", 'say "hi"', "two\nlines", "张三"]])
    assert text.endswith("\r\n")
    assert next(csv.reader(io.StringIO(text))) == ["a,b", 'say "hi"', "two\nlines", "张三"]


def test_dates_are_business_days_with_both_ends_included() -> None:
    kind = ex.KINDS["orders"]
    filters = ex.parse_filters(kind, {"from": "2026-12-01", "to": "2026-12-06", "status": "2"}, SHANGHAI)
    assert filters.since == datetime.datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert filters.until == datetime.datetime(2026, 12, 6, 16, tzinfo=UTC)
    assert filters.status == "2"
    assert filters.typed == {"from": "2026-12-01", "to": "2026-12-06", "status": "2"}
    assert ex.time_range(filters, as_ms=True) == {
        "$gte": int(datetime.datetime(2026, 11, 30, 16, tzinfo=UTC).timestamp() * 1000),
        "$lt": int(datetime.datetime(2026, 12, 6, 16, tzinfo=UTC).timestamp() * 1000),
    }


def test_a_day_across_a_daylight_saving_change_is_whole() -> None:
    new_york = ZoneInfo("America/New_York")
    filters = ex.parse_filters(ex.KINDS["ledgers"], {"from": "2026-11-01", "to": "2026-11-01"}, new_york)
    assert filters.since is not None and filters.until is not None
    assert filters.until - filters.since == datetime.timedelta(hours=25)


@pytest.mark.parametrize(
    ("kind", "query", "message"),
    [
        ("orders", {"status": "9"}, "status: one of"),
        ("orders", {"session": "abc"}, "session: give a number"),
        ("orders", {"from": "2026-13-01"}, "is not a date"),
        ("orders", {"from": "yesterday"}, "YYYY-MM-DD"),
        ("orders", {"from": "2026-12-06", "to": "2026-12-01"}, "to: must be"),
        ("bids", {}, "session: required"),
        ("payments", {"kind": "bitcoin"}, "kind: one of"),
        ("payments", {"provider": "Alipay!"}, "provider:"),
        ("ledgers", {"kind": "=cmd()"}, "kind: lower-case"),
        ("ledgers", {"user": "0"}, "user: give a number"),
        ("enrolments", {"status": "dancing"}, "status: one of"),
    ],
)
def test_bad_filters_are_refused_with_a_message(kind: str, query: dict[str, str], message: str) -> None:
    with pytest.raises(ex.BadFilter, match=message):
        ex.parse_filters(ex.KINDS[kind], query, SHANGHAI)


def test_filters_a_kind_does_not_take_are_ignored() -> None:
    filters = ex.parse_filters(ex.KINDS["ledgers"], {"page": "2", "status": "x", "user": "7"}, SHANGHAI)
    assert filters.user_id == 7 and filters.status == "" and filters.typed == {"user": "7"}


def test_every_row_maker_fills_every_column() -> None:
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    order = {
        "_id": 3,
        "session_id": 1,
        "lot_id": 2,
        "user_id": 9,
        "price": 8800,
        "status": 2,
        "created_at": now,
        "payment": {"cash_amount": 7800, "cash_source": "provider", "out_trade_no": "ord-x"},
    }
    rows = {
        "orders": ex.order_row(order, "alice", SHANGHAI),
        "payments": ex.payment_row({"_id": "shop-abc", "status": "closed", "amount": 100}, "bob", SHANGHAI),
        "ledgers": ex.ledger_row({"_id": "x", "user_id": 1, "amount": -50, "at": now}, "c", SHANGHAI),
        "enrolments": ex.enrolment_row(
            {"_id": "1:2", "degree_course_id": 2, "mentor_fee": 100}, "d", SHANGHAI
        ),
    }
    rows_of_kind = [
        ("payments", ex.balance_order_payment_row({"_id": 3, "payment": {"cash_amount": 5}}, "", SHANGHAI)),
        ("payments", ex.balance_shop_payment_row({"_id": "S1", "balance_used": 5}, "", SHANGHAI)),
        *rows.items(),
    ]
    for kind, row in rows_of_kind:
        assert len(row) == len(ex.KINDS[kind].columns), kind
    deposit = ex.deposit_refund_row(
        {"_id": 1, "amount": 500, "via": "provider", "status": "pending"}, "", SHANGHAI
    )
    shop = ex.shop_refund_row(
        {"_id": "S1", "refund": {"amount_balance": 100, "amount_provider": 200}}, "", SHANGHAI
    )
    assert len(deposit) == len(shop) == len(ex.KINDS["refunds"].columns)
    bid = ex.BidCells(1, 2, "A-01", 5, 0, 12345, 9, True, 2)
    assert len(ex.bid_row(bid, "alice", "Bidder-X", SHANGHAI)) == len(ex.KINDS["bids"].columns)


def test_an_order_row() -> None:
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    order = {
        "_id": 3,
        "session_id": 1,
        "lot_id": 2,
        "user_id": 9,
        "price": 8800,
        "status": 2,
        "created_at": now,
        "payment": {
            "cash_amount": 7800,
            "cash_source": "provider",
            "out_trade_no": "ord-x",
            "paid_amount": 8300,
            "deposit_deducted": 500,
            "coupon_used": 500,
        },
        "tracking_no": "=1+1",
    }
    row = dict(zip(ex.KINDS["orders"].columns, ex.order_row(order, "@alice", SHANGHAI), strict=True))
    assert row["price_yuan"] == "88.00" and row["price_fen"] == "8800"
    assert row["paid_total_yuan"] == "83.00" and row["deposit_deducted_fen"] == "500"
    assert (
        row["coupon_used_yuan"] == "5.00"
        and row["cash_paid_yuan"] == "78.00"
        and row["cash_source"] == "provider"
    )
    assert row["status_name"] == "awaiting_delivery"
    assert row["username"] == "'@alice" and row["tracking_no"] == "'=1+1"
    assert (
        row["created_at_utc"] == "2026-12-06T12:00:00Z" and row["created_at_local"] == "2026-12-06 20:00:00"
    )
    assert row["paid_at_utc"] == ""


def test_a_negative_ledger_amount_keeps_its_sign() -> None:
    row = dict(
        zip(
            ex.KINDS["ledgers"].columns,
            ex.ledger_row(
                {"_id": "x", "user_id": 1, "kind": "deposit", "amount": -12345, "balance_after": 5},
                "u",
                SHANGHAI,
            ),
            strict=True,
        )
    )
    assert (
        row["amount_yuan"] == "-123.45"
        and row["amount_fen"] == "-12345"
        and row["balance_after_yuan"] == "0.05"
    )


def test_a_closed_payment_is_a_failed_one_and_its_kind_comes_from_its_number() -> None:
    row = dict(
        zip(
            ex.KINDS["payments"].columns,
            ex.payment_row({"_id": "dep-abc", "status": "closed"}, "", SHANGHAI),
            strict=True,
        )
    )
    assert row["status"] == "failed" and row["kind"] == "deposit"
    assert ex.payment_kind("ord-1") == "auction_order" and ex.payment_kind("shop-1") == "shop_order"
    assert ex.payment_kind("zzz") == "other"


def test_a_balance_payment_of_an_auction_order() -> None:
    paid = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    order = {
        "_id": 7,
        "user_id": 3,
        "paid_at_ms": int(paid.timestamp() * 1000),
        "payment": {"cash_amount": 12_34},
    }
    row = dict(
        zip(ex.KINDS["payments"].columns, ex.balance_order_payment_row(order, "u", SHANGHAI), strict=True)
    )
    assert row["order"] == "7" and row["provider"] == "balance" and row["kind"] == "auction_order"
    assert row["amount_yuan"] == "12.34" and row["status"] == "paid"
    assert row["paid_at_local"] == "2026-12-06 20:00:00" and row["out_trade_no"] == ""


def test_a_bucket_holds_its_bids_column_wise() -> None:
    bucket = {
        "session_id": 1,
        "lot_id": 2,
        "seq": [7, 8],
        "bidder": [5, 6],
        "price": [100, 200],
        "auto": [False, True],
        "at": [1000, 2000],
        "status": {"1": 2},
    }
    bids = ex.bucket_bids(bucket, "A-01")
    assert [(b.seq, b.user_id, b.price, b.auto, b.status) for b in bids] == [
        (7, 5, 100, False, 1),
        (8, 6, 200, True, 2),
    ]
    row = ex.bid_row(bids[1], "bob", "Bidder-K", SHANGHAI)
    assert row[-4:] == ["bob", "Bidder-K", "true", "won"]
