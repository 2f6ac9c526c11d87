"""`MentorService`: mentors, their queue and students, grading (money, exactly once), follow-ups,
module completion, graduation and the degree sweep (docs/degree.md "Mentors and grading").

Every decision is one of shop/degree_rules.py's; the `MentoringStore` port
(shop/degree_mentoring_ports.py) loads and makes guarded writes. A grading whose enrolment's money
moved under it ("stale") is decided again; one whose record was graded meanwhile ("lost") is read
again and answered idempotently or with ALREADY_GRADED.
"""

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from engine.book.errors import GavelError, InvalidInput, NotFound
from shop.degree_files import check_file, clean_file_name
from shop.degree_mentoring_ports import Grading, Graduation, MentoringStore
from shop.degree_rules import (
    GRADES,
    DegreeMoney,
    EnrolmentEvent,
    EnrolmentStatus,
    ModuleState,
    ModuleStatus,
    RewardStatus,
    ScheduleEntry,
    Tier,
    behind_schedule,
    grade_outcome,
    graduation_award,
    graduation_due,
    missed,
    module_done,
    next_status,
    passes,
    timed_out,
    ungraded_fields,
)
from shop.model import Record

log = logging.getLogger("gavel.shop")

CHANNELS: Final = ("phone", "wechat", "qq", "email", "meeting", "other")
MAX_COMMENT: Final = 2000
MAX_FOLLOWUP: Final = 5000
MAX_NAME: Final = 64
MAX_INTRO: Final = 2000
_ATTEMPTS: Final = 8

Notify = Callable[[int, Record], Awaitable[None]]


class MentorRequired(GavelError):
    code = "MENTOR_REQUIRED"


class MentorInactive(GavelError):
    code = "MENTOR_INACTIVE"


class NotYourStudent(GavelError):
    code = "NOT_YOUR_STUDENT"


class AlreadyGraded(GavelError):
    code = "ALREADY_GRADED"


class Busy(GavelError):
    code = "CONFLICT"


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _day(value: datetime.datetime | None) -> datetime.date | None:
    return None if value is None else value.date()


async def _no_notice(user_id: int, message: Record) -> None:
    del user_id, message


def money_of(enrolment: Record) -> DegreeMoney:
    return DegreeMoney(
        total_scholarship=int(enrolment.get("total_scholarship", 0)),
        awarded_so_far=int(enrolment.get("scholarship_awarded", 0)),
        mentor_fee=int(enrolment.get("mentor_fee", 0)),
        mentor_fee_balance=int(enrolment.get("mentor_fee_balance", 0)),
    )


def _entries(studies: list[Record]) -> list[ScheduleEntry]:
    return [
        ScheduleEntry(int(e["homework_id"]), e["recommended_date"].date())
        for s in studies
        for e in s.get("schedule") or []
        if e.get("recommended_date") is not None
    ]


