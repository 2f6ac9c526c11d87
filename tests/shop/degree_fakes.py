"""In-memory `DegreeStore` and `FileStore` (shop/degree_ports.py) with the adapters' guards, plus
helpers that write the catalogue and the enrolment document as the BUY part creates it (docs/degree.md)."""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from shop.degree_service import DegreeService
from shop.model import Record
from shop.ports import Duplicate
from shop.reviews import SCORE_NAMES


class Clock:
    def __init__(self, at: datetime.datetime | None = None) -> None:
        self.at = at or datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.at

    def advance(self, days: int) -> None:
        self.at += datetime.timedelta(days=days)


class FakeDegreeStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, Record]] = {}
        self._ids = itertools.count(1)
        self.users: dict[int, str] = {}

    def table(self, name: str) -> dict[Any, Record]:
        return self.tables.setdefault(name, {})

    def _new(self, name: str, record: Record) -> Record:
        record["_id"] = next(self._ids)
        self.table(name)[record["_id"]] = copy.deepcopy(record)
        return copy.deepcopy(record)

    # -- catalogue --------------------------------------------------------------------------------------
    async def degree(self, degree_course_id: int) -> Record | None:
        return copy.deepcopy(self.table("degree_courses").get(degree_course_id))

    async def modules(self, degree_course_id: int) -> list[Record]:
        found = [
            copy.deepcopy(c)
            for c in self.table("courses").values()
            if c.get("course_type") == "degree" and c.get("degree_course_id") == degree_course_id
        ]
        return sorted(found, key=lambda c: (c.get("order") is None, c.get("order") or 0, c["_id"]))

    async def course(self, course_id: int) -> Record | None:
        return copy.deepcopy(self.table("courses").get(course_id))

    async def chapter(self, chapter_id: int) -> Record | None:
        return copy.deepcopy(self.table("chapters").get(chapter_id))

    # -- enrolments -------------------------------------------------------------------------------------
    async def enrolment(self, enrolment_id: str) -> Record | None:
        return copy.deepcopy(self.table("enrolments").get(enrolment_id))

    async def enrolments_of(self, user_id: int) -> list[Record]:
        found = [copy.deepcopy(e) for e in self.table("enrolments").values() if e["user_id"] == user_id]
        return sorted(found, key=lambda e: e["created_at"], reverse=True)

    async def set_registration(self, enrolment_id: str, registration: Record, now: datetime.datetime) -> bool:
        found = self.table("enrolments").get(enrolment_id)
        if found is None or found.get("registration") is not None:
            return False
        found.update(registration=copy.deepcopy(registration), updated_at=now)
        return True

    async def set_mentor_if_none(self, enrolment_id: str, mentor_id: int, now: datetime.datetime) -> bool:
        found = self.table("enrolments").get(enrolment_id)
        if found is None or found.get("mentor_id") is not None:
            return False
        found.update(mentor_id=mentor_id, updated_at=now)
        return True

    async def start(
        self,
        enrolment_id: str,
        valid_from: datetime.datetime,
        valid_to: datetime.datetime,
        now: datetime.datetime,
    ) -> bool:
        found = self.table("enrolments").get(enrolment_id)
        if found is None or found.get("status") != "not_started":
            return False
        found.update(status="studying", valid_from=valid_from, valid_to=valid_to, updated_at=now)
        return True

    async def move_status(
        self, enrolment_id: str, from_status: str, to_status: str, now: datetime.datetime
    ) -> Record | None:
        found = self.table("enrolments").get(enrolment_id)
        if found is None or found.get("status") != from_status:
            return None
        found.update(status=to_status, updated_at=now)
        return copy.deepcopy(found)

    # -- study records ----------------------------------------------------------------------------------
    async def add_study_records(self, records: Iterable[Record]) -> None:
        for record in records:
            self.table("study_records").setdefault(record["_id"], copy.deepcopy(record))

    async def study_records(self, enrolment_id: str) -> list[Record]:
        found = [
            copy.deepcopy(r)
            for r in self.table("study_records").values()
            if r["enrolment_id"] == enrolment_id
        ]
        await asyncio.sleep(0)  # the answer is read, then concurrent requests run on: as over a network
        return sorted(found, key=lambda r: r["order"])

    async def open_study_record(
        self, record_id: str, opened_at: datetime.datetime, schedule: list[Record]
    ) -> bool:
        found = self.table("study_records").get(record_id)
        if found is None or found["status"] != "not_opened":
            return False
        found.update(status="studying", opened_at=opened_at, schedule=copy.deepcopy(schedule))
        return True

    # -- homework ---------------------------------------------------------------------------------------
    async def add_homework(self, homework: Record) -> Record:
        return self._new("homework", homework)

    async def update_homework(self, homework_id: int, changes: Record) -> Record | None:
        found = self.table("homework").get(homework_id)
        if found is None:
            return None
        found.update(copy.deepcopy(changes))
        return copy.deepcopy(found)

    async def homework(self, homework_id: int) -> Record | None:
        return copy.deepcopy(self.table("homework").get(homework_id))

    async def homework_of(self, course_ids: Iterable[int]) -> list[Record]:
        wanted = set(course_ids)
        found = [copy.deepcopy(h) for h in self.table("homework").values() if h["course_id"] in wanted]
        return sorted(found, key=lambda h: (h["chapter"], h["order"], h["_id"]))

    # -- homework records -------------------------------------------------------------------------------
    async def homework_record(self, enrolment_id: str, homework_id: int) -> Record | None:
        found = next(
            (
                copy.deepcopy(r)
                for r in self.table("homework_records").values()
                if r["enrolment_id"] == enrolment_id and r["homework_id"] == homework_id
            ),
            None,
        )
        await asyncio.sleep(0)  # as study_records
        return found

    async def homework_records(self, enrolment_id: str) -> list[Record]:
        return [
            copy.deepcopy(r)
            for r in self.table("homework_records").values()
            if r["enrolment_id"] == enrolment_id
        ]

    async def insert_homework_record(self, record: Record) -> Record:
        key = (record["enrolment_id"], record["homework_id"])
        if any((r["enrolment_id"], r["homework_id"]) == key for r in self.table("homework_records").values()):
            raise Duplicate("enrolment_homework")  # the unique index: checked and written in one step
        return self._new("homework_records", record)

    async def add_submission(
        self, record_id: int, expected_count: int, submission: Record, changes: Record
    ) -> Record | None:
        found = self.table("homework_records").get(record_id)
        if found is None or found.get("status") == "passed" or found.get("submit_count", 0) != expected_count:
            return None
        found.update(copy.deepcopy(changes))
        found.setdefault("submissions", []).append(copy.deepcopy(submission))
        found["submit_count"] = expected_count + 1
        return copy.deepcopy(found)

    # -- mentors, users ---------------------------------------------------------------------------------
    async def mentor(self, user_id: int) -> Record | None:
        return copy.deepcopy(self.table("mentors").get(user_id))

    async def active_mentors(self) -> list[Record]:
        return [copy.deepcopy(m) for m in self.table("mentors").values() if m.get("active")]

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        return {u: self.users[u] for u in user_ids if u in self.users}

    # -- reviews ----------------------------------------------------------------------------------------
    async def add_review(self, review: Record) -> Record:
        for other in self.table("reviews").values():
            key = ("user_id", "degree_course_id", "module_id")
            if all(other[k] == review[k] for k in key):
                raise Duplicate("one_review_per_target")
        return self._new("reviews", review)

    def _visible(self, degree_course_id: int, module_id: int | None, all_targets: bool) -> list[Record]:
        return [
            r
            for r in self.table("reviews").values()
            if r["degree_course_id"] == degree_course_id
            and not r["hidden"]
            and (all_targets or r["module_id"] == module_id)
        ]

    async def reviews(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool, skip: int, limit: int
    ) -> tuple[list[Record], int]:
        found = sorted(
            self._visible(degree_course_id, module_id, all_targets),
            key=lambda r: (r["created_at"], r["_id"]),
            reverse=True,
        )
        return [copy.deepcopy(r) for r in found[skip : skip + limit]], len(found)

    async def review_sums(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool
    ) -> Mapping[str, int]:
        found = self._visible(degree_course_id, module_id, all_targets)
        return {"count": len(found), **{n: sum(int(r["scores"][n]) for r in found) for n in SCORE_NAMES}}


