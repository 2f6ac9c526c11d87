"""What the course shop shows, read from MongoDB (the `ShopReads` port): catalogue pages with their
policies, details, teachers and FAQs; a user's orders, enrolments and coupons. Reads only.
"""

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from pymongo import ASCENDING

from engine.book.errors import NotFound
from persistence.media import MediaIndex
from persistence.mongo import Database, Document
from persistence.read_cache import MISSING, ReadCache
from persistence.shop.repos import MongoCatalogue
from shop.model import LISTED_STATUSES
from shop.ports import Kind
from shop.storefront import CourseQuery

# Per-course review counters (kept by the reviews' writes): `count` and the integer sums of each
# score. The storefront only reads them; no document means no reviews.
REVIEW_STATS = "shop_review_stats"
REVIEW_SCORES = ("teacher", "content", "clarity")
CARD_FIELDS = ("hours", "picture", "review_count", "review_sums")


# The read cache's domain (persistence/read_cache.py) of the catalogue's public reads: the shop
# service announces each catalogue write (`catalogue_changed`), the reviews and FAQs theirs.
CACHE_DOMAIN = "shop"


class MongoShopReads:
    """With a `cache`, the catalogue's public reads (categories, the listed courses of a filter,
    course cards, course pages) are kept until the catalogue changes; callers get their own copy
    of the top-level records (the storefront adds fields to them)."""

    def __init__(self, db: Database, cache: ReadCache | None = None) -> None:
        self.db = db
        self.media = MediaIndex(db)  # course pictures' sizes and variants
        self.cache = cache

    def _cached(self, key: Hashable) -> Any:
        return MISSING if self.cache is None else self.cache.get(CACHE_DOMAIN, key)

    def _stamp(self) -> int:
        return 0 if self.cache is None else self.cache.stamp(CACHE_DOMAIN)

    def _keep(self, key: Hashable, value: Any, stamp: int) -> None:
        if self.cache is not None:
            self.cache.put(CACHE_DOMAIN, key, value, stamp)

    async def categories(self) -> list[Document]:
        found = self._cached(("categories",))
        if found is MISSING:
            stamp = self._stamp()
            found = [doc async for doc in self.db.shop_categories.find().sort("_id", ASCENDING)]
            self._keep(("categories",), found, stamp)
        return [dict(doc) for doc in found]

    async def list_courses(
        self, category_id: int | None, skip: int, limit: int
    ) -> tuple[list[Document], int]:
        """Listed (online and pre-online) courses by display order, each with `policies`."""
        query: Document = {"status": {"$in": list(LISTED_STATUSES)}}
        if category_id is not None:
            category = await self.db.shop_categories.find_one({"_id": category_id})
            if category is None:
                raise NotFound(f"no category {category_id}")
            if category.get("parent_id") is None:
                children = self.db.shop_categories.find({"parent_id": category_id}, {"_id": 1})
                query["sub_category_id"] = {"$in": [int(c["_id"]) async for c in children]}
            else:
                query["sub_category_id"] = category_id
        total = await self.db.shop_courses.count_documents(query)
        cursor = self.db.shop_courses.find(query).sort([("order", ASCENDING), ("_id", ASCENDING)])
        courses = [doc async for doc in cursor.skip(skip).limit(limit)]
        policies = await self._policies_by_course([int(c["_id"]) for c in courses])
        for course in courses:
            course["policies"] = policies.get(int(course["_id"]), [])
        return courses, total

    async def _category_filter(self, category_id: int) -> int | Document:
        category = await self.db.shop_categories.find_one({"_id": category_id})
        if category is None:
            raise NotFound(f"no category {category_id}")
        if category.get("parent_id") is None:
            children = self.db.shop_categories.find({"parent_id": category_id}, {"_id": 1})
            return {"$in": [int(c["_id"]) async for c in children]}
        return category_id

    async def course_candidates(self, query: CourseQuery) -> list[Document]:
        """Listed courses matching the stored fields, each with `policies` (the name search and the
        price filters are decided in shop/storefront.py over these; the catalogue is small)."""
        key = ("candidates", query.category_id, query.level, query.course_type)
        found = self._cached(key)
        if found is MISSING:
            stamp = self._stamp()
            found = await self._course_candidates(query)
            self._keep(key, found, stamp)
        return [dict(course) for course in found]

    async def _course_candidates(self, query: CourseQuery) -> list[Document]:
        found: Document = {"status": {"$in": list(LISTED_STATUSES)}}
        if query.category_id is not None:
            found["sub_category_id"] = await self._category_filter(query.category_id)
        if query.level is not None:
            found["level"] = query.level
        if query.course_type is not None:
            found["course_type"] = query.course_type
        courses = [doc async for doc in self.db.shop_courses.find(found)]
        policies = await self._policies_by_course([int(c["_id"]) for c in courses])
        for course in courses:
            course["policies"] = policies.get(int(course["_id"]), [])
        return courses

    async def course_cards(self, courses: list[Document]) -> None:
        """`hours` (from the course page), `picture` (null without an image) and the review
        counters, one query per collection (for the courses the cache lacks)."""
        missing = []
        for course in courses:
            card = self._cached(("card", int(course["_id"])))
            if card is MISSING:
                missing.append(course)
            else:
                course.update(card)
        if not missing:
            return
        stamp = self._stamp()
        await self._course_cards(missing)
        for course in missing:
            card = {name: course[name] for name in CARD_FIELDS}
            self._keep(("card", int(course["_id"])), card, stamp)

    async def _course_cards(self, courses: list[Document]) -> None:
        ids = [int(c["_id"]) for c in courses]
        hours = {
            int(d["_id"]): d.get("hours")
            async for d in self.db.shop_course_details.find({"_id": {"$in": ids}}, {"hours": 1})
        }
        stats = {int(d["_id"]): d async for d in self.db[REVIEW_STATS].find({"_id": {"$in": ids}})}
        images = [str(c["image"]) for c in courses if c.get("image")]
        pictures = await self.media.pictures(images) if images else {}
        for course in courses:
            course_id = int(course["_id"])
            course["hours"] = hours.get(course_id)
            course["picture"] = pictures.get(str(course.get("image") or ""))
            stat = stats.get(course_id, {})
            course["review_count"] = int(stat.get("count", 0))
            course["review_sums"] = [int(stat.get(score, 0)) for score in REVIEW_SCORES]

    async def _policies_by_course(self, course_ids: Sequence[int]) -> dict[int, list[Document]]:
        found: dict[int, list[Document]] = {}
        if not course_ids:
            return found
        cursor = self.db.shop_price_policies.find(
            {"target": "course", "target_id": {"$in": list(course_ids)}}
        ).sort([("target_id", ASCENDING), ("valid_days", ASCENDING)])
        async for policy in cursor:
            found.setdefault(int(policy["target_id"]), []).append(policy)
        return found

    async def course_page(self, course_id: int) -> Document:
        """A listed course with its policies, detail (teachers, recommended courses) and FAQs."""
        key = ("page", course_id)
        page = self._cached(key)
        if page is MISSING:
            stamp = self._stamp()
            try:
                page = await self._course_page(course_id)
            except NotFound:
                self._keep(key, None, stamp)
                raise
            self._keep(key, page, stamp)
        if page is None:
            raise NotFound(f"no course {course_id}")
        return dict(page)

    async def _course_page(self, course_id: int) -> Document:
        course = await self.db.shop_courses.find_one(
            {"_id": course_id, "status": {"$in": list(LISTED_STATUSES)}}
        )
        if course is None:
            raise NotFound(f"no course {course_id}")
        course["policies"] = (await self._policies_by_course([course_id])).get(course_id, [])
        detail = await self.db.shop_course_details.find_one({"_id": course_id})
        if detail is not None:
            detail["teachers"] = [
                t async for t in self.db.shop_teachers.find({"_id": {"$in": detail.get("teacher_ids", [])}})
            ]
            detail["recommended"] = [
                c
                async for c in self.db.shop_courses.find(
                    {
                        "_id": {"$in": detail.get("recommend_course_ids", [])},
                        "status": {"$in": list(LISTED_STATUSES)},
                    },
                    {"name": 1, "image": 1, "brief": 1},
                )
            ]
        course["detail"] = detail
        course["faqs"] = [
            f
            async for f in self.db.shop_faqs.find({"target": "course", "target_id": course_id}).sort("_id", 1)
        ]
        return course

    async def degree_course_page(self, degree_course_id: int) -> Document:
        degree = await self.db.shop_degree_courses.find_one({"_id": degree_course_id})
        if degree is None:
            raise NotFound(f"no degree course {degree_course_id}")
        degree["policies"] = [
            p
            async for p in self.db.shop_price_policies.find(
                {"target": "degree", "target_id": degree_course_id}
            ).sort("valid_days", 1)
        ]
        degree["modules"] = [
            c
            async for c in self.db.shop_courses.find(
                {"degree_course_id": degree_course_id, "status": {"$in": list(LISTED_STATUSES)}},
                {"name": 1, "image": 1, "order": 1},
            ).sort("order", 1)
        ]
        degree["teachers"] = [
            t async for t in self.db.shop_teachers.find({"_id": {"$in": degree.get("teacher_ids", [])}})
        ]
        degree["faqs"] = [
            f
            async for f in self.db.shop_faqs.find({"target": "degree", "target_id": degree_course_id}).sort(
                "_id", 1
            )
        ]
        return degree

    async def chapters(self, course_id: int) -> list[Document]:
        """Chapters in order, each with its sections in order (`free_trial` marks the free ones)."""
        course = await self.db.shop_courses.find_one(
            {"_id": course_id, "status": {"$in": list(LISTED_STATUSES)}}
        )
        if course is None:
            raise NotFound(f"no course {course_id}")
        chapters = [c async for c in self.db.shop_chapters.find({"course_id": course_id}).sort("chapter", 1)]
        sections: dict[int, list[Document]] = {}
        cursor = self.db.shop_sections.find({"course_id": course_id}).sort([("order", 1), ("_id", 1)])
        async for section in cursor:
            sections.setdefault(int(section["chapter_id"]), []).append(section)
        for chapter in chapters:
            chapter["sections"] = sections.get(int(chapter["_id"]), [])
        return chapters

    async def find_order(self, user_id: int, order_no: str) -> Document:
        order = await self.db.shop_orders.find_one({"_id": order_no, "user_id": user_id})
        if order is None:
            raise NotFound(f"no order {order_no}")
        return order

    async def orders(
        self, user_id: int, skip: int, limit: int, statuses: tuple[str, ...] = ()
    ) -> tuple[list[Document], int]:
        query: Document = {"user_id": user_id}
        if statuses:
            query["status"] = {"$in": list(statuses)}
        total = await self.db.shop_orders.count_documents(query)
        cursor = (
            self.db.shop_orders.find(query).sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        )
        return [o async for o in cursor], total

    async def enrolments(self, user_id: int) -> list[Document]:
        cursor = self.db.shop_enrolments.find({"user_id": user_id}).sort([("valid_from", 1), ("_id", 1)])
        return [e async for e in cursor]

    async def user_coupons(self, user_id: int, status: str | None = None) -> list[Document]:
        query: Document = {"user_id": user_id}
        if status is not None:
            query["status"] = status
        return [c async for c in self.db.shop_user_coupons.find(query).sort("_id", 1)]


