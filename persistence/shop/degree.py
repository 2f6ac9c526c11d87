"""The degree path's student side on MongoDB and GridFS: the `DegreeStore` and `FileStore` ports of
shop/degree_ports.py. They store and read; every guard is in the filter of one write (status,
registration, submit count), so two concurrent requests cannot both win. Decisions are in
shop/degree_service.py.

Collections: `shop_degree_enrolments` (created by the BUY part at payment), `shop_study_records`,
`shop_homework`, `shop_homework_records`, `shop_degree_reviews`, `shop_mentors` (written by the MENTOR
part); attachments in the GridFS bucket `degree_files`.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError

from persistence.mongo import Database, Document
from persistence.shop.repos import _Repo
from shop.degree_service import DegreeService
from shop.reviews import SCORE_NAMES

FILES_BUCKET: Final = "degree_files"
COUNTERS: Final = ("shop_homework", "shop_homework_records", "shop_degree_reviews")


class MongoDegreeStore(_Repo):
    def __init__(self, db: Database) -> None:
        super().__init__(db, None)

    # == catalogue ========================================================================================
    async def degree(self, degree_course_id: int) -> Document | None:
        return await self.db.shop_degree_courses.find_one({"_id": degree_course_id})

    async def modules(self, degree_course_id: int) -> list[Document]:
        cursor = self.db.shop_courses.find({"degree_course_id": degree_course_id, "course_type": "degree"})
        found = [c async for c in cursor]
        # A module's order is its `order` field if present, else its _id order (after those with one).
        return sorted(found, key=lambda c: (c.get("order") is None, c.get("order") or 0, c["_id"]))

    async def course(self, course_id: int) -> Document | None:
        return await self.db.shop_courses.find_one({"_id": course_id})

    async def chapter(self, chapter_id: int) -> Document | None:
        return await self.db.shop_chapters.find_one({"_id": chapter_id})

    # == enrolments =======================================================================================
    async def enrolment(self, enrolment_id: str) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one({"_id": enrolment_id})

    async def enrolments_of(self, user_id: int) -> list[Document]:
        cursor = self.db.shop_degree_enrolments.find({"user_id": user_id})
        return [e async for e in cursor.sort([("created_at", DESCENDING), ("_id", ASCENDING)]).limit(200)]

    async def set_registration(
        self, enrolment_id: str, registration: Document, now: datetime.datetime
    ) -> bool:
        result = await self.db.shop_degree_enrolments.update_one(
            {"_id": enrolment_id, "registration": None},
            {"$set": {"registration": registration, "updated_at": now}},
        )
        return result.modified_count == 1

    async def set_mentor_if_none(self, enrolment_id: str, mentor_id: int, now: datetime.datetime) -> bool:
        result = await self.db.shop_degree_enrolments.update_one(
            {"_id": enrolment_id, "mentor_id": None}, {"$set": {"mentor_id": mentor_id, "updated_at": now}}
        )
        return result.modified_count == 1

    async def start(
        self,
        enrolment_id: str,
        valid_from: datetime.datetime,
        valid_to: datetime.datetime,
        now: datetime.datetime,
    ) -> bool:
        result = await self.db.shop_degree_enrolments.update_one(
            {"_id": enrolment_id, "status": "not_started"},
            {
                "$set": {
                    "status": "studying",
                    "valid_from": valid_from,
                    "valid_to": valid_to,
                    "updated_at": now,
                }
            },
        )
        return result.modified_count == 1

    async def move_status(
        self, enrolment_id: str, from_status: str, to_status: str, now: datetime.datetime
    ) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one_and_update(
            {"_id": enrolment_id, "status": from_status},
            {"$set": {"status": to_status, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    # == study records ====================================================================================
    async def add_study_records(self, records: Iterable[Document]) -> None:
        wanted = list(records)
        if not wanted:
            return
        try:
            await self.db.shop_study_records.insert_many(wanted, ordered=False)
        except BulkWriteError as error:
            # Records that exist already (a repeat, or a concurrent request) are kept as they are.
            if any(e.get("code") != 11000 for e in error.details.get("writeErrors", [])):
                raise

    async def study_records(self, enrolment_id: str) -> list[Document]:
        cursor = self.db.shop_study_records.find({"enrolment_id": enrolment_id})
        return [r async for r in cursor.sort([("order", ASCENDING), ("_id", ASCENDING)])]

    async def open_study_record(
        self, record_id: str, opened_at: datetime.datetime, schedule: list[Document]
    ) -> bool:
        result = await self.db.shop_study_records.update_one(
            {"_id": record_id, "status": "not_opened"},
            {"$set": {"status": "studying", "opened_at": opened_at, "schedule": schedule}},
        )
        return result.modified_count == 1

    # == homework =========================================================================================
    async def add_homework(self, homework: Document) -> Document:
        return await self.insert_new("shop_homework", homework)

    async def update_homework(self, homework_id: int, changes: Document) -> Document | None:
        return await self.db.shop_homework.find_one_and_update(
            {"_id": homework_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )

    async def homework(self, homework_id: int) -> Document | None:
        return await self.db.shop_homework.find_one({"_id": homework_id})

    async def homework_of(self, course_ids: Iterable[int]) -> list[Document]:
        wanted = list(course_ids)
        if not wanted:
            return []
        cursor = self.db.shop_homework.find({"course_id": {"$in": wanted}})
        sort = [("chapter", ASCENDING), ("order", ASCENDING), ("_id", ASCENDING)]
        return [h async for h in cursor.sort(sort).limit(5000)]

    # == homework records =================================================================================
    async def homework_record(self, enrolment_id: str, homework_id: int) -> Document | None:
        return await self.db.shop_homework_records.find_one(
            {"enrolment_id": enrolment_id, "homework_id": homework_id}
        )

    async def homework_records(self, enrolment_id: str) -> list[Document]:
        cursor = self.db.shop_homework_records.find({"enrolment_id": enrolment_id})
        return [r async for r in cursor.sort("_id", ASCENDING).limit(5000)]

    async def insert_homework_record(self, record: Document) -> Document:
        return await self.insert_new("shop_homework_records", record)

    async def add_submission(
        self, record_id: int, expected_count: int, submission: Document, changes: Document
    ) -> Document | None:
        return await self.db.shop_homework_records.find_one_and_update(
            {"_id": record_id, "status": {"$ne": "passed"}, "submit_count": expected_count},
            {"$set": changes, "$push": {"submissions": submission}, "$inc": {"submit_count": 1}},
            return_document=ReturnDocument.AFTER,
        )

    # == mentors, users ===================================================================================
    async def mentor(self, user_id: int) -> Document | None:
        return await self.db.shop_mentors.find_one({"_id": user_id})

    async def active_mentors(self) -> list[Document]:
        cursor = self.db.shop_mentors.find({"active": True})
        return [m async for m in cursor.sort("_id", ASCENDING).limit(500)]

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(user_ids)
        if not wanted:
            return {}
        cursor = self.db.users.find({"_id": {"$in": wanted}}, {"username": 1, "display_name": 1})
        return {int(u["_id"]): str(u.get("display_name") or u["username"]) async for u in cursor}

    # == degree reviews ===================================================================================
    async def add_review(self, review: Document) -> Document:
        return await self.insert_new("shop_degree_reviews", review)

    @staticmethod
    def _review_query(degree_course_id: int, module_id: int | None, all_targets: bool) -> Document:
        query: Document = {"degree_course_id": degree_course_id, "hidden": False}
        if not all_targets:
            query["module_id"] = module_id
        return query

    async def reviews(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool, skip: int, limit: int
    ) -> tuple[list[Document], int]:
        query = self._review_query(degree_course_id, module_id, all_targets)
        total = await self.db.shop_degree_reviews.count_documents(query)
        cursor = self.db.shop_degree_reviews.find(query).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        return [r async for r in cursor.skip(skip).limit(limit)], total

    async def review_sums(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool
    ) -> Mapping[str, int]:
        group: Document = {"_id": None, "count": {"$sum": 1}}
        group.update({name: {"$sum": f"$scores.{name}"} for name in SCORE_NAMES})
        pipeline = [
            {"$match": self._review_query(degree_course_id, module_id, all_targets)},
            {"$group": group},
        ]
        cursor = await self.db.shop_degree_reviews.aggregate(pipeline)
        found = [doc async for doc in cursor]
        if not found:
            return {"count": 0, **{name: 0 for name in SCORE_NAMES}}
        return {"count": int(found[0]["count"]), **{name: int(found[0][name]) for name in SCORE_NAMES}}


class GridFSFiles:
    """Attachments in the GridFS bucket `degree_files`, metadata beside them."""

    def __init__(self, db: Database) -> None:
        self.bucket = AsyncGridFSBucket(db, bucket_name=FILES_BUCKET)

    async def put(self, data: bytes, metadata: Document) -> str:
        file_id = await self.bucket.upload_from_stream(
            str(metadata.get("name", "file")), data, metadata=metadata
        )
        return str(file_id)

    @staticmethod
    def _object_id(file_id: str) -> ObjectId | None:
        try:
            return ObjectId(file_id)
        except (InvalidId, TypeError):
            return None

    async def get(self, file_id: str) -> tuple[Document, bytes] | None:
        oid = self._object_id(file_id)
        if oid is None:
            return None
        try:
            stream = await self.bucket.open_download_stream(oid)
        except NoFile:
            return None
        data = await stream.read()
        return dict(stream.metadata or {}), data

    async def delete(self, file_id: str) -> None:
        oid = self._object_id(file_id)
        if oid is None:
            return
        with contextlib.suppress(NoFile):  # already gone: nothing to undo
            await self.bucket.delete(oid)


def mongo_degree(db: Database, *, now: Callable[[], datetime.datetime] | None = None) -> DegreeService:
    """The degree service on MongoDB and GridFS (`now` for tests)."""
    store, files = MongoDegreeStore(db), GridFSFiles(db)
    return DegreeService(store, files) if now is None else DegreeService(store, files, now=now)


async def ensure_degree_indexes(db: Database) -> None:
    """The student side's indexes and id counters (persistence/shop/schema.py calls it; idempotent)."""
    for collection, models in _indexes().items():
        await db[collection].create_indexes(models)
    for name in COUNTERS:
        await db.counters.update_one({"_id": name}, {"$setOnInsert": {"seq": 0}}, upsert=True)


def _indexes() -> dict[str, list[IndexModel]]:
    return {
        "shop_homework": [
            IndexModel(
                [("course_id", ASCENDING), ("chapter", ASCENDING), ("order", ASCENDING)], name="course"
            )
        ],
        "shop_homework_records": [
            IndexModel(
                [("enrolment_id", ASCENDING), ("homework_id", ASCENDING)],
                unique=True,
                name="one_per_homework",
            ),
            IndexModel(
                [("mentor_id", ASCENDING), ("status", ASCENDING), ("handed_in_at", ASCENDING)],
                name="mentor_queue",
            ),
        ],
        "shop_study_records": [
            IndexModel([("enrolment_id", ASCENDING), ("order", ASCENDING)], name="enrolment")
        ],
        # One review per student per target (module_id null: the whole degree).
        "shop_degree_reviews": [
            IndexModel(
                [("user_id", ASCENDING), ("degree_course_id", ASCENDING), ("module_id", ASCENDING)],
                unique=True,
                name="one_review_per_target",
            ),
            IndexModel(
                [("degree_course_id", ASCENDING), ("hidden", ASCENDING), ("created_at", DESCENDING)],
                name="listing",
            ),
        ],
    }
