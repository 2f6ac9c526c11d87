"""What a bidder reads about a closed lot: the auction order it became and the deposit that covered
it, with that deposit's refund. Plain reads of what settlement (persistence/settlement/) and deposits
(persistence/deposits.py) stored; nothing here decides.

The websocket hub (gateway/ws.py) looks the order up for the `result` frame a little after the close
(the settlement worker records it then), and `GET /api/v1/lots/{id}/result` reads all three.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

from engine.book.types import LotId, Millis, SessionId, UserId
from persistence.mongo import Database, Document


@dataclasses.dataclass(frozen=True, slots=True)
class LotOrder:
    """The auction order a sold lot became (one per lot: `orders.lot_id` is unique)."""

    order_id: int
    user_id: UserId
    deadline_ms: Millis  # the payment deadline (pay by)
    status: int


async def order_of_lot(db: Database, lot_id: LotId) -> LotOrder | None:
    """The lot's order, None until the settlement worker has recorded the close."""
    doc = await db.orders.find_one(
        {"lot_id": lot_id}, {"_id": 1, "user_id": 1, "deadline_ms": 1, "status": 1}
    )
    if doc is None:
        return None
    return LotOrder(int(doc["_id"]), int(doc["user_id"]), int(doc["deadline_ms"]), int(doc["status"]))


async def orders_of_lots(db: Database, lot_ids: Sequence[LotId]) -> dict[LotId, LotOrder]:
    """The orders of those lots recorded so far, by lot, in one query (the hub asks for the winners
    of a whole close at once: gateway/order_lookups.py)."""
    if not lot_ids:
        return {}
    fields = {"_id": 1, "lot_id": 1, "user_id": 1, "deadline_ms": 1, "status": 1}
    cursor = db.orders.find({"lot_id": {"$in": list(lot_ids)}}, fields)
    return {
        int(doc["lot_id"]): LotOrder(
            int(doc["_id"]), int(doc["user_id"]), int(doc["deadline_ms"]), int(doc["status"])
        )
        async for doc in cursor
    }


async def deposit_for_lot(
    db: Database, user_id: UserId, session_id: SessionId, lot_id: LotId
) -> Document | None:
    """The user's deposit that covers the lot: the newest per-lot one, else the whole-session one
    (failed payments, which covered nothing, are left out), with its refund as `refund` (or None)."""
    base: Document = {"user_id": user_id, "session_id": session_id, "status": {"$ne": "failed"}}
    deposit = await db.deposits.find_one({**base, "lot_id": lot_id}, sort=[("_id", -1)])
    if deposit is None:
        deposit = await db.deposits.find_one({**base, "lot_id": None}, sort=[("_id", -1)])
    if deposit is None:
        return None
    refunds = await refunds_of(db, [int(deposit["_id"])])
    return {**deposit, "refund": refunds.get(int(deposit["_id"]))}


async def refunds_of(db: Database, deposit_ids: list[int]) -> dict[int, Document]:
    """deposit id -> its refund document (at most one per deposit: `refunds.deposit_id` is unique)."""
    if not deposit_ids:
        return {}
    cursor = db.refunds.find({"deposit_id": {"$in": deposit_ids}})
    return {int(doc["deposit_id"]): doc async for doc in cursor}


def refund_json(refund: Document | None) -> dict[str, Any] | None:
    """A refund as the bidder sees it: pending until the money has moved, then refunded."""
    if refund is None:
        return None
    return {
        "status": refund["status"],
        "amount": refund["amount"],
        "via": refund.get("via"),
        "created_at_ms": refund.get("created_at_ms"),
        "refunded_at_ms": refund.get("refunded_at_ms"),
    }
