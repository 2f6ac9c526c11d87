"""The `MentoringStore` port (shop/degree_mentoring_ports.py) on MongoDB: mentors, enrolments'
mentor and status, homework records' grading, the mentor-fee ledger, follow-ups and their files.

It stores; shop/degree_mentoring.py decides. A grading is one transaction: the guarded record
update, the enrolment's money guarded by the amounts the decision read, the balance credit (unique
ref degree_award:{record_id}) and the penalty's ledger entry (_id mentor_penalty:{record_id}).
Two graders at once conflict on the record; the driver retries the loser, whose guard then fails.
"""

import contextlib
import datetime
from typing import Final

from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from persistence.accounts import Accounts
from persistence.mongo import Client, Database, Document, TxSession, next_id, run_in_transaction
from shop.degree_mentoring_ports import Applied, Grading, Graduation

BUCKET: Final = "degree_files"


class _Stale(Exception):
    """The enrolment's money moved since the decision: abort the transaction, decide again."""


async def ensure_mentoring_indexes(db: Database) -> None:
    await db.shop_degree_enrolments.create_indexes(
        [
            IndexModel([("mentor_id", ASCENDING)], name="by_mentor"),
            IndexModel([("degree_course_id", ASCENDING)], name="by_degree"),
            IndexModel([("status", ASCENDING)], name="by_status"),
        ]
    )
    await db.shop_degree_followups.create_indexes(
        [IndexModel([("enrolment_id", ASCENDING)], name="by_enrolment")]
    )
    # CORE's hand-in relies on the same unique index; already there under another name is fine.
    with contextlib.suppress(OperationFailure):
        await db.shop_homework_records.create_index(
            [("enrolment_id", ASCENDING), ("homework_id", ASCENDING)], unique=True
        )