class FakeFiles:
    def __init__(self) -> None:
        self.files: dict[str, tuple[Record, bytes]] = {}

    async def put(self, data: bytes, metadata: Record) -> str:
        file_id = secrets.token_hex(12)
        self.files[file_id] = (copy.deepcopy(metadata), data)
        return file_id

    async def get(self, file_id: str) -> tuple[Record, bytes] | None:
        return self.files.get(file_id)

    async def delete(self, file_id: str) -> None:
        self.files.pop(file_id, None)


# == a little catalogue ======================================================================================
class World:
    """A store, files, a clock and the service over them, with catalogue helpers."""

    def __init__(self) -> None:
        self.store = FakeDegreeStore()
        self.files = FakeFiles()
        self.clock = Clock()
        self.service = DegreeService(self.store, self.files, now=self.clock)

    def degree(self, *, total: int = 40_000, fee: int = 15_000, period_days: int = 150) -> int:
        degree_id = next(self.store._ids)
        self.store.table("degree_courses")[degree_id] = {
            "_id": degree_id,
            "name": f"Degree {degree_id}",
            "total_scholarship": total,
            "mentor_fee": fee,
            "period_days": period_days,
            "scholarships": [{"time_percent": 100, "value": 2000}],
        }
        return degree_id

    def module(self, degree_id: int, name: str, order: int | None = None) -> int:
        module_id = next(self.store._ids)
        course: Record = {
            "_id": module_id,
            "name": name,
            "course_type": "degree",
            "degree_course_id": degree_id,
        }
        if order is not None:
            course["order"] = order
        self.store.table("courses")[module_id] = course
        return module_id

    def chapter(self, course_id: int, number: int = 1) -> int:
        chapter_id = next(self.store._ids)
        self.store.table("chapters")[chapter_id] = {
            "_id": chapter_id,
            "course_id": course_id,
            "chapter": number,
            "name": f"Chapter {number}",
        }
        return chapter_id

    async def homework(
        self, chapter_id: int, title: str, days: int = 7, value: int = 1000, **more: Any
    ) -> int:
        made = await self.service.add_homework(
            {
                "chapter_id": chapter_id,
                "title": title,
                "recommended_days": days,
                "scholarship_value": value,
                **more,
            }
        )
        return int(made["_id"])

    def mentor(self, user_id: int, *, active: bool = True) -> None:
        self.store.table("mentors")[user_id] = {
            "_id": user_id,
            "name": f"Mentor {user_id}",
            "intro": "",
            "active": active,
        }

    def enrol(self, user_id: int, degree_id: int, **overrides: Any) -> str:
        """The enrolment document the BUY part writes at payment (docs/degree.md)."""
        degree = self.store.table("degree_courses")[degree_id]
        return insert_enrolment(self.store.table("enrolments"), user_id, degree, self.clock(), **overrides)


