"""The degree path's back office (学位课): degree courses, a degree's cohort, homework authoring, mentors
and the homework waiting for a grade.

Reads come straight from the collections (the documents of docs/degree.md), as admin/community.py does. Every
write goes through the admin-actions service (backoffice/actions.py: `degree_*` methods), which
authorizes, audits and calls the degree or mentoring service. Names, answers and homework text are
user text: templates render them escaped.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Iterable
from typing import Any

import tornado.web

from admin.base import PREFIX, AdminHandler, FormError, Paging, parse_int, parse_money, text_field
from backoffice.roles import mentor_only
from persistence.mongo import UTC, Document, from_ms
from shop.degree_mentoring import MAX_COMMENT
from shop.degree_rules import GRADES, EnrolmentEvent, ScheduleEntry, behind_schedule
from shop.degree_service import HOMEWORK_FIELDS as SERVICE_HOMEWORK_FIELDS
from shop.degree_service import MAX_HOMEWORK_ORDER, MAX_HOMEWORK_TEXT, MAX_RECOMMENDED_DAYS, MAX_TITLE

ENROLMENT_STATUSES = {
    "not_started": "not started 未开始",
    "studying": "studying 在学中",
    "suspended": "suspended 休学中",
    "graduated": "graduated 已毕业",
    "timed_out": "timed out 超时结业",
    "refunded": "refunded 已退款",
}
RECORD_STATUSES = {"submitted": "waiting for a grade", "passed": "passed", "failed": "failed"}
HOMEWORK_KINDS = {"assignment": "assignment 作业", "exam": "module exam 模块考核"}
SALARY_BANDS = ("<5k", "5-10k", "10-15k", "15-20k", "20-30k", ">30k")
COHORT_PAGE_SIZE = 50
RECORDS_PAGE_SIZE = 50
MAX_LISTED = 500
MAX_ID = 2**53 - 1
# The homework form edits every field the service takes but the derived course id.
HOMEWORK_FIELDS = tuple(name for name in SERVICE_HOMEWORK_FIELDS if name not in ("course_id", "chapter_id"))


def enrolment_path(raw: str) -> tuple[str, int]:
    """An enrolment id "user:degree" from a path, and its degree's id (404 for anything else)."""
    user, _, degree = raw.partition(":")
    if not (user.isdigit() and degree.isdigit() and len(user) <= 16 and len(degree) <= 16):
        raise tornado.web.HTTPError(404, f"no enrolment {raw[:40]}")
    return f"{int(user)}:{int(degree)}", int(degree)


async def user_names(db: Any, ids: Iterable[Any]) -> dict[int, str]:
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    return {
        int(u["_id"]): u.get("display_name") or u["username"]
        async for u in db.users.find({"_id": {"$in": wanted}}, {"username": 1, "display_name": 1})
    }


async def mentor_names(db: Any, ids: Iterable[Any]) -> dict[int, str]:
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    return {int(m["_id"]): m.get("name", "") async for m in db.shop_mentors.find({"_id": {"$in": wanted}})}


def _day(value: datetime.datetime | datetime.date) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    return value


def schedule_entries(study_records: Iterable[Document]) -> list[ScheduleEntry]:
    """Every planned homework of the enrolment's opened modules (a study record's `schedule`)."""
    return [
        ScheduleEntry(int(entry["homework_id"]), _day(entry["recommended_date"]))
        for record in study_records
        for entry in record.get("schedule") or []
        if entry.get("recommended_date") is not None
    ]


class DegreePage(AdminHandler):
    area = "degree"
    nav = "degrees"

    def today(self) -> datetime.date:
        # The engine's clock: the app's one clock (a fake one in tests).
        return from_ms(self.ctx.engine.clock.now_ms()).date()


