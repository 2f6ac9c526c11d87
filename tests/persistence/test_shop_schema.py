"""The shop's index set at start (persistence/shop/schema.py), on the real embedded MongoDB."""

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from persistence.mongo import Database
from persistence.shop.repos import MongoOrders
from persistence.shop.schema import RETIRED_INDEXES, ensure_shop_indexes


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