def enrolment_document(user_id: int, degree: Record, now: datetime.datetime, **overrides: Any) -> Record:
    """The `shop_degree_enrolments` document, as bought (not started, no form)."""
    doc: Record = {
        "_id": f"{user_id}:{degree['_id']}",
        "user_id": user_id,
        "degree_course_id": degree["_id"],
        "degree_name": degree.get("name", ""),
        "order_no": f"2025{user_id:06d}",
        "status": "not_started",
        "created_at": now,
        "registration": None,
        "mentor_id": None,
        "valid_from": None,
        "valid_to": None,
        "period_days": degree.get("period_days", 150),
        "total_scholarship": degree.get("total_scholarship", 0),
        "scholarship_awarded": 0,
        "mentor_fee": degree.get("mentor_fee", 0),
        "mentor_fee_balance": degree.get("mentor_fee", 0),
        "scholarship_tiers": list(degree.get("scholarships", [])),
        "graduated_at": None,
        "graduation_award": 0,
        "updated_at": now,
    }
    doc.update(overrides)
    return doc


def insert_enrolment(
    table: dict[Any, Record], user_id: int, degree: Record, now: datetime.datetime, **overrides: Any
) -> str:
    doc = enrolment_document(user_id, degree, now, **overrides)
    table[doc["_id"]] = doc
    return str(doc["_id"])


FORM: Record = {
    "company": "Acme",
    "position": "Engineer",
    "salary_band": "10-15k",
    "experience": 3,
    "study_hours": 2,
    "why_course": "Grow",
    "why_us": "Mentors",
    "expectations": "A job",
    "open_first_module": False,
    "preferred_mentor_id": None,
}
