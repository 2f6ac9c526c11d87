"""In-memory reviews, votes, claims and FAQs (the ports of shop/reviews.py, shop/claims.py and
shop/community.py), over the same state as tests/shop/fakes.py, so enrolments made by the fake
shop's orders are the ones reviews need. `atomically` rolls back on error like the shop's fake.
"""

import copy
import datetime
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from shop.community import CommunityService, CommunityUnitOfWork
from shop.model import Record, as_utc
from shop.ports import Duplicate
from shop.reviews import SCORE_NAMES
from tests.shop.fakes import FakeCatalogue, FakeCoupons, FakeShopStore, World

T = TypeVar("T")


class _Part:
    def __init__(self, shop: FakeShopStore) -> None:
        self.shop = shop

    def table(self, name: str) -> dict[Any, Record]:
        return self.shop.state.table(name)


class FakeReviews(_Part):
    async def enrolments_of(self, user_id: int, course_id: int) -> list[Record]:
        found = [
            copy.deepcopy(e)
            for e in self.table("enrolments").values()
            if e["user_id"] == user_id and e["course_id"] == course_id
        ]
        return sorted(found, key=lambda e: (e["valid_from"], e["_id"]))

    async def reviewed_enrolments(self, user_id: int, course_id: int) -> set[str]:
        return {
            r["enrolment_id"]
            for r in self.table("reviews").values()
            if r["user_id"] == user_id and r["course_id"] == course_id
        }

    async def get(self, review_id: int) -> Record | None:
        return copy.deepcopy(self.table("reviews").get(review_id))

    async def add(self, review: Record) -> Record:
        if any(r["enrolment_id"] == review["enrolment_id"] for r in self.table("reviews").values()):
            raise Duplicate("one_review_per_enrolment")
        review["_id"] = self.shop.state.next("reviews")
        self.table("reviews")[review["_id"]] = copy.deepcopy(review)
        return review

    async def update(self, review_id: int, changes: Record) -> None:
        self.table("reviews")[review_id].update(copy.deepcopy(changes))

    async def set_flag(self, review_id: int, field: str, value: bool) -> Record | None:
        review = self.table("reviews").get(review_id)
        if review is None or review.get(field) == value:
            return None
        before = copy.deepcopy(review)
        review[field] = value
        return before

    async def add_to_stats(self, course_id: int, count: int, sums: Mapping[str, int]) -> None:
        stats = self.table("review_stats").setdefault(
            course_id, {"_id": course_id, "count": 0, **dict.fromkeys(SCORE_NAMES, 0)}
        )
        stats["count"] += count
        for name in SCORE_NAMES:
            stats[name] += int(sums.get(name, 0))

    async def stats(self, course_id: int) -> Record | None:
        return copy.deepcopy(self.table("review_stats").get(course_id))

    async def vote_of(self, review_id: int, user_id: int) -> str | None:
        found = self.table("review_votes").get(f"{review_id}:{user_id}")
        return None if found is None else str(found["vote"])

    async def set_vote(self, review_id: int, user_id: int, vote: str | None, now: datetime.datetime) -> None:
        key = f"{review_id}:{user_id}"
        if vote is None:
            self.table("review_votes").pop(key, None)
        else:
            self.table("review_votes")[key] = {"review_id": review_id, "user_id": user_id, "vote": vote}

    async def add_to_counters(self, review_id: int, agree: int, disagree: int) -> Record | None:
        review = self.table("reviews").get(review_id)
        if review is None:
            return None
        review["agree"] += agree
        review["disagree"] += disagree
        return copy.deepcopy(review)

    async def visible(self, course_id: int, skip: int, limit: int) -> tuple[list[Record], int]:
        shown = [r for r in self.table("reviews").values() if r["course_id"] == course_id and not r["hidden"]]
        shown.sort(key=lambda r: (not r["recommended"], -as_utc(r["created_at"]).timestamp(), -r["_id"]))
        return copy.deepcopy(shown[skip : skip + limit]), len(shown)

    async def all_of(self, course_id: int) -> list[Record]:
        return [copy.deepcopy(r) for r in self.table("reviews").values() if r["course_id"] == course_id]

    async def votes_by(self, user_id: int, review_ids: Iterable[int]) -> dict[int, str]:
        wanted = set(review_ids)
        return {
            v["review_id"]: v["vote"]
            for v in self.table("review_votes").values()
            if v["user_id"] == user_id and v["review_id"] in wanted
        }

    async def author_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        return {u: f"user{u}" for u in user_ids}


