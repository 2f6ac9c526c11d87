"""Seeded data of every export kind, shared by the export page tests and the browser test."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io

from tests.admin.conftest import AppServer

UTC = datetime.UTC
# 2026-12-06 12:15 UTC is 20:15 in Shanghai: a business day that is the same date in both zones.
WHEN = datetime.datetime(2026, 12, 6, 12, 15, tzinfo=UTC)
WHEN_MS = int(WHEN.timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class Seeded:
    user_id: int
    username: str
    other_id: int
    session_id: int
    lot_id: int
    order_ids: tuple[int, int]


async def seed(server: AppServer) -> Seeded:
    db = server.ctx.db
    user_id, _ = await server.register("zhang_san")
    other_id, _ = await server.register("li_si")
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id, title="Jade disc")
    other_lot = await server.create_lot(session_id, title="Bronze mirror")
    paid = {"cash_amount": 1234_50, "cash_source": "provider", "out_trade_no": "ord-paid1"}
    await db.orders.insert_many(
        [
            {
                "_id": 701,
                "lot_id": lot_id,
                "session_id": session_id,
                "user_id": user_id,
                "price": 1234_50,
                "status": 2,
                "created_at": WHEN,
                "deadline_ms": WHEN_MS + 3_600_000,
                "paid_at_ms": WHEN_MS + 60_000,
                "payment": paid,
                "tracking_no": '=HYPERLINK("x")',
            },
            {
                "_id": 702,
                "lot_id": other_lot,
                "session_id": session_id,
                "user_id": other_id,
                "price": 99_00,
                "status": 1,
                "created_at": WHEN - datetime.timedelta(days=3),
                "deadline_ms": WHEN_MS,
                "payment": None,
            },
        ]
    )
    await db.payments.insert_many(
        [
            {
                "_id": "ord-paid1",
                "provider": "sandbox",
                "user_id": user_id,
                "amount": 1234_50,
                "status": "paid",
                "trade_no": "SBX1",
                "refunded": 0,
                "subject": "Lot",
                "created_at": WHEN,
                "paid_at": WHEN,
            },
            {
                "_id": "shop-failed1",
                "provider": "sandbox",
                "user_id": other_id,
                "amount": 59_90,
                "status": "closed",
                "trade_no": None,
                "refunded": 0,
                "subject": "Courses",
                "created_at": WHEN,
                "closed_at": WHEN,
            },
        ]
    )
    await db.refunds.insert_one(
        {
            "_id": 801,
            "deposit_id": 1,
            "user_id": user_id,
            "session_id": session_id,
            "lot_id": lot_id,
            "amount": 500_00,
            "via": "balance",
            "status": "refunded",
            "reason": "lost",
            "created_at_ms": WHEN_MS,
            "refunded_at_ms": WHEN_MS + 1000,
        }
    )
    await db.shop_orders.insert_one(
        {
            "_id": "S20261206001",
            "user_id": other_id,
            "status": "refund_requested",
            "lines": [{"course_name": "Python 入门"}],
            "balance_used": 10_00,
            "paid_at": WHEN,
            "refund": {
                "status": "requested",
                "reason": "changed my mind",
                "amount_balance": 10_00,
                "amount_provider": 49_90,
                "requested_at": WHEN,
                "refunded_at": None,
            },
            "created_at": WHEN,
        }
    )
    await db.ledger.insert_many(
        [
            {
                "user_id": user_id,
                "kind": "admin_credit",
                "amount": 2000_00,
                "balance_after": 2000_00,
                "ref": "seed-1",
                "at": WHEN,
            },
            {
                "user_id": user_id,
                "kind": "deposit",
                "amount": -500_00,
                "balance_after": 1500_00,
                "ref": "seed-2",
                "at": WHEN + datetime.timedelta(minutes=1),
            },
        ]
    )
    await db.bid_buckets.insert_one(
        {
            "_id": f"{lot_id}:1",
            "lot_id": lot_id,
            "session_id": session_id,
            "first_seq": 1,
            "last_seq": 2,
            "count": 2,
            "seq": [1, 2],
            "bidder": [other_id, user_id],
            "price": [1000_00, 1234_50],
            "auto": [False, True],
            "at": [WHEN_MS, WHEN_MS + 5000],
            "status": {"1": 2},
        }
    )
    await db.shop_enrolments.insert_one(
        {
            "_id": f"{user_id}:5",
            "user_id": user_id,
            "course_id": 5,
            "course_name": "Python 入门",
            "status": "valid",
            "order_no": "S1",
            "created_at": WHEN,
            "valid_from": WHEN,
            "valid_to": WHEN + datetime.timedelta(days=365),
        }
    )
    await db.shop_degree_enrolments.insert_one(
        {
            "_id": f"{other_id}:77",
            "user_id": other_id,
            "degree_course_id": 77,
            "degree_name": "Back-end degree",
            "status": "studying",
            "order_no": "S2",
            "created_at": WHEN,
            "mentor_fee": 300_00,
            "scholarship_awarded": 0,
        }
    )
    return Seeded(user_id, "zhang_san", other_id, session_id, lot_id, (701, 702))


def parse(body: bytes) -> list[dict[str, str]]:
    """A downloaded export: UTF-8 with a BOM, a header row, then rows."""
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