# == 1. the degree courses ==================================================================================
class DegreesHandler(DegreePage):
    async def get(self) -> None:
        db = self.ctx.db
        degrees = [d async for d in db.shop_degree_courses.find({}).sort("_id", 1).limit(MAX_LISTED)]
        modules: dict[int, int] = {}
        async for module in db.shop_courses.find({"course_type": "degree"}, {"degree_course_id": 1}):
            if module.get("degree_course_id") is not None:
                key = int(module["degree_course_id"])
                modules[key] = modules.get(key, 0) + 1
        by_status: dict[int, dict[str, int]] = {}
        mentors: dict[int, set[int]] = {}
        async for row in await db.shop_degree_enrolments.aggregate(
            [
                {
                    "$group": {
                        "_id": {"degree": "$degree_course_id", "status": "$status"},
                        "count": {"$sum": 1},
                        "mentors": {"$addToSet": "$mentor_id"},
                    }
                }
            ]
        ):
            degree_id = int(row["_id"]["degree"])
            counts = by_status.setdefault(degree_id, {})
            counts[str(row["_id"]["status"])] = int(row["count"])
            mentors.setdefault(degree_id, set()).update(int(m) for m in row["mentors"] if m is not None)
        self.render(
            "degree_courses.html",
            degrees=degrees,
            modules=modules,
            by_status=by_status,
            mentors={k: len(v) for k, v in mentors.items()},
            statuses=ENROLMENT_STATUSES,
            waiting=await db.shop_homework_records.count_documents({"status": "submitted"}),
            page_title="Degree courses",
        )


# == 2. one degree's cohort =================================================================================
class CohortHandler(DegreePage):
    async def get(self, raw_id: str) -> None:
        degree_id = self.path_id(raw_id, "degree course")
        db = self.ctx.db
        degree = await db.shop_degree_courses.find_one({"_id": degree_id})
        if degree is None:
            raise tornado.web.HTTPError(404, f"no degree course {degree_id}")
        status = self.get_query_argument("status", "") or ""
        status = status if status in ENROLMENT_STATUSES else ""
        query: Document = {"degree_course_id": degree_id}
        if status:
            query["status"] = status
        total = await db.shop_degree_enrolments.count_documents(query)
        paging = Paging(self.query_int("page", 1), COHORT_PAGE_SIZE, total)
        enrolments = [
            e
            async for e in db.shop_degree_enrolments.find(query)
            .sort([("created_at", 1), ("_id", 1)])
            .skip(paging.skip)
            .limit(paging.size)
        ]
        counts = {
            str(row["_id"]): int(row["count"])
            async for row in await db.shop_degree_enrolments.aggregate(
                [
                    {"$match": {"degree_course_id": degree_id}},
                    {"$group": {"_id": "$status", "count": {"$sum": 1}}},
                ]
            )
        }
        modules = [
            m
            async for m in db.shop_courses.find(
                {"degree_course_id": degree_id}, {"name": 1, "order": 1}
            ).sort([("order", 1), ("_id", 1)])
        ]
        module_names = {int(m["_id"]): m.get("name", "") for m in modules}
        ids = [e["_id"] for e in enrolments]
        studies: dict[str, list[Document]] = {}
        async for record in db.shop_study_records.find({"enrolment_id": {"$in": ids}}).sort(
            [("order", 1), ("module_id", 1)]
        ):
            studies.setdefault(str(record["enrolment_id"]), []).append(record)
        handed_in: dict[str, set[int]] = {}
        passed: dict[str, set[int]] = {}
        async for record in db.shop_homework_records.find(
            {"enrolment_id": {"$in": ids}},
            {"enrolment_id": 1, "homework_id": 1, "status": 1, "submit_count": 1},
        ):
            key = str(record["enrolment_id"])
            if record.get("submit_count", 0):
                handed_in.setdefault(key, set()).add(int(record["homework_id"]))
            if record.get("status") == "passed":
                passed.setdefault(key, set()).add(int(record["homework_id"]))
        today = self.today()
        rows = []
        for enrolment in enrolments:
            key = str(enrolment["_id"])
            records = studies.get(key, [])
            rows.append(
                {
                    "doc": enrolment,
                    "studies": records,
                    "done": sum(1 for r in records if r.get("status") == "done"),
                    "total": len(records) or len(modules),
                    "behind": behind_schedule(
                        schedule_entries(records), handed_in.get(key, set()), passed.get(key, set()), today
                    ),
                    "closed": [r for r in records if r.get("status") == "not_opened"],
                }
            )
        active = [m async for m in db.shop_mentors.find({"active": True}).sort("_id", 1).limit(MAX_LISTED)]
        self.render(
            "degree_cohort.html",
            degree=degree,
            rows=rows,
            status=status,
            statuses=ENROLMENT_STATUSES,
            counts=counts,
            module_names=module_names,
            names=await user_names(db, (e["user_id"] for e in enrolments)),
            mentors=await mentor_names(db, (e.get("mentor_id") for e in enrolments)),
            active_mentors=active,
            paging=paging,
            paging_query=urllib.parse.urlencode({"status": status}) + "&",
            page_title=f"Cohort of {degree.get('name', '')}",
        )


