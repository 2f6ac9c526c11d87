"""What the course shop shows, read from MongoDB (the `ShopReads` port): catalogue pages with their
policies, details, teachers and FAQs; a user's orders, enrolments and coupons. Reads only.
"""

from collections.abc import Sequence

from pymongo import ASCENDING

from engine.book.errors import NotFound
from persistence.media import MediaIndex
from persistence.mongo import Database, Document
from shop.model import LISTED_STATUSES
from shop.storefront import CourseQuery

# Per-course review counters (kept by the reviews' writes): `count` and the integer sums of each
# score. The storefront only reads them; no document means no reviews.
REVIEW_STATS = "shop_review_stats"
REVIEW_SCORES = ("teacher", "content", "clarity")


class MongoShopReads:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.media = MediaIndex(db)  # course pictures' sizes and variants

    async def categories(self) -> list[Document]:
        return [doc async for doc in self.db.shop_categories.find().sort("_id", ASCENDING)]

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
        counters, one query per collection."""
        ids = [int(c["_id"]) for c in courses]
        if not ids:
            return
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
