"""The degree path's back office (admin/degree.py): degree courses, a cohort, homework authoring,
mentors and the records waiting for a grade. Pages read the degree path's documents (inserted here as the
degree services would write them); every write goes through AdminActions and leaves one audit entry."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from backoffice.actions import Actor, AdminActions
from persistence.mongo import from_ms
from persistence.shop import ensure_shop_indexes
from shop.degree_rules import EnrolmentEvent
from tests.admin.conftest import AdminClient

XSS = "<script>alert(1)</script>"
UTC = datetime.UTC


def day(value: datetime.date) -> datetime.datetime:
    return datetime.datetime(value.year, value.month, value.day, tzinfo=UTC)


async def signed_in(client: AdminClient) -> AdminClient:
    await client.sign_in()
    await client.get("/admin/")
    await ensure_shop_indexes(client.server.ctx.db)
    return client


async def audit_count(client: AdminClient) -> int:
    return int(
        await client.server.ctx.db.audit.count_documents({"action": {"$regex": "degree|mentor|homework"}})
    )


async def degree_actions(client: AdminClient) -> list[tuple[str, str]]:
    return [
        (e["action"], e["target"])
        async for e in client.server.ctx.db.audit.find({"action": {"$regex": "^degree\\."}}).sort("_id", 1)
    ]


async def flash_of(client: AdminClient, location: str) -> bytes:
    return (await client.get(location)).body


class Cohort:
    """A degree of two modules (two chapters, one homework each), two students and a mentor."""

    degree_id = 901
    modules = (9011, 9012)
    chapters = (90111, 90112, 90121, 90122)

    def __init__(self, client: AdminClient) -> None:
        self.client = client
        self.db = client.server.ctx.db
        self.today = from_ms(client.server.clock.now_ms()).date()
        self.students: list[int] = []
        self.mentor = 0

    def enrolment_id(self, student: int) -> str:
        return f"{student}:{self.degree_id}"

    async def build(self) -> Cohort:
        db, now = self.db, day(self.today)
        await db.shop_degree_courses.insert_one(
            {
                "_id": self.degree_id,
                "name": f"Full-stack {XSS}",
                "total_scholarship": 40_000,
                "mentor_fee": 15_000,
                "period_days": 150,
                "scholarships": [{"time_percent": 60, "value": 10_000}],
            }
        )
        for order, module_id in enumerate(self.modules):
            await db.shop_courses.insert_one(
                {
                    "_id": module_id,
                    "name": f"Module {order + 1}",
                    "course_type": "degree",
                    "degree_course_id": self.degree_id,
                    "order": order,
                    "status": "online",
                }
            )
        for index, chapter_id in enumerate(self.chapters):
            module_id = self.modules[index // 2]
            await db.shop_chapters.insert_one(
                {"_id": chapter_id, "course_id": module_id, "chapter": index % 2 + 1, "name": f"Ch {index}"}
            )
            await db.shop_homework.insert_one(
                {
                    "_id": chapter_id * 10,
                    "course_id": module_id,
                    "chapter_id": chapter_id,
                    "chapter": index % 2 + 1,
                    "order": 0,
                    "title": f"Homework {index} {XSS}",
                    "kind": "assignment",
                    "requirement": "",
                    "scoring_points": "",
                    "recommended_days": 3,
                    "scholarship_value": 2_000,
                    "enabled": True,
                    "created_at": now,
                }
            )
        self.mentor, _ = await self.client.server.register("mentor_ann")
        await db.shop_mentors.insert_one(
            {"_id": self.mentor, "name": f"Ann {XSS}", "intro": "", "active": True, "created_at": now}
        )
        for name in ("stu_a", "stu_b"):
            student, _ = await self.client.server.register(name)
            self.students.append(student)
        # stu_a studies module 1 (opened 10 days ago: both homework past their dates, one passed,
        # one waiting for a grade); stu_b has registered and opened nothing yet.
        opened = self.today - datetime.timedelta(days=10)
        await self.enrol(self.students[0], "studying", opened=opened)
        await self.enrol(self.students[1], "not_started", opened=None)
        return self

    async def enrol(self, student: int, status: str, *, opened: datetime.date | None) -> None:
        eid = self.enrolment_id(student)
        now = day(self.today)
        await self.db.shop_degree_enrolments.insert_one(
            {
                "_id": eid,
                "user_id": student,
                "degree_course_id": self.degree_id,
                "degree_name": "Full-stack",
                "order_no": f"9{student}",
                "status": status,
                "created_at": now,
                "registration": {
                    "company": f"ACME {XSS}",
                    "position": "dev",
                    "salary_band": "10-15k",
                    "experience": 11,
                    "study_hours": 2,
                    "why_course": "",
                    "why_us": "",
                    "expectations": "",
                    "open_first_module": False,
                    "preferred_mentor_id": None,
                    "at": now,
                },
                "mentor_id": self.mentor if opened else None,
                "valid_from": day(opened) if opened else None,
                "valid_to": day(opened + datetime.timedelta(days=729)) if opened else None,
                "period_days": 150,
                "total_scholarship": 40_000,
                "scholarship_awarded": 2_000 if opened else 0,
                "mentor_fee": 15_000,
                "mentor_fee_balance": 15_000,
                "scholarship_tiers": [{"time_percent": 60, "value": 10_000}],
                "graduated_at": None,
                "graduation_award": 0,
                "updated_at": now,
            }
        )
        for order, module_id in enumerate(self.modules):
            first = opened is not None and order == 0
            schedule = []
            if first:
                assert opened is not None
                for n, chapter_id in enumerate(self.chapters[:2]):
                    due = opened + datetime.timedelta(days=3 * (n + 1))
                    schedule.append({"homework_id": chapter_id * 10, "recommended_date": day(due)})
            await self.db.shop_study_records.insert_one(
                {
                    "_id": f"{eid}:{module_id}",
                    "enrolment_id": eid,
                    "user_id": student,
                    "degree_course_id": self.degree_id,
                    "module_id": module_id,
                    "module_name": f"Module {order + 1}",
                    "order": order,
                    "status": "studying" if first else "not_opened",
                    "opened_at": day(opened) if first and opened else None,
                    "done_at": None,
                    "schedule": schedule,
                }
            )
        if opened is None:
            return
        for n, (status, chapter_id) in enumerate(
            zip(("passed", "submitted"), self.chapters[:2], strict=True)
        ):
            handed = day(opened) + datetime.timedelta(days=2 + 5 * n, hours=n)
            await self.db.shop_homework_records.insert_one(
                {
                    "_id": 7000 + n,
                    "enrolment_id": eid,
                    "user_id": student,
                    "degree_course_id": self.degree_id,
                    "module_id": self.modules[0],
                    "homework_id": chapter_id * 10,
                    "homework_title": f"Homework {n} {XSS}",
                    "mentor_id": self.mentor,
                    "recommended_date": day(opened + datetime.timedelta(days=3 * (n + 1))),
                    "status": status,
                    "reward_status": "rewarded" if status == "passed" else "new",
                    "submit_count": 1,
                    "submissions": [{"n": 1, "text": "done", "files": [], "at": handed}],
                    "handed_in_at": handed,
                    "grade": "A" if status == "passed" else None,
                }
            )


async def test_pages_render_escaped_with_counts_and_behind_schedule(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    a, b = (cohort.enrolment_id(s) for s in cohort.students)

    listing = await client.get("/admin/degrees")
    assert listing.status == 200
    assert b"Full-stack &lt;script&gt;" in listing.body and XSS.encode() not in listing.body
    row = listing.body.split(f'data-degree="{cohort.degree_id}"'.encode())[1].split(b"</tr>")[0]
    assert b'data-status="studying">studying' in row and b'data-status="not_started"' in row
    assert b'<td class="num">2</td>' in row  # two modules
    assert b'href="/admin/degrees"' in listing.body  # the nav link
    assert b"Homework waiting for a grade: 1" in listing.body

    page = await client.get(f"/admin/degrees/{cohort.degree_id}")
    assert page.status == 200 and XSS.encode() not in page.body
    assert b"ACME &lt;script&gt;" in page.body and b"10+ yrs" in page.body
    row_a = page.body.split(f'data-enrolment="{a}"'.encode())[1].split(b"</tr>")[0]
    row_b = page.body.split(f'data-enrolment="{b}"'.encode())[1].split(b"</tr>")[0]
    # Both planned homework are past their date; one passed, the other waits for its grade: 1 behind.
    assert b'data-behind="1"' in row_a and b"0 / 2" in row_a and b"Suspend" in row_a
    assert b"Ann &lt;script&gt;" in row_a and b"\xc2\xa520.00 of \xc2\xa5400.00" in row_a
    assert b'data-behind="0"' in row_b and b"Open module" in row_b and b"Suspend" not in row_b
    studying = await client.get(f"/admin/degrees/{cohort.degree_id}?status=studying")
    assert f'data-enrolment="{a}"'.encode() in studying.body
    assert f'data-enrolment="{b}"'.encode() not in studying.body
    assert (await client.get("/admin/degrees/424242")).status == 404

    homework = await client.get(f"/admin/degrees/homework?module_id={cohort.modules[0]}")
    assert homework.status == 200 and b"Homework 0 &lt;script&gt;" in homework.body
    assert f'data-chapter="{cohort.chapters[0]}"'.encode() in homework.body
    assert (await client.get("/admin/degrees/homework")).status == 200
    assert (await client.get("/admin/degrees/homework?module_id=424242")).status == 404

    mentors = await client.get("/admin/mentors")
    assert (
        mentors.status == 200 and b"Ann &lt;script&gt;" in mentors.body and XSS.encode() not in mentors.body
    )
    mentor_row = mentors.body.split(f'data-mentor="{cohort.mentor}"'.encode())[1].split(b"</tr>")[0]
    assert b'<td class="num">1</td>' in mentor_row  # one student
    assert f'mentor_id={cohort.mentor}">1</a>'.encode() in mentor_row  # one waiting

    records = await client.get("/admin/degrees/records")
    assert records.status == 200 and XSS.encode() not in records.body
    assert b'data-record="7001"' in records.body and b'data-record="7000"' not in records.body
    assert b"late" in records.body  # handed in after its recommended date
    passed = await client.get("/admin/degrees/records?status=passed")
    assert b'data-record="7000"' in passed.body
    other = await client.get("/admin/degrees/records?mentor_id=424242")
    assert b'data-record="7001"' not in other.body


async def test_a_non_admin_is_refused(admin_client: AdminClient) -> None:
    server = admin_client.server
    await admin_client.get("/admin/login")
    for path in (
        "/admin/degrees",
        "/admin/degrees/1",
        "/admin/degrees/homework",
        "/admin/mentors",
        "/admin/degrees/records",
    ):
        answer = await admin_client.get(path)
        assert answer.status == 302 and answer.headers["Location"].startswith("/admin/login?next="), path
    for path in (
        "/admin/mentors/grant",
        "/admin/degrees/enrolments/1:2/suspend",
        "/admin/degrees/homework/new",
    ):
        answer = await admin_client.post(path, {"user": "x"})
        assert answer.status == 303 and answer.headers["Location"] == "/admin/login", path
    await server.register("plain_user", "plain-user-pass")
    refused = await admin_client.sign_in("plain_user", "plain-user-pass")
    assert "gavel_admin" not in admin_client.cookies, refused.status
    assert (await admin_client.get("/admin/mentors")).status == 302


async def test_forms_reach_the_admin_actions(
    admin_client: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each form calls its AdminActions method with the contract's arguments and the signed-in actor."""
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def fake(name: str) -> Any:
        async def method(self: AdminActions, actor: Actor, *args: Any) -> dict[str, Any]:
            assert actor.is_admin and actor.username == "admin"
            calls.append((name, args))
            return {"_id": 5}

        return method

    for name in (
        "degree_add_homework",
        "degree_update_homework",
        "degree_open_module",
        "degree_change_status",
        "degree_grant_mentor",
        "degree_revoke_mentor",
        "degree_assign_mentor",
    ):
        monkeypatch.setattr(AdminActions, name, fake(name), raising=False)
    a = cohort.enrolment_id(cohort.students[0])
    homework_id = cohort.chapters[0] * 10
    await client.get("/admin/mentors")
    form = {
        "chapter_id": str(cohort.chapters[0]),
        "title": "T",
        "kind": "assignment",
        "recommended_days": "4",
        "scholarship_value": "20",
        "enabled": "1",
    }
    posts: list[tuple[str, dict[str, str]]] = [
        ("/admin/degrees/homework/new", form),
        (f"/admin/degrees/homework/{homework_id}/edit", {**form, "title": "Homework 0 changed"}),
        (f"/admin/degrees/enrolments/{a}/open", {"module_id": str(cohort.modules[1])}),
        (f"/admin/degrees/enrolments/{a}/suspend", {}),
        (f"/admin/degrees/enrolments/{a}/resume", {}),
        ("/admin/mentors/grant", {"user": str(cohort.students[1]), "name": "Bee", "intro": "hi"}),
        (f"/admin/mentors/{cohort.mentor}/revoke", {}),
        (f"/admin/degrees/enrolments/{a}/mentor", {"mentor_id": str(cohort.mentor)}),
    ]
    for path, fields in posts:
        answer = await client.post(path, fields)
        assert answer.status == 303 and b"flash ok" in await flash_of(client, answer.headers["Location"]), (
            path
        )
    added = {
        "course_id": cohort.modules[0],
        "chapter_id": cohort.chapters[0],
        "title": "T",
        "kind": "assignment",
        "requirement": "",
        "scoring_points": "",
        "recommended_days": 4,
        "scholarship_value": 2000,
        "order": 0,
        "enabled": True,
    }
    assert calls == [
        ("degree_add_homework", (added,)),
        ("degree_update_homework", (homework_id, {"title": "Homework 0 changed", "recommended_days": 4})),
        ("degree_open_module", (a, cohort.modules[1])),
        ("degree_change_status", (a, EnrolmentEvent.SUSPEND)),
        ("degree_change_status", (a, EnrolmentEvent.RESUME)),
        ("degree_grant_mentor", (cohort.students[1], "Bee", "hi")),
        ("degree_revoke_mentor", (cohort.mentor,)),
        ("degree_assign_mentor", (a, cohort.mentor)),
    ]