class MongoMentoringStore:
    def __init__(self, client: Client, db: Database, accounts: Accounts) -> None:
        self.client = client
        self.db = db
        self.accounts = accounts

    # -- mentors ------------------------------------------------------------------------------------
    async def mentor(self, user_id: int) -> Document | None:
        return await self.db.shop_mentors.find_one({"_id": user_id})

    async def put_mentor(self, user_id: int, name: str, intro: str, now: datetime.datetime) -> Document:
        found = await self.db.shop_mentors.find_one_and_update(
            {"_id": user_id},
            {"$set": {"name": name, "intro": intro, "active": True}, "$setOnInsert": {"created_at": now}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert found is not None
        return found

    async def deactivate_mentor(self, user_id: int) -> Document | None:
        return await self.db.shop_mentors.find_one_and_update(
            {"_id": user_id}, {"$set": {"active": False}}, return_document=ReturnDocument.AFTER
        )

    async def mentors(self, active_only: bool) -> list[Document]:
        query: Document = {"active": True} if active_only else {}
        return [m async for m in self.db.shop_mentors.find(query).sort("_id", 1)]

    async def user_names(self, user_ids: list[int]) -> dict[int, str]:
        cursor = self.db.users.find({"_id": {"$in": user_ids}}, {"display_name": 1, "username": 1})
        return {int(u["_id"]): str(u.get("display_name") or u.get("username") or "") async for u in cursor}

    # -- enrolments and modules ----------------------------------------------------------------------
    async def enrolment(self, enrolment_id: str) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one({"_id": enrolment_id})

    async def set_mentor(self, enrolment_id: str, mentor_id: int, now: datetime.datetime) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one_and_update(
            {"_id": enrolment_id},
            {"$set": {"mentor_id": mentor_id, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def enrolments(
        self, *, mentor_id: int | None = None, degree_course_id: int | None = None, status: str | None = None
    ) -> list[Document]:
        query: Document = {}
        if mentor_id is not None:
            query["mentor_id"] = mentor_id
        if degree_course_id is not None:
            query["degree_course_id"] = degree_course_id
        if status is not None:
            query["status"] = status
        return [e async for e in self.db.shop_degree_enrolments.find(query).sort("_id", 1)]

    async def study_records(self, enrolment_id: str) -> list[Document]:
        cursor = self.db.shop_study_records.find({"enrolment_id": enrolment_id})
        return [s async for s in cursor.sort([("order", ASCENDING), ("module_id", ASCENDING)])]

    async def finish_module(self, study_record_id: str, now: datetime.datetime) -> bool:
        result = await self.db.shop_study_records.update_one(
            {"_id": study_record_id, "status": "studying"}, {"$set": {"status": "done", "done_at": now}}
        )
        return result.modified_count == 1

    async def time_out(self, enrolment_id: str, expect_status: str, now: datetime.datetime) -> bool:
        result = await self.db.shop_degree_enrolments.update_one(
            {"_id": enrolment_id, "status": expect_status},
            {"$set": {"status": "timed_out", "timed_out_at": now, "updated_at": now}},
        )
        return result.modified_count == 1

    async def graduate(self, graduation: Graduation) -> Applied:
        g = graduation

        async def work(s: TxSession) -> Applied:
            result = await self.db.shop_degree_enrolments.update_one(
                {"_id": g.enrolment_id, "status": "studying", "scholarship_awarded": g.expect_awarded},
                {
                    "$set": {
                        "status": "graduated",
                        "graduated_at": g.now,
                        "graduation_award": g.award,
                        "updated_at": g.now,
                    },
                    "$inc": {"scholarship_awarded": g.award},
                },
                session=s,
            )
            if result.matched_count == 0:
                current = await self.db.shop_degree_enrolments.find_one({"_id": g.enrolment_id}, session=s)
                return "stale" if current is not None and current.get("status") == "studying" else "lost"
            if g.award:
                await self.accounts.credit(
                    g.user_id, g.award, "degree_graduation", f"degree_graduation:{g.enrolment_id}", session=s
                )
            return "applied"

        return await run_in_transaction(self.client, work)

    # -- homework --------------------------------------------------------------------------------------
    async def homework(self, homework_id: int) -> Document | None:
        return await self.db.shop_homework.find_one({"_id": homework_id})

    async def homework_of(self, module_id: int) -> list[Document]:
        return [h async for h in self.db.shop_homework.find({"course_id": module_id}).sort("_id", 1)]

    async def record(self, record_id: int) -> Document | None:
        return await self.db.shop_homework_records.find_one({"_id": record_id})

    async def records(self, enrolment_ids: list[str], status: str | None = None) -> list[Document]:
        query: Document = {"enrolment_id": {"$in": enrolment_ids}}
        if status is not None:
            query["status"] = status
        cursor = self.db.shop_homework_records.find(query).sort(
            [("handed_in_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [r async for r in cursor]

    async def apply_grading(self, grading: Grading) -> Applied:
        g = grading

        async def work(s: TxSession) -> Applied:
            result = await self.db.shop_homework_records.update_one(
                {
                    "_id": g.record_id,
                    "status": "submitted",
                    "submit_count": g.submission,
                    "graded_submission": {"$ne": g.submission},
                },
                {
                    "$set": g.record_set,
                    "$push": {"gradings": g.entry},
                    "$inc": {"scholarship_awarded": g.scholarship, "penalty_total": g.penalty},
                },
                session=s,
            )
            if result.matched_count == 0:
                return "lost"
            if g.scholarship or g.penalty:
                moved = await self.db.shop_degree_enrolments.update_one(
                    {
                        "_id": g.enrolment_id,
                        "scholarship_awarded": g.expect_awarded,
                        "mentor_fee_balance": g.expect_fee_balance,
                    },
                    {
                        "$inc": {"scholarship_awarded": g.scholarship, "mentor_fee_balance": -g.penalty},
                        "$set": {"updated_at": g.now},
                    },
                    session=s,
                )
                if moved.matched_count == 0:
                    raise _Stale
            if g.scholarship:
                await self.accounts.credit(
                    g.user_id, g.scholarship, "degree_award", f"degree_award:{g.record_id}", session=s
                )
            if g.penalty_entry is not None:
                await self.db.shop_mentor_fee_ledger.insert_one(g.penalty_entry, session=s)
            return "applied"

        try:
            return await run_in_transaction(self.client, work)
        except _Stale:
            return "stale"
        except DuplicateKeyError:
            return "lost"  # the penalty's ref is taken: an earlier grading of this record moved it

    async def add_missed(self, record: Document) -> bool:
        record = dict(record)
        record["_id"] = await next_id(self.db, "shop_homework_records")
        try:
            await self.db.shop_homework_records.insert_one(record)
        except DuplicateKeyError:
            return False
        return True

    # -- follow-ups and files -----------------------------------------------------------------------------
    async def add_followup(self, followup: Document) -> Document:
        followup = dict(followup)
        followup["_id"] = await next_id(self.db, "shop_degree_followups")
        await self.db.shop_degree_followups.insert_one(followup)
        return followup

    async def followups(self, enrolment_id: str) -> list[Document]:
        cursor = self.db.shop_degree_followups.find({"enrolment_id": enrolment_id}).sort("_id", -1)
        return [f async for f in cursor]

    async def put_file(self, data: bytes, metadata: Document) -> str:
        bucket = AsyncGridFSBucket(self.db, bucket_name=BUCKET)
        file_id = await bucket.upload_from_stream(str(metadata.get("name", "file")), data, metadata=metadata)
        return str(file_id)