class EnrolmentActionHandler(DegreePage):
    """Assign a mentor, open a module, suspend or resume: one POST each, back to the cohort."""

    async def post(self, raw_id: str, verb: str) -> None:
        enrolment_id, degree_id = enrolment_path(raw_id)
        back = self.form("back") if self.form("back").startswith(f"{PREFIX}/degrees/{degree_id}") else ""
        back = back or f"{PREFIX}/degrees/{degree_id}"

        async def run() -> None:
            actor = self.actor()
            if verb == "mentor":
                mentor_id = parse_int(self.form("mentor_id"), "Mentor", minimum=1, maximum=MAX_ID)
                await self.actions.degree_assign_mentor(actor, enrolment_id, mentor_id)
                self.done(f"Enrolment {enrolment_id}: mentor {mentor_id} assigned.", back)
            elif verb == "open":
                module_id = parse_int(self.form("module_id"), "Module", minimum=1, maximum=MAX_ID)
                await self.actions.degree_open_module(actor, enrolment_id, module_id)
                self.done(f"Enrolment {enrolment_id}: module {module_id} opened.", back)
            else:
                event = EnrolmentEvent.SUSPEND if verb == "suspend" else EnrolmentEvent.RESUME
                await self.actions.degree_change_status(actor, enrolment_id, event)
                self.done(f"Enrolment {enrolment_id}: {verb} done.", back)

        await self.guarded(run, back=back)


class DegreeStatusHandler(DegreePage):
    """Put a degree course on sale or take it off (AdminActions.set_degree_status, audited): an
    offline degree cannot be added to a cart or paid for; enrolled students keep studying."""

    async def post(self, raw_id: str, status: str) -> None:
        degree_id = self.path_id(raw_id, "degree course")
        back = f"{PREFIX}/degrees"

        async def run() -> None:
            await self.actions.set_degree_status(self.actor(), degree_id, status)
            self.done(f"Degree course {degree_id} is {status}.", back)

        await self.guarded(run, back=back)


# == 3. homework of a module ================================================================================
class HomeworkHandler(DegreePage):
    """`/admin/degrees/homework?module_id=N`: the module's chapters and their homework; without a
    module, the degree modules to choose from."""

    async def get(self) -> None:
        db = self.ctx.db
        module_id = self.query_int("module_id", 0, minimum=0, maximum=MAX_ID)
        modules = [
            m
            async for m in db.shop_courses.find(
                {"course_type": "degree"}, {"name": 1, "degree_course_id": 1, "order": 1}
            )
            .sort([("degree_course_id", 1), ("order", 1), ("_id", 1)])
            .limit(MAX_LISTED)
        ]
        degrees = {
            int(d["_id"]): d.get("name", "")
            async for d in db.shop_degree_courses.find(
                {"_id": {"$in": list({m.get("degree_course_id") for m in modules})}}, {"name": 1}
            )
        }
        module: Document | None = None
        chapters: list[Document] = []
        homework: dict[Any, list[Document]] = {}
        if module_id:
            module = await db.shop_courses.find_one({"_id": module_id, "course_type": "degree"})
            if module is None:
                raise tornado.web.HTTPError(404, f"no degree module {module_id}")
            chapters = [c async for c in db.shop_chapters.find({"course_id": module_id}).sort("chapter", 1)]
            async for item in db.shop_homework.find({"course_id": module_id}).sort(
                [("chapter", 1), ("order", 1), ("_id", 1)]
            ):
                homework.setdefault(item.get("chapter_id"), []).append(item)
        self.render(
            "degree_homework.html",
            modules=modules,
            degrees=degrees,
            module=module,
            chapters=chapters,
            homework=homework,
            kinds=HOMEWORK_KINDS,
            page_title=f"Homework of {module.get('name', '')}" if module else "Degree homework",
        )


