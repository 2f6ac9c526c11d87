"""The shop's index set at start (persistence/shop/schema.py), on the real embedded MongoDB."""

import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from persistence.mongo import Database
from persistence.shop.repos import MongoOrders
from persistence.shop.schema import (
    ATTEMPTS_BACKFILL,
    RETIRED_INDEXES,
    backfill_order_attempts,
    ensure_shop_indexes,
)


async def test_a_retired_index_is_dropped_at_start_and_its_query_still_rides_an_index(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """A database from before keeps the orders' old `refunds` index until the next start drops it
    (twice is fine); the refund worker's query then walks `pending_deadline`'s `status` prefix."""
    db: Database = mongo_db
    old = IndexModel([("status", ASCENDING), ("refund.status", ASCENDING)], name="refunds")
    await db.shop_orders.create_indexes([old])
    await ensure_shop_indexes(db)
    await ensure_shop_indexes(db)
    names = set(await db.shop_orders.index_information())
    assert not names & set(RETIRED_INDEXES["shop_orders"])
    assert "pending_deadline" in names
    await db.shop_orders.insert_many(
        [
            {"_id": key, "checkout_id": key, "user_id": 1, "idempotency_key": key, **fields}
            for key, fields in (
                ("A", {"status": "refund_requested", "refund": {"status": "approved"}}),
                ("B", {"status": "refund_requested", "refund": {"status": "requested"}}),
                ("C", {"status": "paid"}),
            )
        ]
    )
    assert await MongoOrders(db, None).approved_refunds() == ["A"]
    plan = await db.shop_orders.find({"status": "refund_requested"}, {"refund.status": 1}).explain()
    assert "pending_deadline" in str(plan["queryPlanner"]["winningPlan"])


async def test_older_orders_get_their_attempt_and_the_out_trade_no_index_goes(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """An order from before `attempts` existed has its payment number in `out_trade_no` only: the
    start copies it into `attempts` (once: a second start finds the migration done and scans
    nothing), drops the `out_trade_no` index by name, and a notification's lookup finds the order
    through `attempts.out_trade_no` like any other."""
    db: Database = mongo_db
    old_index = IndexModel(
        [("out_trade_no", ASCENDING)],
        partialFilterExpression={"out_trade_no": {"$type": "string"}},
        name="out_trade_no",
    )
    await db.shop_orders.create_indexes([old_index])
    at = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    older = {"_id": "OLD1", "checkout_id": "c1", "user_id": 1, "idempotency_key": "k1"}
    await db.shop_orders.insert_many(
        [
            {**older, "status": "pending", "out_trade_no": "shop-old", "created_at": at},
            {  # paid from the balance at once: no provider attempt
                "_id": "BAL1",
                "checkout_id": "c2",
                "user_id": 1,
                "idempotency_key": "k2",
                "status": "paid",
                "out_trade_no": None,
                "attempts": [],
            },
            {  # a current order: two attempts, `out_trade_no` the latest
                "_id": "NEW1",
                "checkout_id": "c3",
                "user_id": 1,
                "idempotency_key": "k3",
                "status": "pending",
                "out_trade_no": "shop-b",
                "attempts": [{"out_trade_no": "shop-a"}, {"out_trade_no": "shop-b"}],
            },
        ]
    )
    await ensure_shop_indexes(db)
    assert "out_trade_no" not in await db.shop_orders.index_information()
    orders = {doc["_id"]: doc async for doc in db.shop_orders.find({})}
    naive = at.replace(tzinfo=None)  # this fixture's client is not tz-aware
    assert orders["OLD1"]["attempts"] == [{"out_trade_no": "shop-old", "created_at": naive}]
    assert orders["BAL1"]["attempts"] == []
    assert [a["out_trade_no"] for a in orders["NEW1"]["attempts"]] == ["shop-a", "shop-b"]
    found = await MongoOrders(db, None).for_trade_no("shop-old")
    assert found is not None and found["_id"] == "OLD1"
    marker = await db.meta.find_one({"_id": ATTEMPTS_BACKFILL})
    assert marker is not None and marker["orders"] == 1

    # Done once: an order without attempts written after it (an older process still running) is
    # left alone, and still found, by `out_trade_no` alone.
    await db.shop_orders.insert_one(
        {
            "_id": "OLD2",
            "checkout_id": "c4",
            "user_id": 1,
            "idempotency_key": "k4",
            "out_trade_no": "shop-late",
        }
    )
    assert await backfill_order_attempts(db) == 0
    await ensure_shop_indexes(db)
    late = await MongoOrders(db, None).for_trade_no("shop-late")
    assert late is not None and "attempts" not in late
