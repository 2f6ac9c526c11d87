"""The `LearningStore` port (shop/learning_service.py) on MongoDB: sections, enrolments and the
per-user progress records (`shop_progress`, unique per user and section). It stores and reads; who
may open or mark a section is decided in shop/learning.py.
"""

import datetime
from collections.abc import Iterable

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from persistence.mongo import Database, Document
from persistence.shop.reads import MongoShopReads
from shop.learning import VALID_STATUSES


class MongoLearningStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads = MongoShopReads(db)

    async def course(self, course_id: int) -> Document | None:
        return await self.db.shop_courses.find_one({"_id": course_id})

    async def chapters(self, course_id: int) -> list[Document]:
        return await self.reads.chapters(course_id)

    async def section(self, section_id: int) -> Document | None:
        return await self.db.shop_sections.find_one({"_id": section_id})

    async def section_ids(self, course_ids: Iterable[int]) -> dict[int, list[int]]:
        wanted = list(course_ids)
        found: dict[int, list[int]] = {c: [] for c in wanted}
        if not wanted:
            return found
        cursor = self.db.shop_sections.find({"course_id": {"$in": wanted}}, {"course_id": 1}).sort("_id", 1)
        async for section in cursor:
            found[int(section["course_id"])].append(int(section["_id"]))
        return found

    async def enrolment(self, user_id: int, course_id: int) -> Document | None:
        cursor = (
            self.db.shop_enrolments.find({"user_id": user_id, "course_id": course_id})
            .sort([("valid_to", DESCENDING), ("_id", ASCENDING)])
            .limit(1)
        )
        return next(iter([e async for e in cursor]), None)

    async def enrolments(self, user_id: int) -> list[Document]:
        cursor = self.db.shop_enrolments.find({"user_id": user_id}).sort(
            [("valid_to", DESCENDING), ("_id", 1)]
        )
        seen: set[int] = set()
        found = []
        async for enrolment in cursor:
            # Older installations may hold two for one course (one per order): show the latest.
            if int(enrolment["course_id"]) not in seen:
                seen.add(int(enrolment["course_id"]))
                found.append(enrolment)
        return found

    async def done_sections(self, user_id: int, course_ids: Iterable[int]) -> set[int]:
        cursor = self.db.shop_progress.find(
            {"user_id": user_id, "course_id": {"$in": list(course_ids)}, "done": True}, {"section_id": 1}
        )
        return {int(p["section_id"]) async for p in cursor}

    async def set_done(
        self, user_id: int, course_id: int, section_id: int, done: bool, now: datetime.datetime
    ) -> None:
        query = {"user_id": user_id, "section_id": section_id}
        update = {"$set": {"done": done, "course_id": course_id, "updated_at": now}}
        try:
            await self.db.shop_progress.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            # Two first marks at once: the unique index let one insert; this one now updates it.
            await self.db.shop_progress.update_one(query, update)

    async def expire_enrolments(self, now: datetime.datetime) -> int:
        result = await self.db.shop_enrolments.update_many(
            {"status": {"$in": list(VALID_STATUSES)}, "valid_to": {"$lte": now}},
            {"$set": {"status": "expired", "expired_at": now}},
        )
        return result.modified_count