def homework_fields(handler: AdminHandler) -> Document:
    """The homework form as the service's fields (money typed in yuan, stored in fen)."""
    kind = handler.form("kind")
    if kind not in HOMEWORK_KINDS:
        raise FormError("Kind: choose assignment or module exam")
    value = parse_money(handler.form("scholarship_value") or "0", "Scholarship value", minimum=0)
    assert value is not None  # required (a blank reads as 0)
    return {
        "title": text_field(handler.form("title"), "Title", max_length=MAX_TITLE),
        "kind": kind,
        "requirement": text_field(
            handler.form("requirement"),
            "Requirement",
            max_length=MAX_HOMEWORK_TEXT,
            required=False,
            multiline=True,
        ),
        "scoring_points": text_field(
            handler.form("scoring_points"),
            "Scoring points",
            max_length=MAX_HOMEWORK_TEXT,
            required=False,
            multiline=True,
        ),
        "recommended_days": parse_int(
            handler.form("recommended_days"), "Recommended days", minimum=1, maximum=MAX_RECOMMENDED_DAYS
        ),
        "scholarship_value": value,
        "order": parse_int(handler.form("order") or "0", "Order", maximum=MAX_HOMEWORK_ORDER),
        "enabled": handler.form("enabled") == "1",
    }


class HomeworkCreateHandler(DegreePage):
    async def post(self) -> None:
        raw_module = self.form("module_id")
        back = f"{PREFIX}/degrees/homework?module_id={raw_module if raw_module.isdigit() else ''}"[:120]

        async def run() -> None:
            chapter_id = parse_int(self.form("chapter_id"), "Chapter", minimum=1, maximum=MAX_ID)
            chapter = await self.ctx.db.shop_chapters.find_one({"_id": chapter_id}, {"course_id": 1})
            if chapter is None:
                raise FormError("Chapter: no such chapter")
            fields = {
                "course_id": int(chapter["course_id"]),
                "chapter_id": chapter_id,
                **homework_fields(self),
            }
            doc = await self.actions.degree_add_homework(self.actor(), fields)
            self.done(
                f"Homework {doc['_id']} added.", f"{PREFIX}/degrees/homework?module_id={chapter['course_id']}"
            )

        await self.guarded(run, back=back)


class HomeworkEditHandler(DegreePage):
    async def post(self, raw_id: str) -> None:
        homework_id = self.path_id(raw_id, "homework")
        current = await self.ctx.db.shop_homework.find_one({"_id": homework_id})
        back = (
            f"{PREFIX}/degrees/homework?module_id={current['course_id']}"
            if current
            else f"{PREFIX}/degrees/homework"
        )

        async def run() -> None:
            fields = homework_fields(self)
            # Only what changed: the audit entry then shows exactly the edit.
            changes = {k: v for k, v in fields.items() if current is None or current.get(k) != v}
            if not changes:
                self.done(f"Homework {homework_id}: nothing changed.", back)
                return
            await self.actions.degree_update_homework(self.actor(), homework_id, changes)
            self.done(f"Homework {homework_id} saved.", back)

        await self.guarded(run, back=back)


# == 4. mentors =============================================================================================
class MentorsHandler(DegreePage):
    async def get(self) -> None:
        db = self.ctx.db
        mentors = [
            m async for m in db.shop_mentors.find({}).sort([("active", -1), ("_id", 1)]).limit(MAX_LISTED)
        ]
        ids = [int(m["_id"]) for m in mentors]
        students: dict[int, int] = {}
        async for row in await db.shop_degree_enrolments.aggregate(
            [
                {"$match": {"mentor_id": {"$in": ids}, "status": {"$ne": "refunded"}}},
                {"$group": {"_id": "$mentor_id", "count": {"$sum": 1}}},
            ]
        ):
            students[int(row["_id"])] = int(row["count"])
        pending = await pending_by_mentor(db)
        self.render(
            "degree_mentors.html",
            mentors=mentors,
            usernames=await user_names(db, ids),
            students=students,
            pending=pending,
            page_title="Mentors",
        )


