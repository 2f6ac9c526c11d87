"""Reviews, votes, coupon claims and FAQs on MongoDB (the ports of shop/reviews.py, shop/claims.py
and shop/community.py). Storage only: conditional updates and unique keys; the rules are in shop/.

Collections: `shop_reviews` (one per enrolment: unique `enrolment_id`), `shop_review_stats` (per
course: `count` and the integer sums `teacher`, `content`, `clarity` of its visible reviews),
`shop_review_votes` (`_id` = `{review_id}:{user_id}`: one vote per user per review),
`shop_coupon_claims` (`_id` = `{coupon_id}:{user_id}`, `count`: how many the user claimed).
"""

import datetime
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from persistence.mongo import Client, Database, Document, TxSession, run_in_transaction
from persistence.read_cache import ReadCache
from persistence.shop.reads import CACHE_DOMAIN as SHOP_CACHE_DOMAIN
from persistence.shop.repos import MongoCatalogue, MongoCoupons, _conflict, _duplicate, _Repo
from shop.claims import ClaimRepository
from shop.community import CommunityService, CommunityUnitOfWork, FaqRepository
from shop.ports import CatalogueRepository, CouponRepository, GaveUp
from shop.reviews import SCORE_NAMES, ReviewRepository

T = TypeVar("T")