class MentorService:
    def __init__(
        self,
        store: MentoringStore,
        *,
        now: Callable[[], datetime.datetime] = _utc_now,
        notify: Notify = _no_notice,
    ) -> None:
        self.store = store
        self.now = now
        self.notify = notify

    # == mentors =========================================================================================
    async def grant_mentor(self, user_id: int, name: str, intro: str) -> Record:
        if not (await self.store.user_names([user_id])):
            raise NotFound(f"no user {user_id}")
        if not 1 <= len(name) <= MAX_NAME or len(intro) > MAX_INTRO:
            raise InvalidInput(f"name must be 1-{MAX_NAME} characters and intro at most {MAX_INTRO}")
        return await self.store.put_mentor(user_id, name, intro, self.now())

    async def revoke_mentor(self, user_id: int) -> Record:
        mentor = await self.store.deactivate_mentor(user_id)
        if mentor is None:
            raise NotFound(f"user {user_id} is not a mentor")
        return mentor

    async def mentors(self, active_only: bool = True) -> list[Record]:
        return await self.store.mentors(active_only)

    async def is_mentor(self, user_id: int) -> bool:
        mentor = await self.store.mentor(user_id)
        return mentor is not None and bool(mentor.get("active"))

    async def _require_mentor(self, mentor_id: int) -> None:
        if not await self.is_mentor(mentor_id):
            raise MentorRequired("this needs an active mentor's token")

    async def assign_mentor(self, enrolment_id: str, mentor_id: int) -> Record:
        mentor = await self.store.mentor(mentor_id)
        if mentor is None:
            raise NotFound(f"user {mentor_id} is not a mentor")
        if not mentor.get("active"):
            raise MentorInactive(f"mentor {mentor_id} is not active")
        enrolment = await self.store.set_mentor(enrolment_id, mentor_id, self.now())
        if enrolment is None:
            raise NotFound(f"no enrolment {enrolment_id}")
        return enrolment

    async def _own(self, mentor_id: int, enrolment_id: str, *, by_admin: bool = False) -> Record:
        """The enrolment, provided the caller is its mentor (or an admin)."""
        if not by_admin:
            await self._require_mentor(mentor_id)
        enrolment = await self.store.enrolment(enrolment_id)
        if enrolment is None:
            raise NotFound(f"no enrolment {enrolment_id}")
        if not by_admin and enrolment.get("mentor_id") != mentor_id:
            raise NotYourStudent("this student has another mentor")
        return enrolment

    # == the mentor's views ==============================================================================
    async def queue(self, mentor_id: int) -> list[Record]:
        """Hand-ins waiting for a grade from this mentor's students, oldest first."""
        await self._require_mentor(mentor_id)
        enrolments = {str(e["_id"]): e for e in await self.store.enrolments(mentor_id=mentor_id)}
        records = await self.store.records(list(enrolments), status="submitted")
        names = await self.store.user_names(sorted({int(r["user_id"]) for r in records}))
        studies: dict[str, str] = {}
        for enrolment_id in {str(r["enrolment_id"]) for r in records}:
            for study in await self.store.study_records(enrolment_id):
                studies[str(study["_id"])] = str(study.get("module_name", ""))
        items = []
        for r in records:
            enrolment = enrolments[str(r["enrolment_id"])]
            recommended = r.get("recommended_date")
            handed_in = r.get("handed_in_at")
            items.append(
                {
                    "record_id": r["_id"],
                    "enrolment_id": r["enrolment_id"],
                    "student": {"id": r["user_id"], "name": names.get(int(r["user_id"]), "")},
                    "degree_name": enrolment.get("degree_name", ""),
                    "module_name": studies.get(f"{r['enrolment_id']}:{r['module_id']}", ""),
                    "homework_title": r.get("homework_title", ""),
                    "submit_count": r.get("submit_count", 0),
                    "handed_in_at": handed_in,
                    "recommended_date": recommended,
                    "late": recommended is not None
                    and handed_in is not None
                    and handed_in.date() > recommended.date(),
                }
            )
        return items

    async def _rows(self, enrolments: list[Record]) -> list[Record]:
        today = self.now().date()
        names = await self.store.user_names(sorted({int(e["user_id"]) for e in enrolments}))
        rows = []
        for enrolment in enrolments:
            enrolment_id = str(enrolment["_id"])
            studies = await self.store.study_records(enrolment_id)
            records = await self.store.records([enrolment_id])
            handed_in = {int(r["homework_id"]) for r in records if int(r.get("submit_count", 0)) > 0}
            passed = {int(r["homework_id"]) for r in records if r.get("status") == "passed"}
            rows.append(
                {
                    "enrolment_id": enrolment_id,
                    "student": {"id": enrolment["user_id"], "name": names.get(int(enrolment["user_id"]), "")},
                    "degree_name": enrolment.get("degree_name", ""),
                    "status": enrolment.get("status"),
                    "mentor_id": enrolment.get("mentor_id"),
                    "modules_done": sum(1 for s in studies if s.get("status") == ModuleStatus.DONE),
                    "modules_total": len(studies),
                    "behind": behind_schedule(_entries(studies), handed_in, passed, today),
                    "scholarship_awarded": int(enrolment.get("scholarship_awarded", 0)),
                    "mentor_fee_balance": int(enrolment.get("mentor_fee_balance", 0)),
                }
            )
        return rows

    async def students(self, mentor_id: int) -> list[Record]:
        await self._require_mentor(mentor_id)
        return await self._rows(await self.store.enrolments(mentor_id=mentor_id))

    async def cohort(self, degree_course_id: int) -> list[Record]:
        """Every enrolment of the degree with its progress and how far behind schedule it is."""
        return await self._rows(await self.store.enrolments(degree_course_id=degree_course_id))

    async def record(self, mentor_id: int, record_id: int, *, by_admin: bool = False) -> Record:
        record = await self.store.record(record_id)
        if record is None:
            raise NotFound(f"no homework record {record_id}")
        await self._own(mentor_id, str(record["enrolment_id"]), by_admin=by_admin)
        return record

    # == grading =========================================================================================
    async def grade(
        self,
        mentor_id: int,
        record_id: int,
        submission: int,
        grade: str,
        comment: str,
        *,
        by_admin: bool = False,
    ) -> Record:
        """Grade `submission` of the record. Once per submission: the same grade again answers the
        record (nothing moves again), another grade or an older submission ALREADY_GRADED."""
        passes(grade)  # INVALID_GRADE before anything is read
        if len(comment) > MAX_COMMENT:
            raise InvalidInput(f"comment must be at most {MAX_COMMENT} characters")
        for _attempt in range(_ATTEMPTS):
            record = await self.record(mentor_id, record_id, by_admin=by_admin)
            if record.get("submit_count") != submission:
                raise AlreadyGraded(f"submission {submission} is not the latest hand-in")
            if record.get("graded_submission") == submission:
                if record.get("grade") != grade:
                    raise AlreadyGraded(f"submission {submission} is already graded {record.get('grade')}")
                await self._after_grading(record)  # a retry completes what a crash left undone
                return record
            if record.get("status") != "submitted":
                raise AlreadyGraded(f"submission {submission} is not the one waiting for a grade")
            enrolment = await self.store.enrolment(str(record["enrolment_id"]))
            if enrolment is None:
                raise NotFound(f"no enrolment {record['enrolment_id']}")
            homework = await self.store.homework(int(record["homework_id"])) or {}
            grading = self._decide(record, enrolment, homework, submission, grade, comment, mentor_id)
            applied = await self.store.apply_grading(grading)
            if applied == "applied":
                graded = await self.store.record(record_id)
                assert graded is not None
                await self.notify(
                    int(graded["user_id"]),
                    {
                        "type": "homework_graded",
                        "degree_course_id": graded.get("degree_course_id"),
                        "homework_id": graded["homework_id"],
                        "record_id": graded["_id"],
                        "grade": grade,
                        "passed": graded["status"] == "passed",
                        "reward_status": graded["reward_status"],
                        "scholarship": grading.scholarship,
                    },
                )
                await self._after_grading(graded)
                return graded
            # "lost": graded meanwhile (read it again); "stale": the money moved (decide again).
        raise Busy("the record is being graded; try again")

    def _decide(
        self,
        record: Record,
        enrolment: Record,
        homework: Record,
        submission: int,
        grade: str,
        comment: str,
        by: int,
    ) -> Grading:
        now = self.now()
        money = money_of(enrolment)
        handed_in = record.get("handed_in_at") or now
        outcome = grade_outcome(
            grade,
            handed_in_on=handed_in.date(),
            recommended_date=_day(record.get("recommended_date")),
            scholarship_value=int(homework.get("scholarship_value", 0)),
            money=money,
            already_rewarded=bool(record.get("rewarded")),
            already_penalised=bool(record.get("penalised")),
            forfeited=bool(record.get("forfeited")),
        )
        record_id = int(record["_id"])
        entry = {
            "submission": submission,
            "grade": grade,
            "score": GRADES[grade],
            "comment": comment,
            "passed": outcome.status == "passed",
            "by": by,
            "at": now,
            "scholarship": outcome.scholarship,
            "penalty": outcome.mentor_penalty,
        }
        record_set = {
            "status": outcome.status,
            "reward_status": outcome.reward_status.value,
            "grade": grade,
            "score": GRADES[grade],
            "comment": comment,
            "graded_at": now,
            "graded_by": by,
            "graded_submission": submission,
            "rewarded": bool(record.get("rewarded")) or outcome.scholarship > 0,
            "penalised": bool(record.get("penalised")) or outcome.mentor_penalty > 0,
            "forfeited": outcome.forfeited,
        }
        penalty_entry = None
        if outcome.mentor_penalty:
            penalty_entry = {
                "_id": f"mentor_penalty:{record_id}",
                "enrolment_id": str(enrolment["_id"]),
                "mentor_id": enrolment.get("mentor_id"),
                "amount": -outcome.mentor_penalty,
                "balance_after": money.mentor_fee_balance - outcome.mentor_penalty,
                "kind": "penalty",
                "record_id": record_id,
                "at": now,
            }
        return Grading(
            record_id=record_id,
            submission=submission,
            record_set=record_set,
            entry=entry,
            enrolment_id=str(enrolment["_id"]),
            user_id=int(record["user_id"]),
            expect_awarded=money.awarded_so_far,
            expect_fee_balance=money.mentor_fee_balance,
            scholarship=outcome.scholarship,
            penalty=outcome.mentor_penalty,
            penalty_entry=penalty_entry,
            now=now,
        )

    async def _after_grading(self, record: Record) -> None:
        """After a pass: the module is done when all its enabled homework passed; then graduation."""
        if record.get("status") != "passed":
            return
        enrolment_id = str(record["enrolment_id"])
        module_id = int(record["module_id"])
        study_id = f"{enrolment_id}:{module_id}"
        studies = {str(s["_id"]): s for s in await self.store.study_records(enrolment_id)}
        study = studies.get(study_id)
        if study is not None and study.get("status") == ModuleStatus.STUDYING:
            enabled = [
                int(h["_id"]) for h in await self.store.homework_of(module_id) if h.get("enabled", True)
            ]
            passed = [
                int(r["homework_id"])
                for r in await self.store.records([enrolment_id])
                if r.get("status") == "passed" and int(r["module_id"]) == module_id
            ]
            if module_done(enabled, passed):
                await self.store.finish_module(study_id, self.now())
        await self.check_graduation(enrolment_id)

    async def check_graduation(self, enrolment_id: str) -> Record | None:
        """Graduate the enrolment when every module is done (award once); the enrolment if it has
        graduated, else None."""
        for _attempt in range(_ATTEMPTS):
            enrolment = await self.store.enrolment(enrolment_id)
            if enrolment is None:
                return None
            if enrolment.get("status") == EnrolmentStatus.GRADUATED:
                return enrolment
            if enrolment.get("status") != EnrolmentStatus.STUDYING:
                return None
            studies = await self.store.study_records(enrolment_id)
            modules = [
                ModuleState(int(s["module_id"]), int(s.get("order", 0)), ModuleStatus(s["status"]))
                for s in studies
            ]
            if not graduation_due(modules):
                return None
            next_status(str(enrolment["status"]), EnrolmentEvent.GRADUATE)
            now = self.now()
            money = money_of(enrolment)
            valid_from = enrolment.get("valid_from") or now
            award = graduation_award(
                [
                    Tier(int(t["time_percent"]), int(t["value"]))
                    for t in enrolment.get("scholarship_tiers") or []
                ],
                valid_from=valid_from.date(),
                graduated_on=now.date(),
                period_days=int(enrolment.get("period_days") or 1),
                money=money,
            )
            applied = await self.store.graduate(
                Graduation(enrolment_id, int(enrolment["user_id"]), money.awarded_so_far, award, now)
            )
            if applied == "applied":
                await self.notify(
                    int(enrolment["user_id"]),
                    {
                        "type": "degree_graduated",
                        "degree_course_id": enrolment.get("degree_course_id"),
                        "award": award,
                    },
                )
                return await self.store.enrolment(enrolment_id)
        raise Busy("the enrolment is changing; try again")

    async def notify_submitted(self, record: Record) -> None:
        """CORE's hand-in tells the enrolment's mentor (if any) live."""
        enrolment = await self.store.enrolment(str(record["enrolment_id"]))
        mentor_id = (enrolment or {}).get("mentor_id") or record.get("mentor_id")
        if mentor_id is None:
            return
        await self.notify(
            int(mentor_id),
            {
                "type": "homework_submitted",
                "record_id": record["_id"],
                "enrolment_id": record["enrolment_id"],
                "homework_title": record.get("homework_title", ""),
            },
        )

    # == follow-ups ======================================================================================
    async def followups(self, mentor_id: int, enrolment_id: str) -> list[Record]:
        await self._own(mentor_id, enrolment_id)
        return await self.store.followups(enrolment_id)

    async def add_followup(
        self, mentor_id: int, enrolment_id: str, channel: str, text: str, files: list[tuple[str, bytes]]
    ) -> Record:
        """`files`: (name, bytes) uploads, at most one; the type is sniffed (shop/degree_files.py)."""
        enrolment = await self._own(mentor_id, enrolment_id)
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
        if not text.strip() and not files:
            raise InvalidInput("a follow-up needs text or a file")
        if len(text) > MAX_FOLLOWUP:
            raise InvalidInput(f"text must be at most {MAX_FOLLOWUP} characters")
        if len(files) > 1:
            raise InvalidInput("a follow-up takes one file")
        stored = []
        for raw_name, data in files:
            media_type = check_file(raw_name, data)
            name = clean_file_name(raw_name)
            meta = {
                "owner_id": mentor_id,
                "enrolment_id": enrolment_id,
                "purpose": "followup",
                "type": media_type,
                "name": name,
            }
            file_id = await self.store.put_file(data, meta)
            stored.append({"id": file_id, "name": name, "type": media_type, "size": len(data)})
        return await self.store.add_followup(
            {
                "enrolment_id": enrolment_id,
                "user_id": enrolment["user_id"],
                "mentor_id": mentor_id,
                "channel": channel,
                "text": text,
                "files": stored,
                "at": self.now(),
            }
        )

    # == the sweep =======================================================================================
    async def sweep(self, now: datetime.datetime) -> dict[str, int]:
        """Missed homework (a MISSED record per past-due entry with nothing handed in), time-outs
        past valid_to, and graduations that a crash left undone. Idempotent."""
        today = now.date()
        counts = {"missed": 0, "timed_out": 0, "graduated": 0}
        for status in (EnrolmentStatus.STUDYING, EnrolmentStatus.SUSPENDED):
            for enrolment in await self.store.enrolments(status=status.value):
                enrolment_id = str(enrolment["_id"])
                valid_to = _day(enrolment.get("valid_to"))
                if timed_out(valid_to, today):
                    next_status(status.value, EnrolmentEvent.TIME_OUT)
                    if await self.store.time_out(enrolment_id, status.value, now):
                        counts["timed_out"] += 1
                    continue
                if status is not EnrolmentStatus.STUDYING:
                    continue
                counts["missed"] += await self._missed(enrolment, today, now)
                if await self.check_graduation(enrolment_id) is not None:
                    counts["graduated"] += 1
        return counts

    async def _missed(self, enrolment: Record, today: datetime.date, now: datetime.datetime) -> int:
        enrolment_id = str(enrolment["_id"])
        studies = [
            s
            for s in await self.store.study_records(enrolment_id)
            if s.get("status") == ModuleStatus.STUDYING
        ]
        if not studies:
            return 0
        records = await self.store.records([enrolment_id])
        have = {int(r["homework_id"]) for r in records}
        added = 0
        for study in studies:
            entries = _entries([study])
            dates = {e.homework_id: e.recommended_date for e in entries}
            for homework_id in missed(entries, have, today):
                homework = await self.store.homework(homework_id) or {}
                recommended = dates[homework_id]
                record = _missed_record(enrolment, study, homework_id, homework, recommended, now)
                if await self.store.add_missed(record):
                    added += 1
        return added


