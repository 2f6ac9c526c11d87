"""MentorService over MongoMentoringStore on the real MongoDB: the guarded grading transaction,
two graders at once (one credit, one ledger entry), the penalty's ledger entry once, graduation's
credit once, missed records unique per (enrolment, homework), and follow-up files in GridFS."""

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from persistence.accounts import Accounts, ScryptParams
from persistence.mongo import Database, connect, ensure_indexes
from persistence.shop.degree_mentoring import MongoMentoringStore, ensure_mentoring_indexes
from shop.degree_mentoring import AlreadyGraded, MentorService
from tests.shop.degree_docs import Doc, day, enrolment, hand_in, homework, study


@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)
    database = client[mongo_db.name]  # the fixture drops it afterwards
    await ensure_indexes(database)
    await ensure_mentoring_indexes(database)
    try:
        yield database
    finally:
        await client.close()


class Setup:
    def __init__(self, db: Database, accounts: Accounts, service: MentorService) -> None:
        self.db = db
        self.accounts = accounts
        self.service = service
        self.student = 0
        self.mentor = 0
        self.enrolment: Doc = {}

    async def balance(self) -> int:
        return (await self.accounts.profile(self.student)).balance

    async def ledger(self) -> list[Doc]:
        return [e async for e in self.db.ledger.find({"user_id": self.student})]


@pytest.fixture
async def setup(db: Database) -> Setup:
    accounts = Accounts(db.client, db, scrypt=ScryptParams(n=2**10))
    now = day("2026-02-01") + datetime.timedelta(hours=12)
    service = MentorService(MongoMentoringStore(db.client, db, accounts), now=lambda: now)
    s = Setup(db, accounts, service)
    s.student, _ = await accounts.register("student1", "password-1")
    s.mentor, _ = await accounts.register("mentor1", "password-1")
    await service.grant_mentor(s.mentor, "Ms Mentor", "")
    tiers = [{"time_percent": 100, "value": 3000}]
    s.enrolment = enrolment(s.student, mentor_id=s.mentor, tiers=tiers)
    await db.shop_degree_enrolments.insert_one(s.enrolment)
    schedule = [{"homework_id": 1, "recommended_date": day("2026-01-10")}]
    await db.shop_study_records.insert_one(study(s.enrolment, 11, schedule=schedule))
    await db.shop_homework.insert_one(homework(1, 11, value=2000))
    return s


async def test_concurrent_graders_credit_once(setup: Setup) -> None:
    s = setup
    await s.db.shop_homework_records.insert_one(
        hand_in(1, s.enrolment, 11, 1, handed_in="2026-01-10", recommended="2026-01-10")
    )
    results = await asyncio.gather(
        *(s.service.grade(s.mentor, 1, 1, "A", "good") for _ in range(4)),
        s.service.grade(0, 1, 1, "A", "admin too", by_admin=True),
        return_exceptions=True,
    )
    assert all(isinstance(r, dict) for r in results), results
    record = await s.db.shop_homework_records.find_one({"_id": 1})
    assert record is not None
    assert (record["status"], record["reward_status"], len(record["gradings"])) == ("passed", "rewarded", 1)
    # The module's only homework passed: module done, degree graduated (tier 100 %: 3000), once.
    enrolled = await s.db.shop_degree_enrolments.find_one({"_id": s.enrolment["_id"]})
    assert enrolled is not None
    assert (enrolled["status"], enrolled["graduation_award"], enrolled["scholarship_awarded"]) == (
        "graduated",
        3000,
        5000,
    )
    assert await s.balance() == 5000
    assert sorted((e["kind"], e["ref"], e["amount"]) for e in await s.ledger()) == [
        ("degree_award", "degree_award:1", 2000),
        ("degree_graduation", f"degree_graduation:{s.enrolment['_id']}", 3000),
    ]


async def test_racing_different_grades_one_wins(setup: Setup) -> None:
    s = setup
    await s.db.shop_homework_records.insert_one(
        hand_in(1, s.enrolment, 11, 1, handed_in="2026-01-12", recommended="2026-01-10")
    )
    results = await asyncio.gather(
        s.service.grade(s.mentor, 1, 1, "A", ""),
        s.service.grade(s.mentor, 1, 1, "D", ""),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["AlreadyGraded", "dict"]
    # Late either way: the penalty (15000 * 2000 // 40000 = 750) is taken once.
    entries = [e async for e in s.db.shop_mentor_fee_ledger.find({})]
    assert [(e["_id"], e["amount"], e["balance_after"]) for e in entries] == [
        ("mentor_penalty:1", -750, 14250)
    ]
    enrolled = await s.db.shop_degree_enrolments.find_one({"_id": s.enrolment["_id"]})
    assert enrolled is not None and enrolled["mentor_fee_balance"] == 14250
    assert [e for e in await s.ledger() if e["kind"] == "degree_award"] == []  # late: no scholarship
    with pytest.raises(AlreadyGraded):
        await s.service.grade(s.mentor, 1, 2, "A", "")


async def test_sweep_missed_once_and_followup_file(setup: Setup, db: Database) -> None:
    s = setup
    later = day("2026-01-11")
    assert (await s.service.sweep(later))["missed"] == 1
    assert (await s.service.sweep(later))["missed"] == 0
    missed = [r async for r in db.shop_homework_records.find({})]
    assert [(r["homework_id"], r["reward_status"], r["submit_count"]) for r in missed] == [(1, "missed", 0)]
    added = await s.service.add_followup(s.mentor, s.enrolment["_id"], "wechat", "talked", [("a.png", PNG)])
    file_id = added["files"][0]["id"]
    stream = await AsyncGridFSBucket(db, bucket_name="degree_files").open_download_stream(ObjectId(file_id))
    assert await stream.read() == PNG
    assert stream.metadata == {
        "owner_id": s.mentor,
        "enrolment_id": s.enrolment["_id"],
        "purpose": "followup",
        "type": "image/png",
        "name": "a.png",
    }


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