class FakeClaims(_Part):
    async def claimable(self, now: datetime.datetime) -> list[Record]:
        return [
            copy.deepcopy(c)
            for c in self.table("coupons").values()
            if c.get("claim_start") is not None and as_utc(c["claim_end"]) > now
        ]

    async def count_claim(self, coupon_id: int, user_id: int, limit: int) -> int | None:
        claims = self.table("coupon_claims")
        key = f"{coupon_id}:{user_id}"
        current = claims.get(key, {"coupon_id": coupon_id, "user_id": user_id, "count": 0})
        if current["count"] >= limit:
            return None
        current["count"] += 1
        claims[key] = current
        return int(current["count"])

    async def take_one(self, coupon_id: int, now: datetime.datetime) -> bool:
        template = self.table("coupons").get(coupon_id)
        if template is None or template.get("left", 0) <= 0:
            return False
        if not as_utc(template["claim_start"]) <= now < as_utc(template["claim_end"]):
            return False
        template["left"] -= 1
        return True

    async def claims_of(self, user_id: int, coupon_ids: Iterable[int]) -> dict[int, int]:
        wanted = set(coupon_ids)
        return {
            c["coupon_id"]: c["count"]
            for c in self.table("coupon_claims").values()
            if c["user_id"] == user_id and c["coupon_id"] in wanted
        }


class FakeFaqs(_Part):
    async def of(self, target: str, target_id: int) -> list[Record]:
        return [
            copy.deepcopy(f)
            for _, f in sorted(self.table("faqs").items())
            if f["target"] == target and f["target_id"] == target_id
        ]

    async def get(self, faq_id: int) -> Record | None:
        return copy.deepcopy(self.table("faqs").get(faq_id))

    async def update(self, faq_id: int, changes: Record) -> Record | None:
        faq = self.table("faqs").get(faq_id)
        if faq is None:
            return None
        for other_id, other in self.table("faqs").items():
            same_target = (other["target"], other["target_id"]) == (faq["target"], faq["target_id"])
            if other_id != faq_id and same_target and other["question"] == changes.get("question"):
                raise Duplicate("one_question")
        faq.update(changes)
        return copy.deepcopy(faq)

    async def delete(self, faq_id: int) -> bool:
        return self.table("faqs").pop(faq_id, None) is not None


class FakeCommunityUnitOfWork:
    def __init__(self, shop: FakeShopStore) -> None:
        self.catalogue = FakeCatalogue(shop)
        self.coupons = FakeCoupons(shop)
        self.reviews = FakeReviews(shop)
        self.claims = FakeClaims(shop)
        self.faqs = FakeFaqs(shop)


class FakeCommunityStore:
    def __init__(self, shop: FakeShopStore) -> None:
        self.shop = shop

    def direct(self) -> CommunityUnitOfWork:
        return FakeCommunityUnitOfWork(self.shop)

    async def atomically(self, work: Callable[[CommunityUnitOfWork], Awaitable[T]]) -> T:
        saved = copy.deepcopy(self.shop.state)
        try:
            return await work(FakeCommunityUnitOfWork(self.shop))
        except BaseException:
            self.shop.state = saved
            raise


def community_of(world: World) -> CommunityService:
    return CommunityService(FakeCommunityStore(world.store), now=world.clock)
