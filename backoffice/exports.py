"""What a CSV export is, apart from reading the database: its kinds and filters, its columns, and one
stored document turned into one row of cells (docs/admin.md "Exports").

Pure (no I/O, no clock reads): `admin/exports.py` reads a MongoDB cursor and streams the rows these
functions make. Money is written twice, as yuan with two decimals (exact, from integer fen) and as
integer fen; every time twice, as UTC ISO-8601 and as the business zone's wall time. A text cell a
spreadsheet would read as a formula gets a leading apostrophe (CSV injection).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from backoffice.timezone import as_utc, day_start, format_local, parse_local

Row = dict[str, Any]
Cells = list[str]

BOM = "\ufeff"  # Excel reads a UTF-8 file as UTF-8 (Chinese names intact) only with it
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_ID = 2**53 - 1
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ID = re.compile(r"[0-9]{1,16}")
_LEDGER_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")


class BadFilter(ValueError):
    """A filter the export cannot read; the page answers 400 with this message."""


# -- cells ---------------------------------------------------------------------------------------
def yuan(fen: int | None) -> str:
    """123450 -> "1234.50", -5 -> "-0.05": exact, from integer fen; "" for none."""
    if fen is None:
        return ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


def fen(value: int | None) -> str:
    return "" if value is None else str(int(value))


def text(value: Any) -> str:
    """A text cell: a value starting like a formula (= + - @ tab CR) gets a leading apostrophe, so a
    spreadsheet shows it instead of running it."""
    if value is None:
        return ""
    cell = str(value)
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def number(value: Any) -> str:
    """An id or count we stored as a number (never a formula: digits and at most a sign)."""
    return "" if value is None else str(int(value))


def flag(value: Any) -> str:
    return "true" if value else "false"


def utc_text(moment: datetime.datetime | int | None) -> str:
    """ "2026-12-06T12:15:00Z" (datetimes or epoch ms; "" for none)."""
    if moment is None:
        return ""
    exact = as_utc(moment)
    shown = exact.strftime("%Y-%m-%dT%H:%M:%S")
    if exact.microsecond:
        shown += f".{exact.microsecond // 1000:03d}"
    return shown + "Z"


def local_text(moment: datetime.datetime | int | None, zone: ZoneInfo) -> str:
    return "" if moment is None else format_local(moment, zone)


def csv_lines(rows: Iterable[Sequence[str]]) -> str:
    """Rows as CSV text (RFC 4180 quoting, CRLF line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


def file_name(kind: str, now: datetime.datetime, zone: ZoneInfo) -> str:
    """ "gavel-orders-20261206-2015.csv": the business zone's time of the export."""
    return f"gavel-{kind}-{now.astimezone(zone):%Y%m%d-%H%M}.csv"


# -- filters -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Filters:
    """An export's filters, read and checked; `typed` is what was asked (for the audit entry)."""

    status: str = ""
    session_id: int | None = None
    user_id: int | None = None
    entry_kind: str = ""  # ledger kind; payment kind; enrolment type; refund source
    provider: str = ""
    course_id: int | None = None
    since: datetime.datetime | None = None  # UTC, inclusive
    until: datetime.datetime | None = None  # UTC, exclusive
    typed: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ExportKind:
    """One kind of export: its data area (backoffice/roles.py), filters, allowed values, columns."""

    name: str
    title: str
    area: str
    filters: tuple[str, ...]
    statuses: Mapping[str, str]  # value -> label
    kinds: Mapping[str, str] = dataclasses.field(default_factory=dict)  # "kind" filter values
    required: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()


def _money(name: str) -> tuple[str, str]:
    return (f"{name}_yuan", f"{name}_fen")


def _time(name: str) -> tuple[str, str]:
    return (f"{name}_utc", f"{name}_local")


ORDER_STATUSES = {"1": "unpaid", "2": "awaiting_delivery", "3": "completed", "4": "overdue"}
PAYMENT_STATUSES = {"pending": "pending", "paid": "paid", "failed": "failed (closed by the provider)"}
PAYMENT_KINDS = {"deposit": "deposit", "auction_order": "auction order", "shop_order": "shop order"}
REFUND_STATUSES = {
    "pending": "pending",  # a deposit refund not paid yet; a shop refund requested or approved
    "refunded": "refunded",
    "rejected": "rejected (shop)",
}
REFUND_SOURCES = {"deposit": "deposit refunds", "shop": "shop refunds"}
ENROLMENT_STATUSES = {
    "valid": "valid (course)",
    "refunded": "refunded",
    "not_started": "not started (degree)",
    "studying": "studying (degree)",
    "suspended": "suspended (degree)",
    "graduated": "graduated (degree)",
    "timed_out": "timed out (degree)",
}
ENROLMENT_TYPES = {"course": "courses", "degree": "degree courses"}

KINDS: Mapping[str, ExportKind] = {
    kind.name: kind
    for kind in (
        ExportKind(
            "orders",
            "Auction orders",
            "orders",
            ("status", "session", "from", "to"),
            ORDER_STATUSES,
            columns=(
                "order_id",
                "session_id",
                "lot_id",
                "user_id",
                "username",
                *_money("price"),
                "status",
                "status_name",
                *_money("paid_total"),
                *_money("deposit_deducted"),
                *_money("coupon_used"),
                *_money("cash_paid"),
                "cash_source",
                "out_trade_no",
                *_time("created_at"),
                *_time("deadline"),
                *_time("paid_at"),
                *_time("shipped_at"),
                "tracking_no",
                *_time("completed_at"),
                *_money("forfeit"),
            ),
        ),
        ExportKind(
            "payments",
            "Payments received",
            "orders",
            ("status", "kind", "provider", "from", "to"),
            PAYMENT_STATUSES,
            PAYMENT_KINDS,
            columns=(
                "out_trade_no",
                "order",
                "kind",
                "provider",
                "user_id",
                "username",
                *_money("amount"),
                "status",
                "trade_no",
                *_money("refunded"),
                "subject",
                *_time("created_at"),
                *_time("paid_at"),
                *_time("closed_at"),
            ),
        ),
        ExportKind(
            "refunds",
            "Refunds (deposits and shop orders)",
            "orders",
            ("status", "kind", "from", "to"),
            REFUND_STATUSES,
            REFUND_SOURCES,
            columns=(
                "source",
                "refund_id",
                "user_id",
                "username",
                "session_id",
                "lot_id",
                "order_no",
                *_money("amount"),
                *_money("to_balance"),
                *_money("via_provider"),
                "via",
                "status",
                "reason",
                *_time("requested_at"),
                *_time("refunded_at"),
            ),
        ),
        ExportKind(
            "ledgers",
            "Balance ledger entries",
            "orders",
            ("user", "kind", "from", "to"),
            {},
            columns=(
                "entry_id",
                "user_id",
                "username",
                "kind",
                *_money("amount"),
                *_money("balance_after"),
                "ref",
                *_time("at"),
            ),
        ),
        ExportKind(
            "bids",
            "Bids of one session",
            "auctions",
            ("session", "from", "to"),
            {},
            required=("session",),
            columns=(
                "session_id",
                "lot_id",
                "catalogue_no",
                "seq",
                *_time("at"),
                *_money("price"),
                "user_id",
                "username",
                "pseudonym",
                "auto",
                "status",
            ),
        ),
        ExportKind(
            "enrolments",
            "Course and degree enrolments",
            "degree",
            ("status", "kind", "course", "from", "to"),
            ENROLMENT_STATUSES,
            ENROLMENT_TYPES,
            columns=(
                "type",
                "enrolment_id",
                "user_id",
                "username",
                "course_id",
                "course_name",
                "status",
                "order_no",
                *_time("created_at"),
                *_time("valid_from"),
                *_time("valid_to"),
                *_money("mentor_fee"),
                *_money("scholarship_awarded"),
            ),
        ),
    )
}


def _id(raw: str, name: str) -> int:
    if not _ID.fullmatch(raw) or not 1 <= int(raw) <= MAX_ID:
        raise BadFilter(f"{name}: give a number from 1 to {MAX_ID}")
    return int(raw)


def _day(raw: str, name: str, zone: ZoneInfo) -> datetime.datetime:
    """The start (UTC) of a business-zone day typed as YYYY-MM-DD."""
    if not _DATE.fullmatch(raw):
        raise BadFilter(f"{name}: give a date as YYYY-MM-DD")
    try:
        return parse_local(raw + "T00:00", zone)
    except ValueError:
        raise BadFilter(f"{name}: {raw} is not a date") from None


def parse_filters(kind: ExportKind, query: Mapping[str, str], zone: ZoneInfo) -> Filters:
    """The export's filters from the query string (other arguments, e.g. a list page's `page`, are
    ignored). `from` and `to` are business-zone dates, both included. BadFilter for a bad value."""
    given = {name: query.get(name, "").strip() for name in kind.filters}
    typed = {name: value for name, value in given.items() if value}
    for name in kind.required:
        if name not in typed:
            raise BadFilter(f"{name}: required for the {kind.name} export")
    status = typed.get("status", "")
    if status and status not in kind.statuses:
        raise BadFilter(f"status: one of {', '.join(kind.statuses)}")
    if "kind" in typed:
        if kind.kinds and typed["kind"] not in kind.kinds:
            raise BadFilter(f"kind: one of {', '.join(kind.kinds)}")
        if not kind.kinds and not _LEDGER_KIND.fullmatch(typed["kind"]):
            raise BadFilter("kind: lower-case letters, digits and _ (e.g. admin_credit)")
    provider = typed.get("provider", "")
    if provider and not _LEDGER_KIND.fullmatch(provider):
        raise BadFilter("provider: lower-case letters, digits and _ (e.g. sandbox)")
    since = _day(typed["from"], "from", zone) if "from" in typed else None
    until = None
    if "to" in typed:
        until = day_start(_day(typed["to"], "to", zone) + datetime.timedelta(hours=36), zone)
    if since is not None and until is not None and until <= since:
        raise BadFilter("to: must be the same day as from or later")
    return Filters(
        status=status,
        session_id=_id(typed["session"], "session") if "session" in typed else None,
        user_id=_id(typed["user"], "user") if "user" in typed else None,
        entry_kind=typed.get("kind", ""),
        provider=provider,
        course_id=_id(typed["course"], "course") if "course" in typed else None,
        since=since,
        until=until,
        typed=typed,
    )


def time_range(filters: Filters, *, as_ms: bool = False) -> dict[str, Any] | None:
    """The MongoDB condition of the date filters on a field stored as a datetime (or epoch ms)."""
    condition: dict[str, Any] = {}
    for operator, moment in (("$gte", filters.since), ("$lt", filters.until)):
        if moment is not None:
            condition[operator] = int(moment.timestamp() * 1000) if as_ms else moment
    return condition or None


# -- one stored document -> one row ------------------------------------------------------------------
def payment_kind(out_trade_no: str) -> str:
    """What a provider payment paid for, from its number's prefix (payments/trade_numbers.py)."""
    prefix = out_trade_no.partition("-")[0]
    return {"dep": "deposit", "ord": "auction_order", "shop": "shop_order"}.get(prefix, "other")


PAYMENT_PREFIXES = {"deposit": "dep-", "auction_order": "ord-", "shop_order": "shop-"}


def order_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    payment = doc.get("payment") or {}
    return [
        number(doc.get("_id")),
        number(doc.get("session_id")),
        number(doc.get("lot_id")),
        number(doc.get("user_id")),
        text(username),
        yuan(doc.get("price")),
        fen(doc.get("price")),
        number(doc.get("status")),
        ORDER_STATUSES.get(str(doc.get("status")), "unknown"),
        yuan(payment.get("paid_amount")),
        fen(payment.get("paid_amount")),
        yuan(payment.get("deposit_deducted")),
        fen(payment.get("deposit_deducted")),
        yuan(payment.get("coupon_used")),
        fen(payment.get("coupon_used")),
        yuan(payment.get("cash_amount")),
        fen(payment.get("cash_amount")),
        text(payment.get("cash_source") or ""),
        text(payment.get("out_trade_no") or ""),
        *_times(doc.get("created_at"), zone),
        *_times(doc.get("deadline_ms"), zone),
        *_times(doc.get("paid_at_ms"), zone),
        *_times(doc.get("shipped_at_ms"), zone),
        text(doc.get("tracking_no") or ""),
        *_times(doc.get("completed_at_ms"), zone),
        yuan(doc.get("forfeit")),
        fen(doc.get("forfeit")),
    ]


def payment_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    status = str(doc.get("status", ""))
    return [
        text(doc.get("_id")),
        "",
        payment_kind(str(doc.get("_id", ""))),
        text(doc.get("provider", "")),
        number(doc.get("user_id")),
        text(username),
        yuan(doc.get("amount")),
        fen(doc.get("amount")),
        "failed" if status == "closed" else text(status),
        text(doc.get("trade_no") or ""),
        yuan(doc.get("refunded") or 0),
        fen(doc.get("refunded") or 0),
        text(doc.get("subject", "")),
        *_times(doc.get("created_at"), zone),
        *_times(doc.get("paid_at"), zone),
        *_times(doc.get("closed_at"), zone),
    ]


BALANCE = "balance"  # the `provider` of a payment made from the user's balance (no provider record)


def _balance_payment_row(
    id_cell: str, kind: str, doc: Row, username: str, amount: Any, note: str, paid_at: Any, zone: ZoneInfo
) -> Cells:
    """A payment made from the user's balance: no provider record, so no trade number or refund."""
    return [
        "",
        id_cell,
        kind,
        BALANCE,
        number(doc.get("user_id")),
        text(username),
        yuan(amount),
        fen(amount),
        "paid",
        "",
        "",
        "",
        note,
        *_times(paid_at, zone),
        *_times(paid_at, zone),
        "",
        "",
    ]


def balance_order_payment_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    """The cash part of an auction order paid from the balance (`orders.payment`)."""
    payment = doc.get("payment") or {}
    note = f"order {int(doc.get('_id') or 0)}"
    return _balance_payment_row(
        number(doc.get("_id")),
        "auction_order",
        doc,
        username,
        payment.get("cash_amount"),
        note,
        doc.get("paid_at_ms"),
        zone,
    )


def balance_shop_payment_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    """The balance part of a paid shop order (`shop_orders.balance_used`)."""
    note = text(", ".join(str(line.get("course_name") or "") for line in doc.get("lines") or ()))
    return _balance_payment_row(
        text(doc.get("_id")),
        "shop_order",
        doc,
        username,
        doc.get("balance_used"),
        note,
        doc.get("paid_at"),
        zone,
    )


def deposit_refund_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    amount = doc.get("amount")
    via = str(doc.get("via", ""))
    return [
        "deposit",
        number(doc.get("_id")),
        number(doc.get("user_id")),
        text(username),
        number(doc.get("session_id")),
        number(doc.get("lot_id")),
        "",
        yuan(amount),
        fen(amount),
        yuan(amount if via != "provider" else 0),
        fen(amount if via != "provider" else 0),
        yuan(amount if via == "provider" else 0),
        fen(amount if via == "provider" else 0),
        text(via),
        text(doc.get("status", "")),
        text(doc.get("reason", "")),
        *_times(doc.get("created_at_ms"), zone),
        *_times(doc.get("refunded_at_ms"), zone),
    ]


def shop_refund_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    refund = doc.get("refund") or {}
    to_balance = int(refund.get("amount_balance") or 0)
    via_provider = int(refund.get("amount_provider") or 0)
    return [
        "shop",
        text(doc.get("_id")),
        number(doc.get("user_id")),
        text(username),
        "",
        "",
        text(doc.get("_id")),
        yuan(to_balance + via_provider),
        fen(to_balance + via_provider),
        yuan(to_balance),
        fen(to_balance),
        yuan(via_provider),
        fen(via_provider),
        "balance+provider" if to_balance and via_provider else ("provider" if via_provider else "balance"),
        text(refund.get("status", "")),
        text(refund.get("reason", "")),
        *_times(refund.get("requested_at"), zone),
        *_times(refund.get("refunded_at"), zone),
    ]


SHOP_REFUND_STATUSES = {
    "pending": ["requested", "approved"],
    "refunded": ["refunded"],
    "rejected": ["rejected"],
}


def ledger_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    return [
        text(doc.get("_id")),
        number(doc.get("user_id")),
        text(username),
        text(doc.get("kind", "")),
        yuan(doc.get("amount")),
        fen(doc.get("amount")),
        yuan(doc.get("balance_after")),
        fen(doc.get("balance_after")),
        text(doc.get("ref", "")),
        *_times(doc.get("at"), zone),
    ]


BID_STATUSES = {1: "bidding", 2: "won", 3: "overdue"}


@dataclasses.dataclass(frozen=True)
class BidCells:
    """One archived bid (a bucket's i-th entry, or a legacy bid document)."""

    session_id: int
    lot_id: int
    catalogue_no: str
    seq: int
    at_ms: int
    price: int
    user_id: int
    auto: bool
    status: int


def bid_row(bid: BidCells, username: str, pseudonym: str, zone: ZoneInfo) -> Cells:
    return [
        number(bid.session_id),
        number(bid.lot_id),
        text(bid.catalogue_no),
        number(bid.seq),
        *_times(bid.at_ms, zone),
        yuan(bid.price),
        fen(bid.price),
        number(bid.user_id),
        text(username),
        text(pseudonym),
        flag(bid.auto),
        BID_STATUSES.get(bid.status, str(bid.status)),
    ]


def bucket_bids(doc: Row, catalogue_no: str) -> list[BidCells]:
    """A bid bucket's bids (persistence/archive.py: column-wise arrays, `status.{i}` by settlement)."""
    marks = doc.get("status") or {}
    return [
        BidCells(
            int(doc["session_id"]),
            int(doc["lot_id"]),
            catalogue_no,
            int(seq),
            int(at),
            int(price),
            int(bidder),
            bool(auto),
            int(marks.get(str(i), 1)),
        )
        for i, (seq, bidder, price, auto, at) in enumerate(
            zip(doc["seq"], doc["bidder"], doc["price"], doc["auto"], doc["at"], strict=True)
        )
    ]


def legacy_bid(doc: Row, catalogue_no: str) -> BidCells:
    return BidCells(
        int(doc["session_id"]),
        int(doc["lot_id"]),
        catalogue_no,
        int(doc["seq"]),
        int(doc["at"]),
        int(doc["price"]),
        int(doc["bidder"]),
        bool(doc.get("auto")),
        int(doc.get("status", 1)),
    )


def enrolment_row(doc: Row, username: str, zone: ZoneInfo) -> Cells:
    degree = doc.get("degree_course_id") is not None
    return [
        "degree" if degree else "course",
        text(doc.get("_id")),
        number(doc.get("user_id")),
        text(username),
        number(doc.get("degree_course_id") if degree else doc.get("course_id")),
        text(doc.get("degree_name") if degree else doc.get("course_name", "")),
        text(doc.get("status", "")),
        text(doc.get("order_no") or ""),
        *_times(doc.get("created_at"), zone),
        *_times(doc.get("valid_from"), zone),
        *_times(doc.get("valid_to"), zone),
        yuan(doc.get("mentor_fee")) if degree else "",
        fen(doc.get("mentor_fee")) if degree else "",
        yuan(doc.get("scholarship_awarded")) if degree else "",
        fen(doc.get("scholarship_awarded")) if degree else "",
    ]


def _times(moment: datetime.datetime | int | None, zone: ZoneInfo) -> tuple[str, str]:
    return utc_text(moment), local_text(moment, zone)


RowMaker = Callable[[Row, str, ZoneInfo], Cells]
