"""Settlement's MongoDB indexes (unique keys are the guards the repositories rely on) and the
platform-wide money sums the conservation check reads."""

from pymongo import ASCENDING, DESCENDING, IndexModel

from engine.settle.rules import MoneyTotals, RefundStatus
from persistence.mongo import Database, Document


# -- indexes ----------------------------------------------------------------------------------------
def settlement_indexes() -> dict[str, list[IndexModel]]:
    return {
        "orders": [
            IndexModel([("lot_id", ASCENDING)], unique=True, name="one_order_per_lot"),
            # Every provider attempt's (random) number: a late notification finds its order.
            IndexModel([("trade_nos", ASCENDING)], name="trade_nos"),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_orders"),
            IndexModel([("status", ASCENDING), ("deadline_ms", ASCENDING)], name="status_deadline"),
            IndexModel(
                [("user_id", ASCENDING), ("session_id", ASCENDING), ("status", ASCENDING)],
                name="user_session_status",
            ),
            IndexModel(
                [("engine_synced", ASCENDING)],
                partialFilterExpression={"engine_synced": False},
                name="engine_unsynced",
            ),
        ],
        "refunds": [
            IndexModel([("deposit_id", ASCENDING)], unique=True, name="one_refund_per_deposit"),
            IndexModel([("status", ASCENDING), ("_id", ASCENDING)], name="status"),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_refunds"),
        ],
        "deductions": [
            IndexModel([("order_id", ASCENDING)], unique=True, name="one_deduction_per_order"),
            IndexModel([("deposit_id", ASCENDING)], name="deposit_id"),
        ],
        "coupons": [IndexModel([("session_id", ASCENDING), ("_id", ASCENDING)], name="session_coupons")],
        "user_coupons": [
            IndexModel([("coupon_id", ASCENDING), ("user_id", ASCENDING)], unique=True, name="one_per_user"),
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
            IndexModel([("session_id", ASCENDING), ("status", ASCENDING)], name="session_status"),
        ],
        "addresses": [IndexModel([("user_id", ASCENDING), ("_id", ASCENDING)], name="user_addresses")],
        "provider_payments": [IndexModel([("outcome", ASCENDING)], name="outcome")],
        "settlement_outbox": [
            IndexModel([("status", ASCENDING), ("closed_at_ms", ASCENDING)], name="status_closed_at"),
            IndexModel([("session_id", ASCENDING), ("status", ASCENDING)], name="session_status"),
        ],
        "sessions": [IndexModel([("state", ASCENDING), ("deposits_settled", ASCENDING)], name="settling")],
        "deposits": [IndexModel([("lot_id", ASCENDING), ("status", ASCENDING)], name="lot_status")],
    }


async def ensure_settlement_indexes(db: Database) -> None:
    """Create settlement's indexes (idempotent; call at start beside `ensure_indexes`)."""
    for collection, models in settlement_indexes().items():
        await db[collection].create_indexes(models)


# -- the money invariant ----------------------------------------------------------------------------------
async def _sum(db: Database, collection: str, match: Document, field: str = "$amount") -> int:
    pipeline = [{"$match": match}, {"$group": {"_id": None, "total": {"$sum": field}}}]
    rows = await (await db[collection].aggregate(pipeline)).to_list()
    return int(rows[0]["total"]) if rows else 0


async def money_totals(db: Database) -> MoneyTotals:
    """The platform-wide sums whose conservation `MoneyTotals.conserved` checks (audits and tests)."""
    paid_deposit = {"status": {"$in": ["paid", "refunded", "consumed"]}}
    deducted = await _sum(db, "deductions", {})
    refunds_done = await _sum(db, "refunds", {"status": str(RefundStatus.REFUNDED)})
    provider_deposit_refunds = await _sum(
        db, "refunds", {"status": str(RefundStatus.REFUNDED), "via": "provider"}
    )
    return MoneyTotals(
        balances=await _sum(db, "users", {}, "$balance"),
        deposits_held=await _sum(db, "deposits", paid_deposit) - deducted - refunds_done,
        paid_to_platform=deducted
        + await _sum(db, "orders", {"payment": {"$ne": None}}, "$payment.cash_amount"),
        refunded_through_provider=provider_deposit_refunds
        + await _sum(db, "provider_payments", {"outcome": "refunded"}),
        owed_through_provider=await _sum(db, "provider_payments", {"outcome": "refund_pending"}),
        credited=await _sum(db, "ledger", {"kind": "admin_credit"})
        + await _sum(db, "deposits", {**paid_deposit, "pay_with": "provider"})
        + await _sum(db, "provider_payments", {}),
    )