class CachedCatalogue(MongoCatalogue):
    """The catalogue repository the cart reads through (outside any transaction): courses and
    their price policies from the read cache (same domain and invalidation as the storefront's
    reads), so a cart add or view costs no MongoDB query once the catalogue is warm. Everything
    else, degree courses included, reads MongoDB as `MongoCatalogue` does."""

    def __init__(self, db: Database, cache: ReadCache | None) -> None:
        super().__init__(db, None)
        self.cache = cache

    async def get(self, kind: Kind, record_id: int) -> Document | None:
        if kind == "courses":
            return (await self.courses([record_id])).get(record_id)
        if kind != "price_policies" or self.cache is None:
            return await super().get(kind, record_id)
        key = ("policy", record_id)
        found = self.cache.get(CACHE_DOMAIN, key)
        if found is MISSING:
            stamp = self.cache.stamp(CACHE_DOMAIN)
            found = await super().get(kind, record_id)
            self.cache.put(CACHE_DOMAIN, key, found, stamp)
        result: Document | None = found
        return result

    async def courses(self, ids: Iterable[int]) -> dict[int, Document]:
        wanted = list(ids)
        if self.cache is None:
            return await super().courses(wanted)
        found: dict[int, Document] = {}
        missing: list[int] = []
        for course_id in wanted:
            course = self.cache.get(CACHE_DOMAIN, ("course", course_id))
            if course is MISSING:
                missing.append(course_id)
            elif course is not None:
                found[course_id] = course
        if missing:
            stamp = self.cache.stamp(CACHE_DOMAIN)
            read = await super().courses(missing)
            for course_id in missing:
                self.cache.put(CACHE_DOMAIN, ("course", course_id), read.get(course_id), stamp)
            found.update(read)
        return found

    async def policies_with_targets(
        self, course_policy_ids: Iterable[int], degree_policy_ids: Iterable[int] = ()
    ) -> dict[int, tuple[Document, Document | None]]:
        """The pay-time price check of courses from the cache (policy and course, each kept under
        the same keys as `get` and `courses`); with degree lines, one aggregate as uncached."""
        by_course, by_degree = list(set(course_policy_ids)), list(set(degree_policy_ids))
        if self.cache is None or by_degree:
            return await super().policies_with_targets(by_course, by_degree)
        found: dict[int, tuple[Document, Document | None]] = {}
        for policy_id in by_course:
            policy = await self.get("price_policies", policy_id)
            if policy is None:
                continue
            # A degree's policy asked for as a course's has no target here, as the aggregate
            # answers when it joins courses only; check_prices then reads what changed.
            course = None
            if policy.get("target") == "course":
                course = (await self.courses([int(policy["target_id"])])).get(int(policy["target_id"]))
            found[policy_id] = (policy, course)
        return found

    async def policies_by_course(self, course_ids: Iterable[int]) -> dict[int, list[Document]]:
        wanted = list(course_ids)
        if self.cache is None:
            return await super().policies_by_course(wanted)
        found: dict[int, list[Document]] = {}
        missing: list[int] = []
        for course_id in wanted:
            policies = self.cache.get(CACHE_DOMAIN, ("policies", course_id))
            if policies is MISSING:
                missing.append(course_id)
            elif policies:
                found[course_id] = policies
        if missing:
            stamp = self.cache.stamp(CACHE_DOMAIN)
            read = await super().policies_by_course(missing)
            for course_id in missing:
                self.cache.put(CACHE_DOMAIN, ("policies", course_id), read.get(course_id, []), stamp)
            found.update(read)
        return found