async def pending_by_mentor(db: Any) -> dict[int, int]:
    """Homework waiting for a grade per mentor: the enrolment's current mentor (a record keeps the
    mentor of its hand-in, who may since have been replaced)."""
    waiting: dict[str, int] = {}
    async for record in db.shop_homework_records.find({"status": "submitted"}, {"enrolment_id": 1}):
        key = str(record["enrolment_id"])
        waiting[key] = waiting.get(key, 0) + 1
    pending: dict[int, int] = {}
    async for enrolment in db.shop_degree_enrolments.find({"_id": {"$in": list(waiting)}}, {"mentor_id": 1}):
        if enrolment.get("mentor_id") is not None:
            mentor = int(enrolment["mentor_id"])
            pending[mentor] = pending.get(mentor, 0) + waiting[str(enrolment["_id"])]
    return pending


async def find_user(db: Any, who: str) -> Document | None:
    """A user by id or by username (what the grant form accepts)."""
    who = who.strip()
    if who.isdigit() and len(who) <= 16:
        found: Document | None = await db.users.find_one({"_id": int(who)}, {"username": 1})
        if found is not None:
            return found
    by_name: Document | None = await db.users.find_one({"username_key": who.lower()[:64]}, {"username": 1})
    return by_name


class MentorGrantHandler(DegreePage):
    async def post(self) -> None:
        back = f"{PREFIX}/mentors"

        async def run() -> None:
            user = await find_user(self.ctx.db, self.form("user")[:64])
            if user is None:
                raise FormError("User: no such user (give a user id or username)")
            name = text_field(self.form("name"), "Name", max_length=64)
            intro = text_field(self.form("intro"), "Intro", max_length=2000, required=False, multiline=True)
            await self.actions.degree_grant_mentor(self.actor(), int(user["_id"]), name, intro)
            self.done(f"{user['username']} is a mentor.", back)

        await self.guarded(run, back=back)


class MentorRevokeHandler(DegreePage):
    async def post(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "mentor")
        back = f"{PREFIX}/mentors"

        async def run() -> None:
            await self.actions.degree_revoke_mentor(self.actor(), user_id)
            self.done(f"Mentor {user_id} revoked.", back)

        await self.guarded(run, back=back)


# == 5. homework records awaiting a grade ==================================================================
class RecordsHandler(DegreePage):
    """Homework records by status across mentors; waiting ones oldest first (a stuck queue shows)."""

    area = "mentoring"

    async def get(self) -> None:
        db = self.ctx.db
        status = self.get_query_argument("status", "submitted") or "submitted"
        status = status if status in RECORD_STATUSES else "submitted"
        mentor_id = self.query_int("mentor_id", 0, minimum=0, maximum=MAX_ID)
        # Staff who are here only as a mentor see their own students' records, whatever is asked.
        own_only = mentor_only(self.staff_roles())
        if own_only and self.admin_user is not None:
            mentor_id = self.admin_user.user_id
        scope: Document = {}
        if mentor_id:
            # The enrolments this mentor has now (the queue follows a reassignment).
            scope["enrolment_id"] = {
                "$in": [
                    e["_id"]
                    async for e in db.shop_degree_enrolments.find({"mentor_id": mentor_id}, {"_id": 1})
                ]
            }
        query: Document = {"status": status, **scope}
        total = await db.shop_homework_records.count_documents(query)
        paging = Paging(self.query_int("page", 1), RECORDS_PAGE_SIZE, total)
        direction = 1 if status == "submitted" else -1
        records = [
            r
            async for r in db.shop_homework_records.find(query, {"submissions": 0, "gradings": 0})
            .sort([("handed_in_at", direction), ("_id", direction)])
            .skip(paging.skip)
            .limit(paging.size)
        ]
        enrolments = {
            str(e["_id"]): e
            async for e in db.shop_degree_enrolments.find(
                {"_id": {"$in": [r["enrolment_id"] for r in records]}}, {"mentor_id": 1, "degree_name": 1}
            )
        }
        current = {key: e.get("mentor_id") for key, e in enrolments.items()}
        modules = {
            int(m["_id"]): m.get("name", "")
            async for m in db.shop_courses.find(
                {"_id": {"$in": [r.get("module_id") for r in records]}}, {"name": 1}
            )
        }
        counts = {
            s: await db.shop_homework_records.count_documents({"status": s, **scope}) for s in RECORD_STATUSES
        }
        all_mentors = [
            m async for m in db.shop_mentors.find({}, {"name": 1}).sort("_id", 1).limit(MAX_LISTED)
        ]
        self.render(
            "degree_records.html",
            records=records,
            status=status,
            statuses=RECORD_STATUSES,
            counts=counts,
            mentor_id=mentor_id,
            own_only=own_only,
            all_mentors=[] if own_only else all_mentors,
            enrolments=enrolments,
            current=current,
            modules=modules,
            names=await user_names(db, (r.get("user_id") for r in records)),
            mentors=await mentor_names(
                db, [*(r.get("mentor_id") for r in records), *(m for m in current.values() if m is not None)]
            ),
            now=from_ms(self.ctx.engine.clock.now_ms()),
            paging=paging,
            paging_query=urllib.parse.urlencode(
                {"status": status, "mentor_id": "" if own_only else mentor_id or ""}
            )
            + "&",
            page_title="Homework to grade",
        )