async def test_homework_add_and_edit_are_audited(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    db = cohort.db
    chapter = cohort.chapters[1]
    await client.get(f"/admin/degrees/homework?module_id={cohort.modules[0]}")
    before = await audit_count(client)
    form: dict[str, Any] = {
        "module_id": str(cohort.modules[0]),
        "chapter_id": str(chapter),
        "title": "Build a REST API",
        "kind": "exam",
        "requirement": "Endpoints and tests.",
        "scoring_points": "Correctness 60\nTests 40",
        "recommended_days": "5",
        "scholarship_value": "30.00",
        "order": "2",
        "enabled": "1",
    }
    added = await client.post("/admin/degrees/homework/new", form)
    assert added.status == 303, added.body
    assert b"flash ok" in await flash_of(client, added.headers["Location"])
    doc = await db.shop_homework.find_one({"title": "Build a REST API"})
    assert doc is not None and doc["chapter_id"] == chapter and doc["course_id"] == cohort.modules[0]
    assert (doc["kind"], doc["scholarship_value"], doc["recommended_days"], doc["enabled"]) == (
        "exam",
        3000,
        5,
        True,
    )
    assert await audit_count(client) == before + 1

    edited = await client.post(
        f"/admin/degrees/homework/{doc['_id']}/edit", {**form, "title": "Build a REST API v2", "enabled": ""}
    )
    assert edited.status == 303
    doc = await db.shop_homework.find_one({"_id": doc["_id"]})
    assert doc["title"] == "Build a REST API v2" and doc["enabled"] is False
    assert await audit_count(client) == before + 2
    unchanged = await client.post(
        f"/admin/degrees/homework/{doc['_id']}/edit", {**form, "title": "Build a REST API v2", "enabled": ""}
    )
    assert b"nothing changed" in await flash_of(client, unchanged.headers["Location"])
    assert await audit_count(client) == before + 2

    for bad in ({"recommended_days": "0"}, {"title": ""}, {"kind": "quiz"}, {"scholarship_value": "-1"}):
        refused = await client.post("/admin/degrees/homework/new", {**form, **bad})
        assert b"flash error" in await flash_of(client, refused.headers["Location"]), bad
    assert await db.shop_homework.count_documents({"course_id": cohort.modules[0]}) == 3
    assert await audit_count(client) == before + 2
    assert await degree_actions(client) == [
        ("degree.homework_create", f"homework:{doc['_id']}"),
        ("degree.homework_update", f"homework:{doc['_id']}"),
    ]


async def test_grant_revoke_and_assign_mentor_are_audited(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    db = cohort.db
    bob, _ = await client.server.register("mentor_bob")
    await client.get("/admin/mentors")
    before = await audit_count(client)

    granted = await client.post(
        "/admin/mentors/grant", {"user": "mentor_bob", "name": "Bob", "intro": "Go & Python"}
    )
    assert granted.status == 303 and b"flash ok" in await flash_of(client, granted.headers["Location"])
    mentor = await db.shop_mentors.find_one({"_id": bob})
    assert mentor is not None and mentor["active"] and mentor["name"] == "Bob"
    assert await audit_count(client) == before + 1
    unknown = await client.post("/admin/mentors/grant", {"user": "nobody_here", "name": "X"})
    assert b"flash error" in await flash_of(client, unknown.headers["Location"])

    student_b = cohort.enrolment_id(cohort.students[1])
    await client.get(f"/admin/degrees/{cohort.degree_id}")
    assigned = await client.post(f"/admin/degrees/enrolments/{student_b}/mentor", {"mentor_id": str(bob)})
    assert assigned.status == 303 and assigned.headers["Location"] == f"/admin/degrees/{cohort.degree_id}"
    assert (await db.shop_degree_enrolments.find_one({"_id": student_b}))["mentor_id"] == bob
    assert await audit_count(client) == before + 2

    revoked = await client.post(f"/admin/mentors/{bob}/revoke")
    assert revoked.status == 303
    assert (await db.shop_mentors.find_one({"_id": bob}))["active"] is False
    assert await audit_count(client) == before + 3
    inactive = await client.post(f"/admin/degrees/enrolments/{student_b}/mentor", {"mentor_id": str(bob)})
    assert b"flash error" in await flash_of(client, inactive.headers["Location"])
    page = await client.get("/admin/mentors")
    assert b"revoked" in page.body
    assert [action for action, _ in await degree_actions(client)] == [
        "degree.mentor_grant",
        "degree.mentor_assign",
        "degree.mentor_revoke",
    ]


async def test_open_module_suspend_and_resume_are_audited(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    db = cohort.db
    a, b = (cohort.enrolment_id(s) for s in cohort.students)
    await client.get(f"/admin/degrees/{cohort.degree_id}")
    before = await audit_count(client)

    opened = await client.post(f"/admin/degrees/enrolments/{b}/open", {"module_id": str(cohort.modules[1])})
    assert opened.status == 303 and b"flash ok" in await flash_of(client, opened.headers["Location"])
    study = await db.shop_study_records.find_one({"_id": f"{b}:{cohort.modules[1]}"})
    assert study["status"] == "studying" and len(study["schedule"]) == 2  # an admin may skip ahead
    assert (await db.shop_degree_enrolments.find_one({"_id": b}))["status"] == "studying"
    assert await audit_count(client) == before + 1
    again = await client.post(f"/admin/degrees/enrolments/{b}/open", {"module_id": str(cohort.modules[1])})
    assert b"MODULE_ALREADY_OPEN" in await flash_of(client, again.headers["Location"])

    suspended = await client.post(f"/admin/degrees/enrolments/{a}/suspend", {"back": "https://evil.example/"})
    assert suspended.headers["Location"] == f"/admin/degrees/{cohort.degree_id}"  # no open redirect
    assert (await db.shop_degree_enrolments.find_one({"_id": a}))["status"] == "suspended"
    page = await client.get(f"/admin/degrees/{cohort.degree_id}?status=suspended")
    assert f'data-enrolment="{a}"'.encode() in page.body and b"Resume" in page.body
    twice = await client.post(f"/admin/degrees/enrolments/{a}/suspend")
    assert b"ENROLMENT_STATE" in await flash_of(client, twice.headers["Location"])
    resumed = await client.post(f"/admin/degrees/enrolments/{a}/resume")
    assert resumed.status == 303
    assert (await db.shop_degree_enrolments.find_one({"_id": a}))["status"] == "studying"
    assert await audit_count(client) == before + 3
    missing = await client.post(f"/admin/degrees/enrolments/{cohort.students[0]}:424242/resume")
    assert b"flash error" in await flash_of(client, missing.headers["Location"])
    assert await degree_actions(client) == [
        ("degree.open_module", f"degree_enrolment:{b}"),
        ("degree.suspend", f"degree_enrolment:{a}"),
        ("degree.resume", f"degree_enrolment:{a}"),
    ]


async def test_a_degree_goes_off_sale_and_back_audited(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cohort = await Cohort(client).build()
    db = cohort.db
    listing = await client.get("/admin/degrees")
    assert f'action="/admin/degrees/{cohort.degree_id}/offline"'.encode() in listing.body
    off = await client.post(f"/admin/degrees/{cohort.degree_id}/offline", {})
    assert off.status == 303 and b"flash ok" in await flash_of(client, off.headers["Location"])
    assert (await db.shop_degree_courses.find_one({"_id": cohort.degree_id}))["status"] == "offline"
    listing = await client.get("/admin/degrees")
    assert f'action="/admin/degrees/{cohort.degree_id}/online"'.encode() in listing.body
    on = await client.post(f"/admin/degrees/{cohort.degree_id}/online", {})
    assert on.status == 303
    assert (await db.shop_degree_courses.find_one({"_id": cohort.degree_id}))["status"] == "online"
    entries = [
        (e["action"], e["target"], e["after"])
        async for e in db.audit.find({"action": "degree_course.status"}).sort("_id", 1)
    ]
    target = f"degree_course:{cohort.degree_id}"
    assert entries == [
        ("degree_course.status", target, {"status": "offline"}),
        ("degree_course.status", target, {"status": "online"}),
    ]
    missing = await client.post("/admin/degrees/424242/offline", {})
    assert b"flash error" in await flash_of(client, missing.headers["Location"])