class MongoReviews(_Repo):
    async def enrolments_of(self, user_id: int, course_id: int) -> list[Document]:
        cursor = self.db.shop_enrolments.find({"user_id": user_id, "course_id": course_id}, session=self.s)
        return [e async for e in cursor.sort([("valid_from", ASCENDING), ("_id", ASCENDING)])]

    async def reviewed_enrolments(self, user_id: int, course_id: int) -> set[str]:
        cursor = self.db.shop_reviews.find(
            {"user_id": user_id, "course_id": course_id}, {"enrolment_id": 1}, session=self.s
        )
        return {str(r["enrolment_id"]) async for r in cursor}

    async def get(self, review_id: int) -> Document | None:
        return await self.db.shop_reviews.find_one({"_id": review_id}, session=self.s)

    async def add(self, review: Document) -> Document:
        return await self.insert_new("shop_reviews", review)

    async def update(self, review_id: int, changes: Document) -> None:
        await self.db.shop_reviews.update_one({"_id": review_id}, {"$set": changes}, session=self.s)

    async def set_flag(self, review_id: int, field: str, value: bool) -> Document | None:
        return await self.db.shop_reviews.find_one_and_update(
            {"_id": review_id, field: {"$ne": value}},
            {"$set": {field: value}},
            return_document=ReturnDocument.BEFORE,
            session=self.s,
        )

    async def add_to_stats(self, course_id: int, count: int, sums: Mapping[str, int]) -> None:
        inc = {"count": count, **{name: int(sums.get(name, 0)) for name in SCORE_NAMES}}
        await self.db.shop_review_stats.update_one(
            {"_id": course_id}, {"$inc": inc}, upsert=True, session=self.s
        )

    async def stats(self, course_id: int) -> Document | None:
        return await self.db.shop_review_stats.find_one({"_id": course_id}, session=self.s)

    async def vote_of(self, review_id: int, user_id: int) -> str | None:
        doc = await self.db.shop_review_votes.find_one({"_id": f"{review_id}:{user_id}"}, session=self.s)
        return None if doc is None else str(doc["vote"])

    async def set_vote(self, review_id: int, user_id: int, vote: str | None, now: datetime.datetime) -> None:
        key = f"{review_id}:{user_id}"
        if vote is None:
            await self.db.shop_review_votes.delete_one({"_id": key}, session=self.s)
            return
        try:
            await self.db.shop_review_votes.update_one(
                {"_id": key},
                {
                    "$set": {"vote": vote, "at": now},
                    "$setOnInsert": {"review_id": review_id, "user_id": user_id},
                },
                upsert=True,
                session=self.s,
            )
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    async def add_to_counters(self, review_id: int, agree: int, disagree: int) -> Document | None:
        return await self.db.shop_reviews.find_one_and_update(
            {"_id": review_id},
            {"$inc": {"agree": agree, "disagree": disagree}},
            return_document=ReturnDocument.AFTER,
            session=self.s,
        )

    async def visible(self, course_id: int, skip: int, limit: int) -> tuple[list[Document], int]:
        query = {"course_id": course_id, "hidden": False}
        total = await self.db.shop_reviews.count_documents(query, session=self.s)
        cursor = self.db.shop_reviews.find(query, session=self.s).sort(
            [("recommended", DESCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        return [r async for r in cursor.skip(skip).limit(limit)], total

    async def all_of(self, course_id: int) -> list[Document]:
        cursor = self.db.shop_reviews.find({"course_id": course_id}, session=self.s)
        return [r async for r in cursor.sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(1000)]

    async def votes_by(self, user_id: int, review_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(review_ids)
        if not wanted:
            return {}
        cursor = self.db.shop_review_votes.find(
            {"user_id": user_id, "review_id": {"$in": wanted}}, session=self.s
        )
        return {int(v["review_id"]): str(v["vote"]) async for v in cursor}

    async def author_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(user_ids)
        if not wanted:
            return {}
        cursor = self.db.users.find(
            {"_id": {"$in": wanted}}, {"username": 1, "display_name": 1}, session=self.s
        )
        return {int(u["_id"]): str(u.get("display_name") or u["username"]) async for u in cursor}


class MongoClaims(_Repo):
    async def claimable(self, now: datetime.datetime) -> list[Document]:
        cursor = self.db.shop_coupons.find(
            {"claim_end": {"$gt": now}, "claim_start": {"$ne": None}}, session=self.s
        )
        return [c async for c in cursor.sort([("claim_end", ASCENDING), ("_id", ASCENDING)]).limit(200)]

    async def count_claim(self, coupon_id: int, user_id: int, limit: int) -> int | None:
        key = f"{coupon_id}:{user_id}"
        try:
            # Matches only below the limit; at the limit the upsert's insert hits the taken `_id`.
            doc = await self.db.shop_coupon_claims.find_one_and_update(
                {"_id": key, "count": {"$lt": limit}},
                {"$inc": {"count": 1}, "$setOnInsert": {"coupon_id": coupon_id, "user_id": user_id}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=self.s,
            )
        except DuplicateKeyError:
            return None
        return None if doc is None else int(doc["count"])

    async def take_one(self, coupon_id: int, now: datetime.datetime) -> bool:
        result = await self.db.shop_coupons.update_one(
            {"_id": coupon_id, "left": {"$gt": 0}, "claim_start": {"$lte": now}, "claim_end": {"$gt": now}},
            {"$inc": {"left": -1}},
            session=self.s,
        )
        return result.modified_count == 1

    async def claims_of(self, user_id: int, coupon_ids: Iterable[int]) -> dict[int, int]:
        wanted = list(coupon_ids)
        if not wanted:
            return {}
        cursor = self.db.shop_coupon_claims.find(
            {"user_id": user_id, "coupon_id": {"$in": wanted}}, session=self.s
        )
        return {int(c["coupon_id"]): int(c["count"]) async for c in cursor}


class MongoFaqs(_Repo):
    async def of(self, target: str, target_id: int) -> list[Document]:
        cursor = self.db.shop_faqs.find({"target": target, "target_id": target_id}, session=self.s)
        return [f async for f in cursor.sort("_id", ASCENDING)]

    async def get(self, faq_id: int) -> Document | None:
        return await self.db.shop_faqs.find_one({"_id": faq_id}, session=self.s)

    async def update(self, faq_id: int, changes: Document) -> Document | None:
        try:
            return await self.db.shop_faqs.find_one_and_update(
                {"_id": faq_id}, {"$set": changes}, return_document=ReturnDocument.AFTER, session=self.s
            )
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    async def delete(self, faq_id: int) -> bool:
        result = await self.db.shop_faqs.delete_one({"_id": faq_id}, session=self.s)
        return result.deleted_count == 1


class MongoCommunityUnitOfWork:
    catalogue: CatalogueRepository
    coupons: CouponRepository
    reviews: ReviewRepository
    claims: ClaimRepository
    faqs: FaqRepository

    def __init__(self, db: Database, s: TxSession | None) -> None:
        self.catalogue = MongoCatalogue(db, s)
        self.coupons = MongoCoupons(db, s)
        self.reviews = MongoReviews(db, s)
        self.claims = MongoClaims(db, s)
        self.faqs = MongoFaqs(db, s)


class MongoCommunityStore:
    def __init__(self, client: Client, db: Database) -> None:
        self.client = client
        self.db = db

    def direct(self) -> CommunityUnitOfWork:
        return MongoCommunityUnitOfWork(self.db, None)

    async def atomically(self, work: Callable[[CommunityUnitOfWork], Awaitable[T]]) -> T:
        async def transaction(s: TxSession) -> T:
            return await work(MongoCommunityUnitOfWork(self.db, s))

        try:
            return await run_in_transaction(self.client, transaction)
        except OperationFailure as error:
            if _conflict(error):
                raise GaveUp(str(error)) from error
            raise


def mongo_community(
    client: Client,
    db: Database,
    *,
    now: Callable[[], datetime.datetime] | None = None,
    cache: ReadCache | None = None,
) -> CommunityService:
    """With a `cache`, review and FAQ writes empty the shop's cached reads (course cards and pages)."""
    store = MongoCommunityStore(client, db)
    changed = None if cache is None else functools.partial(cache.changed, SHOP_CACHE_DOMAIN)
    if now is None:
        return CommunityService(store, catalogue_changed=changed)
    return CommunityService(store, now=now, catalogue_changed=changed)


async def ensure_community_indexes(db: Database) -> None:
    """The indexes the rules rest on (one review per enrolment) and the listings need; idempotent."""
    await db.shop_reviews.create_indexes(
        [
            IndexModel([("enrolment_id", ASCENDING)], unique=True, name="one_review_per_enrolment"),
            IndexModel(
                [
                    ("course_id", ASCENDING),
                    ("hidden", ASCENDING),
                    ("recommended", DESCENDING),
                    ("created_at", DESCENDING),
                ],
                name="listing",
            ),
            IndexModel([("user_id", ASCENDING), ("course_id", ASCENDING)], name="user_course"),
        ]
    )
    await db.shop_review_votes.create_indexes(
        [IndexModel([("user_id", ASCENDING), ("review_id", ASCENDING)], name="user_review")]
    )
    await db.shop_coupon_claims.create_indexes(
        [IndexModel([("user_id", ASCENDING), ("coupon_id", ASCENDING)], name="user_coupon")]
    )
    await db.shop_coupons.create_indexes([IndexModel([("claim_end", ASCENDING)], name="claim_end")])
    await db.counters.update_one({"_id": "shop_reviews"}, {"$setOnInsert": {"seq": 0}}, upsert=True)