class RecordHandler(DegreePage):
    """One homework record: the hand-ins and gradings, and a grade form for who may grade it. Staff
    here only as a mentor see only their own students' records (anyone else's: 404)."""

    area = "mentoring"

    async def visible_record(self, raw_id: str) -> tuple[Document, Document | None]:
        record_id = self.path_id(raw_id, "homework record")
        db = self.ctx.db
        record = await db.shop_homework_records.find_one({"_id": record_id})
        enrolment = (
            None
            if record is None
            else await db.shop_degree_enrolments.find_one({"_id": record["enrolment_id"]})
        )
        if record is None or (
            mentor_only(self.staff_roles())
            and (
                enrolment is None
                or self.admin_user is None
                or enrolment.get("mentor_id") != self.admin_user.user_id
            )
        ):
            raise tornado.web.HTTPError(404, f"no homework record {record_id}")
        return record, enrolment

    async def get(self, raw_id: str) -> None:
        record, enrolment = await self.visible_record(raw_id)
        db = self.ctx.db
        module = await db.shop_courses.find_one({"_id": record.get("module_id")}, {"name": 1})
        graders = [g.get("by") for g in record.get("gradings") or []]
        self.render(
            "degree_record.html",
            record=record,
            enrolment=enrolment or {},
            module_name=(module or {}).get("name", ""),
            student=(await user_names(db, [record.get("user_id")])).get(int(record.get("user_id") or 0), ""),
            mentors=await mentor_names(db, [*graders, (enrolment or {}).get("mentor_id")]),
            grades=list(GRADES),
            page_title=f"Homework record {record['_id']}",
        )

    async def post(self, raw_id: str) -> None:
        record, _ = await self.visible_record(raw_id)
        back = f"{PREFIX}/degrees/records/{record['_id']}"

        async def run() -> None:
            submission = parse_int(self.form("submission"), "Submission", minimum=1, maximum=1000)
            grade = self.form("grade")
            if grade not in GRADES:
                raise FormError("Grade: choose one of " + ", ".join(GRADES))
            comment = text_field(
                self.form("comment"), "Comment", max_length=MAX_COMMENT, required=False, multiline=True
            )
            graded = await self.actions.degree_grade(
                self.actor(), int(record["_id"]), submission, grade, comment
            )
            self.done(f"Graded {grade}: the record is {graded.get('status')}.", back)

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/degrees", DegreesHandler),
    (r"/admin/degrees/homework", HomeworkHandler),
    (r"/admin/degrees/homework/new", HomeworkCreateHandler),
    (r"/admin/degrees/homework/([0-9]+)/edit", HomeworkEditHandler),
    (r"/admin/degrees/records", RecordsHandler),
    (r"/admin/degrees/records/([0-9]+)", RecordHandler),
    (r"/admin/degrees/([0-9]+)", CohortHandler),
    (r"/admin/degrees/([0-9]+)/(online|offline)", DegreeStatusHandler),
    (r"/admin/degrees/enrolments/([0-9]+:[0-9]+)/(mentor|open|suspend|resume)", EnrolmentActionHandler),
    (r"/admin/mentors", MentorsHandler),
    (r"/admin/mentors/grant", MentorGrantHandler),
    (r"/admin/mentors/([0-9]+)/revoke", MentorRevokeHandler),
]
