"""`CommunityService`: reviews and votes (shop/reviews.py), claimable coupons (shop/claims.py) and FAQ
management, as the REST handlers, the admin pages and the admin-actions service call them.

Each write runs in one unit of work (`CommunityStore.atomically`) and runs again, a few times, when
concurrent writers conflicted (a transient conflict, or a concurrent first vote of the same user
that made the unique vote key taken): the work reads its state again, so the retry decides on what
the winner wrote.

Built by `persistence.shop.community.mongo_community` (MongoDB) or over tests/shop/community_fakes.py.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from engine.book.errors import NotFound
from shop import catalogue as cat
from shop import reviews as rv
from shop.claims import (
    ClaimRepository,
    CouponAlreadyClaimed,
    CouponNotClaimable,
    CouponSoldOut,
    claim_window_open,
    is_claimable_template,
    user_coupon_record,
)
from shop.model import LISTED_STATUSES, FaqExists, Record, ShopConflict
from shop.ports import CatalogueRepository, CouponRepository, Duplicate, GaveUp

T = TypeVar("T")

ATTEMPTS = 8  # a unit of work that keeps conflicting this often answers 409 CONFLICT


class FaqRepository(Protocol):
    async def of(self, target: str, target_id: int) -> list[Record]:
        """A course's or degree course's FAQs in order of creation."""
        ...

    async def get(self, faq_id: int) -> Record | None: ...

    async def update(self, faq_id: int, changes: Record) -> Record | None:
        """The FAQ after; None if missing; Duplicate when the question is taken."""
        ...

    async def delete(self, faq_id: int) -> bool: ...


class CommunityUnitOfWork(Protocol):
    catalogue: CatalogueRepository
    coupons: CouponRepository
    reviews: rv.ReviewRepository
    claims: ClaimRepository
    faqs: FaqRepository


class CommunityStore(Protocol):
    def direct(self) -> CommunityUnitOfWork: ...

    async def atomically(self, work: Callable[[CommunityUnitOfWork], Awaitable[T]]) -> T:
        """One transaction (driver retries included); GaveUp when it could not commit."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ReviewPage:
    items: list[Record]  # each with `author`, `mine`, `my_vote`
    total: int
    averages: dict[str, str | int | None]


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class CommunityService:
    def __init__(
        self,
        store: CommunityStore,
        *,
        now: Callable[[], datetime.datetime] = _utc_now,
        catalogue_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.now = now
        # Called once a write that course cards or pages show (review counters, FAQs) is durable.
        self.catalogue_changed = catalogue_changed

    async def _announce(self) -> None:
        if self.catalogue_changed is not None:
            await self.catalogue_changed()

    async def _atomically(self, work: Callable[[CommunityUnitOfWork], Awaitable[T]]) -> T:
        for _ in range(ATTEMPTS):
            try:
                return await self.store.atomically(work)
            except GaveUp:
                continue
        raise ShopConflict("too many concurrent changes; try again")

    async def _listed_course(self, course_id: int) -> Record:
        course = await self.store.direct().catalogue.get("courses", course_id)
        if course is None or course.get("status") not in LISTED_STATUSES:
            raise NotFound(f"no course {course_id}")
        return course

    # == reviews ===========================================================================================
    async def reviews(self, course_id: int, viewer_id: int | None, skip: int, limit: int) -> ReviewPage:
        await self._listed_course(course_id)
        repo = self.store.direct().reviews
        items, total = await repo.visible(course_id, skip, limit)
        return ReviewPage(
            await self._decorate(items, viewer_id), total, rv.averages(await repo.stats(course_id))
        )

    async def _decorate(self, items: list[Record], viewer_id: int | None) -> list[Record]:
        repo = self.store.direct().reviews
        names = await repo.author_names({int(r["user_id"]) for r in items})
        votes = await repo.votes_by(viewer_id, [int(r["_id"]) for r in items]) if viewer_id else {}
        for review in items:
            review["author"] = names.get(int(review["user_id"]), "")
            review["mine"] = viewer_id is not None and review["user_id"] == viewer_id
            review["my_vote"] = votes.get(int(review["_id"]))
        return items

    async def averages(self, course_id: int) -> dict[str, str | int | None]:
        return rv.averages(await self.store.direct().reviews.stats(course_id))

    async def write_review(
        self, user_id: int, course_id: int, scores: dict[str, object], text: str
    ) -> Record:
        checked, cleaned, now = rv.check_scores(scores), rv.clean_text(text), self.now()

        async def work(uow: CommunityUnitOfWork) -> Record:
            exists = bool(await uow.catalogue.existing("courses", [course_id]))
            return await rv.write_review(uow.reviews, exists, user_id, course_id, checked, cleaned, now)

        try:
            review = await self._atomically(work)
        except Duplicate:
            # A concurrent request of the same user reviewed the same enrolment first.
            raise rv.ReviewExists("you have already reviewed this course") from None
        await self._announce()
        return (await self._decorate([review], user_id))[0]

    async def edit_review(
        self, user_id: int, review_id: int, scores: dict[str, object] | None, text: str | None
    ) -> Record:
        checked = rv.check_scores(scores or {}, partial=True)
        cleaned = None if text is None else rv.clean_text(text)
        now = self.now()

        async def work(uow: CommunityUnitOfWork) -> Record:
            return await rv.edit_review(uow.reviews, user_id, review_id, checked, cleaned, now)

        review = await self._atomically(work)
        await self._announce()
        return (await self._decorate([review], user_id))[0]

    async def vote(self, user_id: int, review_id: int, clicked: rv.Vote) -> tuple[Record, str | None]:
        now = self.now()

        async def work(uow: CommunityUnitOfWork) -> tuple[Record, str | None]:
            return await rv.vote(uow.reviews, user_id, review_id, clicked, now)

        for _ in range(ATTEMPTS):
            try:
                return await self._atomically(work)
            except Duplicate:
                continue  # the same user's concurrent first vote won: decide again on it
        raise ShopConflict("too many concurrent votes; try again")

    async def moderate(self, review_id: int, action: rv.Moderation) -> tuple[Record, Record]:
        async def work(uow: CommunityUnitOfWork) -> tuple[Record, Record]:
            return await rv.moderate(uow.reviews, review_id, action)

        moderated = await self._atomically(work)
        await self._announce()
        return moderated

    async def all_reviews(self, course_id: int) -> list[Record]:
        """Every review of a course, hidden ones too, for the admin."""
        return await self._decorate(await self.store.direct().reviews.all_of(course_id), None)

    # == claimable coupons =================================================================================
    async def claimable(self, user_id: int | None) -> list[Record]:
        direct = self.store.direct()
        templates = await direct.claims.claimable(self.now())
        ids = [int(t["_id"]) for t in templates]
        mine = await direct.claims.claims_of(user_id, ids) if user_id is not None else {}
        course_ids = {int(t["course_id"]) for t in templates if t.get("course_id") is not None}
        courses = await direct.catalogue.courses(course_ids)
        for template in templates:
            course = courses.get(int(template["course_id"])) if template.get("course_id") else None
            template["course_name"] = course["name"] if course else None
            template["claimed_by_me"] = mine.get(int(template["_id"]), 0)
        return templates

    async def claim(self, user_id: int, coupon_id: int) -> Record:
        now = self.now()
        # A plain read first: once sold out (or closed) nobody needs a transaction to hear it.
        template = await self.store.direct().catalogue.get("coupons", coupon_id)
        _check_claim(template, coupon_id, now)

        async def work(uow: CommunityUnitOfWork) -> Record:
            return await claim(uow, coupon_id, user_id, now)

        return await self._atomically(work)

    # == FAQs ==============================================================================================
    async def faqs(self, target: str, target_id: int) -> list[Record]:
        return await self.store.direct().faqs.of(target, target_id)

    async def add_faq(self, target: str, target_id: int, question: str, answer: str) -> Record:
        faq = await cat.add_faq(self.store.direct().catalogue, target, target_id, question, answer)
        await self._announce()
        return faq

    async def faq(self, faq_id: int) -> Record:
        found = await self.store.direct().faqs.get(faq_id)
        if found is None:
            raise NotFound(f"no FAQ {faq_id}")
        return found

    async def update_faq(self, faq_id: int, question: str, answer: str) -> Record:
        try:
            doc = await self.store.direct().faqs.update(faq_id, {"question": question, "answer": answer})
        except Duplicate:
            raise FaqExists("this question is already answered") from None
        if doc is None:
            raise NotFound(f"no FAQ {faq_id}")
        await self._announce()
        return doc

    async def delete_faq(self, faq_id: int) -> None:
        if not await self.store.direct().faqs.delete(faq_id):
            raise NotFound(f"no FAQ {faq_id}")
        await self._announce()


def _check_claim(template: Record | None, coupon_id: int, now: datetime.datetime) -> Record:
    if template is None or not is_claimable_template(template):
        raise NotFound(f"no claimable coupon {coupon_id}")
    if not claim_window_open(template, now):
        raise CouponNotClaimable("this coupon cannot be claimed now (outside its claim window)")
    if int(template.get("left", 0)) <= 0:
        raise CouponSoldOut("every coupon of this batch has been claimed")
    return template


async def claim(uow: CommunityUnitOfWork, coupon_id: int, user_id: int, now: datetime.datetime) -> Record:
    """One claim: the user's count (below the limit), one taken from `left` (above zero, window
    open), the user's coupon; any refusal rolls the whole unit back."""
    template = _check_claim(await uow.catalogue.get("coupons", coupon_id), coupon_id, now)
    count = await uow.claims.count_claim(coupon_id, user_id, int(template.get("per_user_limit") or 1))
    if count is None:
        raise CouponAlreadyClaimed("you have claimed as many of this coupon as one person may")
    if not await uow.claims.take_one(coupon_id, now):
        raise CouponSoldOut("every coupon of this batch has been claimed")
    coupon = user_coupon_record(template, user_id, now)
    coupon["grant_ref"] = f"claim:{coupon_id}:{user_id}:{count}"  # one coupon per claim, ever
    return await uow.coupons.add(coupon)