def _missed_record(
    enrolment: Record,
    study: Record,
    homework_id: int,
    homework: Record,
    recommended: datetime.date,
    now: datetime.datetime,
) -> Record:
    return {
        "enrolment_id": str(enrolment["_id"]),
        "user_id": enrolment["user_id"],
        "degree_course_id": enrolment.get("degree_course_id"),
        "module_id": study["module_id"],
        "homework_id": homework_id,
        "homework_title": homework.get("title", ""),
        "mentor_id": enrolment.get("mentor_id"),
        "recommended_date": datetime.datetime.combine(recommended, datetime.time(), datetime.UTC),
        # Never "submitted": nothing was handed in; a later hand-in makes it a normal record.
        "status": "failed",
        "reward_status": RewardStatus.MISSED.value,
        "submit_count": 0,
        "submissions": [],
        "handed_in_at": None,
        **ungraded_fields(),
        "created_at": now,
    }


async def run_degree_sweeper(service: MentorService, *, interval_seconds: float = 600.0) -> None:
    """`sweep` every `interval_seconds` until cancelled (errors logged, the loop goes on)."""
    while True:
        try:
            counts: dict[str, Any] = await service.sweep(service.now())
            if any(counts.values()):
                log.info("degree sweep: %s", counts)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("degree sweep failed")
        await asyncio.sleep(interval_seconds)
