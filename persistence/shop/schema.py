"""The course shop's MongoDB schema: indexes (the unique ones are what the repositories' `Duplicate`
answers rest on) and id counters.

Collections: `shop_categories`, `shop_teachers`, `shop_degree_courses`, `shop_courses`,
`shop_course_details`, `shop_price_policies`, `shop_chapters`, `shop_sections`, `shop_faqs`,
`shop_coupons` (templates), `shop_user_coupons` (a user's coupon), `shop_orders` (lines embedded),
`shop_enrolments`, `shop_progress`, `shop_degree_enrolments`, `shop_degree_claims`.
"""

from typing import Final

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import OperationFailure

from persistence.mongo import Database, utc_now
from persistence.shop.community import ensure_community_indexes
from persistence.shop.degree import ensure_degree_indexes


def _indexes() -> dict[str, list[IndexModel]]:
    return {
        "shop_categories": [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")],
        "shop_degree_courses": [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")],
        "shop_courses": [
            IndexModel([("name", ASCENDING)], unique=True, name="name_unique"),
            IndexModel(
                [("status", ASCENDING), ("sub_category_id", ASCENDING), ("order", ASCENDING)],
                name="listing",
            ),
        ],
        "shop_price_policies": [
            # One policy per validity period of a course or degree course (seed: unique_together).
            IndexModel(
                [("target", ASCENDING), ("target_id", ASCENDING), ("valid_days", ASCENDING)],
                unique=True,
                name="one_policy_per_validity",
            ),
        ],
        "shop_chapters": [
            IndexModel([("course_id", ASCENDING), ("chapter", ASCENDING)], unique=True, name="course_chapter")
        ],
        "shop_sections": [
            IndexModel([("chapter_id", ASCENDING), ("order", ASCENDING)], name="chapter_order")
        ],
        "shop_faqs": [
            IndexModel(
                [("target", ASCENDING), ("target_id", ASCENDING), ("question", ASCENDING)],
                unique=True,
                name="one_question",
            )
        ],
        "shop_user_coupons": [
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
            IndexModel([("order_no", ASCENDING)], name="order_no"),
            IndexModel([("order_nos", ASCENDING)], name="order_nos"),
            IndexModel([("status", ASCENDING), ("valid_to", ASCENDING)], name="status_valid_to"),
            IndexModel(
                [("grant_ref", ASCENDING)],
                unique=True,
                partialFilterExpression={"grant_ref": {"$type": "string"}},
                name="grant_ref_unique",
            ),
        ],
        "shop_orders": [
            IndexModel(
                [("user_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True, name="idempotency"
            ),
            # One order per checkout: a second concurrent pay of the same checkout cannot buy twice.
            IndexModel([("checkout_id", ASCENDING)], unique=True, name="checkout_unique"),
            IndexModel([("status", ASCENDING), ("pay_deadline", ASCENDING)], name="pending_deadline"),
            IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_orders"),
            # A verified notification names the payment by its random number: every provider
            # attempt of the order is in `attempts` (paying again adds one; older orders get theirs
            # from `backfill_order_attempts`).
            IndexModel([("attempts.out_trade_no", ASCENDING)], name="attempts_out_trade_no"),
            # The refund worker's approved refunds (`approved_refunds`: status refund_requested)
            # ride `pending_deadline`'s `status` prefix: few orders wait for a refund.
        ],
        "shop_enrolments": [
            IndexModel([("user_id", ASCENDING), ("course_id", ASCENDING)], name="user_course"),
            IndexModel([("order_no", ASCENDING)], name="order_no"),
            IndexModel([("order_nos", ASCENDING)], name="order_nos"),
            IndexModel([("status", ASCENDING), ("valid_to", ASCENDING)], name="status_valid_to"),
        ],
        # Degree enrolments: `_id` "{user_id}:{degree_course_id}" (bought once by construction); their
        # index by user is persistence/shop/degree.py's (one definition, or the two names clash).
        # Learning progress: one record per user and section (a repeated mark updates it).
        "shop_progress": [
            IndexModel([("user_id", ASCENDING), ("section_id", ASCENDING)], unique=True, name="user_section"),
            IndexModel([("user_id", ASCENDING), ("course_id", ASCENDING)], name="user_course"),
        ],
    }


# Indexes an earlier version made that no query needs now, dropped by name at start so that existing
# databases converge: every write of a document maintains each index of its collection. The orders'
# `out_trade_no` went with the attempts' backfill (below): `attempts_out_trade_no` finds every order.
RETIRED_INDEXES: Final = {"shop_orders": ("refunds", "out_trade_no")}
_INDEX_NOT_FOUND: Final = 27  # another process starting at the same time dropped it first

# One-off data changes, each recorded in `meta` (by this `_id`) once done: a later start reads one
# document by `_id` instead of scanning again.
ATTEMPTS_BACKFILL: Final = "migrated:shop_orders.attempts"

# Id counters the shop allocates from (`next_id`).
SHOP_COUNTERS: Final = (
    "shop_categories",
    "shop_teachers",
    "shop_degree_courses",
    "shop_courses",
    "shop_price_policies",
    "shop_chapters",
    "shop_sections",
    "shop_faqs",
    "shop_coupons",
    "shop_user_coupons",
    "shop_orders",
)


async def ensure_shop_indexes(db: Database) -> None:
    """Create the shop's indexes and id counters (idempotent; call at every start).

    The counters are created here, one at a time, because two concurrent first calls of
    `next_id` for the same counter can race on the upsert (seen with SecantusDB).
    """
    for collection, models in _indexes().items():
        await db[collection].create_indexes(models)
    await backfill_order_attempts(db)  # before the index it makes unneeded is dropped
    for collection, names in RETIRED_INDEXES.items():
        existing = await db[collection].index_information()
        for name in names:
            if name in existing:
                try:
                    await db[collection].drop_index(name)
                except OperationFailure as error:
                    if error.code != _INDEX_NOT_FOUND:
                        raise
    for name in SHOP_COUNTERS:
        await db.counters.update_one({"_id": name}, {"$setOnInsert": {"seq": 0}}, upsert=True)
    await ensure_community_indexes(db)  # reviews, votes, coupon claims (persistence/shop/community.py)
    await ensure_degree_indexes(db)  # the degree path's student side (persistence/shop/degree.py)


async def backfill_order_attempts(db: Database) -> int:
    """Orders from before `attempts` existed (2026-12-06) name their one provider attempt in
    `out_trade_no` only: it is copied into `attempts`, so that `attempts.out_trade_no` finds every
    order and the `out_trade_no` index can go. Once per database (a scan of the orders); returns
    how many orders it changed. Idempotent, and two processes starting at once write the same."""
    if await db.meta.find_one({"_id": ATTEMPTS_BACKFILL}) is not None:
        return 0
    changed = 0
    older = db.shop_orders.find(
        {"out_trade_no": {"$type": "string"}, "attempts.0": {"$exists": False}},
        {"out_trade_no": 1, "created_at": 1},
    )
    async for order in older:
        attempt = {"out_trade_no": order["out_trade_no"], "created_at": order.get("created_at")}
        result = await db.shop_orders.update_one(
            {"_id": order["_id"], "attempts.0": {"$exists": False}}, {"$set": {"attempts": [attempt]}}
        )
        changed += result.modified_count
    await db.meta.update_one(
        {"_id": ATTEMPTS_BACKFILL}, {"$setOnInsert": {"done_at": utc_now(), "orders": changed}}, upsert=True
    )
    return changed
