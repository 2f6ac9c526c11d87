"""The degree path's student side on the real MongoDB (persistence/shop/degree.py): GridFS round trip,
the conditional writes (registration once, one opening, one start, submissions counted, nothing after a
pass), the unique keys, module order, and the service end to end over them."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from persistence.shop.degree import GridFSFiles, MongoDegreeStore, mongo_degree
from persistence.shop.schema import ensure_shop_indexes
from shop import degree_rules as rules
from shop.degree_service import Upload
from shop.ports import Duplicate
from tests.shop.degree_fakes import FORM, Clock, enrolment_document

Db = AsyncDatabase[dict[str, Any]]
NOW = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)


@pytest.fixture
async def db(mongo_db: Db) -> Db:
    await ensure_shop_indexes(mongo_db)
    return mongo_db


async def catalogue(db: Db) -> tuple[int, list[int], int]:
    """Degree 1 with modules 12 (order 2), 11 (order 1) and 13 (no order); chapter 21 of module 11."""
    await db.shop_degree_courses.insert_one({"_id": 1, "name": "Data", "total_scholarship": 40_000})
    await db.shop_courses.insert_many(
        [
            {"_id": 12, "name": "Two", "course_type": "degree", "degree_course_id": 1, "order": 2},
            {"_id": 11, "name": "One", "course_type": "degree", "degree_course_id": 1, "order": 1},
            {"_id": 13, "name": "Three", "course_type": "degree", "degree_course_id": 1},
            {"_id": 14, "name": "Other", "course_type": "paid"},
        ]
    )
    await db.shop_chapters.insert_one({"_id": 21, "course_id": 11, "chapter": 1, "name": "Start"})
    return 1, [11, 12, 13], 21


async def test_gridfs_round_trip_and_delete(db: Db) -> None:
    files = GridFSFiles(db)
    meta = {"owner_id": 7, "enrolment_id": "7:1", "purpose": "homework", "type": "image/png", "name": "a.png"}
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1000  # several GridFS chunks
    file_id = await files.put(data, meta)
    assert len(file_id) == 24
    assert await files.get(file_id) == (meta, data)
    stored = await db["degree_files.files"].find_one({})
    assert stored is not None and stored["metadata"] == meta
    await files.delete(file_id)
    assert await files.get(file_id) is None
    assert await files.get("not-an-object-id") is None
    await files.delete(file_id)  # twice: nothing to undo


async def test_modules_in_order_and_idempotent_study_records(db: Db) -> None:
    degree_id, _, _ = await catalogue(db)
    store = MongoDegreeStore(db)
    assert [m["_id"] for m in await store.modules(degree_id)] == [11, 12, 13]
    records = [
        {"_id": f"7:1:{m}", "enrolment_id": "7:1", "module_id": m, "order": i, "status": "not_opened"}
        for i, m in enumerate((11, 12))
    ]
    await store.add_study_records(records)
    await store.open_study_record("7:1:11", NOW, [])
    await store.add_study_records([*records, {**records[0], "_id": "7:1:13", "module_id": 13, "order": 2}])
    found = await store.study_records("7:1")
    assert [(r["module_id"], r["status"]) for r in found] == [
        (11, "studying"),
        (12, "not_opened"),
        (13, "not_opened"),
    ]


async def test_conditional_writes(db: Db) -> None:
    store = MongoDegreeStore(db)
    await db.shop_degree_enrolments.insert_one(enrolment_document(7, {"_id": 1, "name": "Data"}, NOW))
    assert await store.set_registration("7:1", {"company": "A"}, NOW)
    assert not await store.set_registration("7:1", {"company": "B"}, NOW)
    assert await store.set_mentor_if_none("7:1", 30, NOW) and not await store.set_mentor_if_none(
        "7:1", 31, NOW
    )
    starts = await asyncio.gather(*(store.start("7:1", NOW, NOW, NOW) for _ in range(3)))
    assert sorted(starts) == [False, False, True]
    assert await store.move_status("7:1", "not_started", "studying", NOW) is None
    moved = await store.move_status("7:1", "studying", "suspended", NOW)
    assert moved is not None and moved["status"] == "suspended"
    enrolment = await store.enrolment("7:1")
    assert enrolment is not None
    assert (enrolment["registration"], enrolment["mentor_id"]) == ({"company": "A"}, 30)

    await store.add_study_records(
        [{"_id": "7:1:11", "enrolment_id": "7:1", "order": 0, "status": "not_opened"}]
    )
    opens = await asyncio.gather(*(store.open_study_record("7:1:11", NOW, []) for _ in range(3)))
    assert sorted(opens) == [False, False, True]

    record = await store.insert_homework_record(
        {"enrolment_id": "7:1", "homework_id": 5, "status": "submitted", "submit_count": 1, "submissions": []}
    )
    with pytest.raises(Duplicate):
        await store.insert_homework_record({"enrolment_id": "7:1", "homework_id": 5, "submit_count": 1})
    pushes = await asyncio.gather(
        *(store.add_submission(record["_id"], 1, {"n": 2}, {"status": "submitted"}) for _ in range(3))
    )
    assert sum(p is not None for p in pushes) == 1
    after = await store.homework_record("7:1", 5)
    assert after is not None and after["submit_count"] == 2 and after["submissions"] == [{"n": 2}]
    await db.shop_homework_records.update_one({"_id": record["_id"]}, {"$set": {"status": "passed"}})
    assert await store.add_submission(record["_id"], 2, {"n": 3}, {}) is None


async def test_review_listing_sums_and_one_per_target(db: Db) -> None:
    store = MongoDegreeStore(db)

    def review(user: int, module: int | None, teacher: int, minute: int) -> dict[str, Any]:
        return {
            "degree_course_id": 1,
            "module_id": module,
            "user_id": user,
            "scores": {"teacher": teacher, "content": 4, "clarity": 3},
            "hidden": False,
            "created_at": NOW + datetime.timedelta(minutes=minute),
        }

    await store.add_review(review(7, None, 5, 1))
    await store.add_review(review(7, 11, 4, 2))
    await store.add_review(review(8, None, 2, 3))
    with pytest.raises(Duplicate):
        await store.add_review(review(7, None, 1, 4))
    items, total = await store.reviews(1, None, all_targets=True, skip=0, limit=2)
    assert total == 3 and [r["user_id"] for r in items] == [8, 7]
    items, total = await store.reviews(1, None, all_targets=False, skip=0, limit=10)
    assert total == 2 and {r["module_id"] for r in items} == {None}
    assert await store.review_sums(1, 11, all_targets=False) == {
        "count": 1,
        "teacher": 4,
        "content": 4,
        "clarity": 3,
    }
    assert (await store.review_sums(1, None, all_targets=True))["teacher"] == 11
    assert (await store.review_sums(2, None, all_targets=True))["count"] == 0


async def test_the_service_on_mongodb(db: Db) -> None:
    degree_id, modules, chapter = await catalogue(db)
    clock = Clock(NOW)
    service = mongo_degree(db, now=clock)
    homework = await service.add_homework({"chapter_id": chapter, "title": "First", "recommended_days": 5})
    await db.shop_degree_enrolments.insert_one(enrolment_document(7, {"_id": degree_id, "name": "Data"}, NOW))
    await service.register(7, degree_id, {**FORM, "open_first_module": True})
    enrolment = await service.enrolment(7, degree_id)
    assert enrolment["status"] == "studying"
    assert rules.validity(NOW.date()) == (enrolment["valid_from"].date(), enrolment["valid_to"].date())
    first = await service.submit(7, degree_id, int(homework["_id"]), "answer", [Upload("a.txt", b"hello")])
    again = await service.submit(7, degree_id, int(homework["_id"]), "", [Upload("b.txt", b"again")])
    assert (again["_id"], again["submit_count"]) == (first["_id"], 2)
    assert again["recommended_date"].date() == NOW.date() + datetime.timedelta(days=5)
    file_id = again["submissions"][1]["files"][0]["id"]
    meta, data = await GridFSFiles(db).get(file_id) or ({}, b"")
    assert data == b"again" and meta["owner_id"] == 7 and meta["type"] == "text/plain"
    detail = await service.degree_detail(7, degree_id)
    assert [m["module_id"] for m in detail["modules"]] == modules
    assert detail["modules"][0]["homework"][0]["record"]["submit_count"] == 2
