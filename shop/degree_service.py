"""`DegreeService`: the student's side of a degree (学位课) — registration, opening modules, handing in
homework, the attachments' access — plus homework authoring, suspend/resume and degree reviews.

The rules are shop/degree_rules.py's (state table, schedule, may-open) and shop/reviews.py's (scores,
text); this module checks the inputs, reads what a decision needs through the `DegreeStore` port
(shop/degree_ports.py) and stores the outcome with conditional writes, so that two concurrent
requests cannot both win. Grading, mentors and graduation are the MENTOR part's
(shop/degree_mentoring.py). docs/degree.md "Studying a degree" states the behaviour.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from engine.book.errors import GavelError, InvalidInput, NotFound
from shop import degree_rules as rules
from shop import reviews as rv
from shop.degree_ports import DegreeStore, FileStore
from shop.model import Record, ShopConflict, as_utc
from shop.ports import Duplicate

# == limits ================================================================================================
MAX_TITLE: Final = 128
MAX_HOMEWORK_TEXT: Final = 4000  # requirement, scoring points
MAX_RECOMMENDED_DAYS: Final = 365
MAX_HOMEWORK_ORDER: Final = 32_767
HOMEWORK_KINDS: Final = ("assignment", "exam")  # 作业, 模块通关考核
MAX_SUBMISSION_TEXT: Final = 10_000
MAX_FILES: Final = 5
MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_FILE_NAME: Final = 200
SALARY_BANDS: Final = ("<5k", "5-10k", "10-15k", "15-20k", "20-30k", ">30k")
MAX_EXPERIENCE: Final = 11  # the seed's 超过10年
MAX_STUDY_HOURS: Final = 16
MAX_SHORT_TEXT: Final = 64  # company, position
MAX_FORM_TEXT: Final = 1024  # why_course, why_us, expectations
FORM_FIELDS: Final = (
    "company",
    "position",
    "salary_band",
    "experience",
    "study_hours",
    "why_course",
    "why_us",
    "expectations",
    "open_first_module",
    "preferred_mentor_id",
)
HOMEWORK_FIELDS: Final = (
    "course_id",
    "chapter_id",
    "title",
    "kind",
    "requirement",
    "scoring_points",
    "recommended_days",
    "scholarship_value",
    "order",
    "enabled",
)
# Enrolment statuses whose students may review (they have studied, or are studying).
REVIEWING_STATUSES: Final = frozenset({"studying", "suspended", "graduated", "timed_out"})
REFUNDED: Final = "refunded"
INACTIVE_STATUSES: Final = frozenset({"suspended", "graduated", "timed_out"})
SUBMIT_ATTEMPTS: Final = 5
MAX_ID: Final = 2**53 - 1


# == errors (statuses in web/errors.py) ====================================================================
class DegreeRequired(GavelError):
    code = "DEGREE_REQUIRED"


class AlreadyRegistered(GavelError):
    code = "ALREADY_REGISTERED"


class ModuleNotOpen(GavelError):
    code = "MODULE_NOT_OPEN"


class HomeworkDisabled(GavelError):
    code = "HOMEWORK_DISABLED"


class HomeworkPassed(GavelError):
    code = "HOMEWORK_PASSED"


class FileRejected(GavelError):
    code = "FILE_REJECTED"


class FileTooLarge(GavelError):
    code = "FILE_TOO_LARGE"


class TooManyFiles(GavelError):
    code = "TOO_MANY_FILES"


# == pure checks ===========================================================================================
def _text(
    data: Mapping[str, Any], name: str, *, max_length: int, min_length: int = 0, multiline: bool = False
) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        raise InvalidInput(f"{name} must be a string of {min_length}-{max_length} characters")
    allowed = "\n\t\r" if multiline else ""
    if any((ch < " " or ch == "\x7f") and ch not in allowed for ch in value):
        raise InvalidInput(f"{name} must not contain control characters")
    return value


def _integer(data: Mapping[str, Any], name: str, *, minimum: int, maximum: int = MAX_ID) -> int:
    value = data.get(name)
    if type(value) is not int or not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be an integer from {minimum} to {maximum}")
    return value


def _boolean(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _known(data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)[:200]}")


def check_registration(form: Mapping[str, Any]) -> Record:
    """The registration form (DegreeRegistrationForm) as stored, without `at`; InvalidInput otherwise."""
    _known(form, FORM_FIELDS)
    for name in ("company", "position", "salary_band", "experience", "study_hours"):
        if name not in form:
            raise InvalidInput(f"missing field: {name}")
    band = form.get("salary_band")
    if band not in SALARY_BANDS:
        raise InvalidInput(f"salary_band must be one of: {', '.join(SALARY_BANDS)}")
    mentor = form.get("preferred_mentor_id")
    if mentor is not None:
        mentor = _integer(form, "preferred_mentor_id", minimum=1)
    return {
        "company": _text(form, "company", max_length=MAX_SHORT_TEXT),
        "position": _text(form, "position", max_length=MAX_SHORT_TEXT),
        "salary_band": band,
        "experience": _integer(form, "experience", minimum=0, maximum=MAX_EXPERIENCE),
        "study_hours": _integer(form, "study_hours", minimum=1, maximum=MAX_STUDY_HOURS),
        **{
            name: _text({name: form.get(name, "")}, name, max_length=MAX_FORM_TEXT, multiline=True)
            for name in ("why_course", "why_us", "expectations")
        },
        "open_first_module": _boolean({"open_first_module": False, **form}, "open_first_module"),
        "preferred_mentor_id": mentor,
    }


def check_homework(fields: Mapping[str, Any], *, partial: bool) -> Record:
    """Homework fields with their types and ranges (the degree's total is checked by the service).
    A new homework needs `chapter_id` and `title`; the rest have defaults."""
    _known(fields, HOMEWORK_FIELDS)
    defaults: Record = {
        "kind": "assignment",
        "requirement": "",
        "scoring_points": "",
        "recommended_days": 7,  # the seed's default 推荐完成周期
        "scholarship_value": 0,
        "order": 0,
        "enabled": True,
    }
    data = dict(fields) if partial else {**defaults, **fields}
    if not partial:
        for name in ("chapter_id", "title"):
            if name not in data:
                raise InvalidInput(f"missing field: {name}")
    checks: dict[str, Callable[[], Any]] = {
        "course_id": lambda: None if data["course_id"] is None else _integer(data, "course_id", minimum=1),
        "chapter_id": lambda: _integer(data, "chapter_id", minimum=1),
        "title": lambda: _text(data, "title", min_length=1, max_length=MAX_TITLE),
        "kind": lambda: _one_of(data, "kind", HOMEWORK_KINDS),
        "requirement": lambda: _text(data, "requirement", max_length=MAX_HOMEWORK_TEXT, multiline=True),
        "scoring_points": lambda: _text(data, "scoring_points", max_length=MAX_HOMEWORK_TEXT, multiline=True),
        "recommended_days": lambda: _integer(
            data, "recommended_days", minimum=1, maximum=MAX_RECOMMENDED_DAYS
        ),
        "scholarship_value": lambda: _integer(data, "scholarship_value", minimum=0),
        "order": lambda: _integer(data, "order", minimum=0, maximum=MAX_HOMEWORK_ORDER),
        "enabled": lambda: _boolean(data, "enabled"),
    }
    return {name: check() for name, check in checks.items() if name in data}


def _one_of(data: Mapping[str, Any], name: str, choices: Sequence[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or value not in choices:
        raise InvalidInput(f"{name} must be one of: {', '.join(choices)}")
    return value


def sniff_file(data: bytes) -> str | None:
    """The content type of an attachment from its first bytes (never its name or declared type):
    PDF, PNG, JPEG, GIF, WebP, ZIP or UTF-8 plain text; None for anything else."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "application/zip"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Text means printable: executables and other binaries carry NULs and control bytes.
    if text and not any((ch < " " and ch not in "\t\n\r\f") or ch == "\x7f" for ch in text):
        return "text/plain"
    return None


def clean_file_name(name: str) -> str:
    """The name as given, without a path, control characters or surrounding blanks; at most 200."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if not (ch < " " or "\x7f" <= ch <= "\x9f")).strip()
    return kept[:MAX_FILE_NAME] or "file"


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """One attachment as received."""

    name: str
    data: bytes


def check_submission(text: str, files: Sequence[Upload]) -> list[tuple[Upload, str]]:
    """The hand-in's limits, before anything is stored: each file with its sniffed type."""
    if len(files) > MAX_FILES:
        raise TooManyFiles(f"at most {MAX_FILES} files per hand-in")
    if len(text) > MAX_SUBMISSION_TEXT:
        raise InvalidInput(f"text must be at most {MAX_SUBMISSION_TEXT} characters")
    if not text.strip() and not files:
        raise InvalidInput("hand in a text or at least one file")
    checked = []
    for upload in files:
        if len(upload.data) > MAX_FILE_BYTES:
            raise FileTooLarge(f"each file must be at most {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        kind = sniff_file(upload.data)
        if kind is None:
            raise FileRejected("files must be PDF, PNG, JPEG, GIF, WebP, ZIP or UTF-8 text")
        checked.append((upload, kind))
    return checked


def midnight(day: datetime.date) -> datetime.datetime:
    """A schedule's or validity's day as stored: 00:00 UTC."""
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)


def day_of(value: datetime.datetime | None) -> datetime.date | None:
    return None if value is None else as_utc(value).date()


def enrolment_id_of(user_id: int, degree_course_id: int) -> str:
    return f"{user_id}:{degree_course_id}"


def module_states(modules: Sequence[Record], study: Mapping[int, Record]) -> list[rules.ModuleState]:
    """Each module in the degree's order (its index), with its study record's status."""
    return [
        rules.ModuleState(
            int(m["_id"]),
            index,
            rules.ModuleStatus(study.get(int(m["_id"]), {}).get("status", rules.ModuleStatus.NOT_OPENED)),
        )
        for index, m in enumerate(modules)
    ]


class Viewer(Protocol):
    """Who asks for a file (persistence.accounts.AuthUser fits)."""

    @property
    def user_id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# == the service ===========================================================================================
class DegreeService:
    def __init__(
        self, store: DegreeStore, files: FileStore, *, now: Callable[[], datetime.datetime] = _utc_now
    ) -> None:
        self.store = store
        self.files = files
        self.now = now

    # -- enrolments ------------------------------------------------------------------------------------
    async def enrolment(self, user_id: int, degree_course_id: int) -> Record:
        """The student's enrolment; 403 DEGREE_REQUIRED when none (or refunded)."""
        found = await self.store.enrolment(enrolment_id_of(user_id, degree_course_id))
        if found is None or found.get("status") == REFUNDED:
            raise DegreeRequired("this needs a bought degree course")
        return found

    async def _enrolment_by_id(self, enrolment_id: str) -> Record:
        found = await self.store.enrolment(enrolment_id)
        if found is None:
            raise NotFound(f"no enrolment {enrolment_id[:40]}")
        return found

    async def _decorate(self, enrolment: Record) -> Record:
        """The enrolment with `mentor` ({id, name} or None) and module `progress`."""
        mentor_id = enrolment.get("mentor_id")
        mentor = await self.store.mentor(int(mentor_id)) if mentor_id is not None else None
        modules = await self.store.modules(int(enrolment["degree_course_id"]))
        study = {int(r["module_id"]): r for r in await self.store.study_records(str(enrolment["_id"]))}
        done = sum(1 for m in modules if study.get(int(m["_id"]), {}).get("status") == "done")
        return {
            **enrolment,
            "mentor": None
            if mentor_id is None
            else {"id": mentor_id, "name": (mentor or {}).get("name", "")},
            "progress": {"done": done, "total": len(modules)},
        }

    async def enrolments(self, user_id: int) -> list[Record]:
        """My degrees (refunded ones left out), each decorated."""
        found = await self.store.enrolments_of(user_id)
        return [await self._decorate(e) for e in found if e.get("status") != REFUNDED]

    async def degree_detail(self, user_id: int, degree_course_id: int) -> Record:
        """One degree: the decorated enrolment plus `modules`, each with its enabled homework (and any
        homework the student already handed in) and the student's record of each."""
        enrolment = await self.enrolment(user_id, degree_course_id)
        return await self._detail(enrolment)

    async def _detail(self, enrolment: Record) -> Record:
        answer = await self._decorate(enrolment)
        enrolment_id = str(enrolment["_id"])
        modules = await self.store.modules(int(enrolment["degree_course_id"]))
        study = {int(r["module_id"]): r for r in await self.store.study_records(enrolment_id)}
        homework = await self.store.homework_of([int(m["_id"]) for m in modules])
        records = {int(r["homework_id"]): r for r in await self.store.homework_records(enrolment_id)}
        listed = []
        for index, module in enumerate(modules):
            module_id = int(module["_id"])
            record = study.get(module_id, {})
            dates = {int(e["homework_id"]): e["recommended_date"] for e in record.get("schedule") or []}
            items = [
                {**h, "recommended_date": dates.get(int(h["_id"])), "record": records.get(int(h["_id"]))}
                for h in homework
                if int(h["course_id"]) == module_id and (h.get("enabled", True) or int(h["_id"]) in records)
            ]
            listed.append(
                {
                    "module_id": module_id,
                    "name": module.get("name", ""),
                    "order": index,
                    "status": record.get("status", rules.ModuleStatus.NOT_OPENED.value),
                    "opened_at": record.get("opened_at"),
                    "done_at": record.get("done_at"),
                    "homework": items,
                }
            )
        answer["modules"] = listed
        return answer

    async def detail_of(self, enrolment_id: str) -> Record:
        """`degree_detail` by enrolment id (what an admin's open answers)."""
        return await self._detail(await self._enrolment_by_id(enrolment_id))

    # -- registration ---------------------------------------------------------------------------------
    async def register(self, user_id: int, degree_course_id: int, form: Mapping[str, Any]) -> Record:
        """The registration form, once: the study records, the preferred mentor (if none is set) and,
        when asked, the first module opened now."""
        checked = check_registration(form)
        enrolment = await self.enrolment(user_id, degree_course_id)
        if enrolment.get("registration") is not None:
            raise AlreadyRegistered("the registration form is already in")
        mentor_id = checked["preferred_mentor_id"]
        if mentor_id is not None:
            mentor = await self.store.mentor(mentor_id)
            if mentor is None or not mentor.get("active"):
                raise InvalidInput("preferred_mentor_id must name an active mentor (GET /api/v1/mentors)")
        now = self.now()
        enrolment_id = str(enrolment["_id"])
        if not await self.store.set_registration(enrolment_id, {**checked, "at": now}, now):
            raise AlreadyRegistered("the registration form is already in")
        modules = await self.store.modules(degree_course_id)
        await self._ensure_study_records(enrolment, modules)
        if mentor_id is not None:
            await self.store.set_mentor_if_none(enrolment_id, mentor_id, now)
        if checked["open_first_module"] and modules:
            await self.open_module(enrolment_id, int(modules[0]["_id"]), by_admin=False)
        return await self._enrolment_by_id(enrolment_id)

    async def _ensure_study_records(self, enrolment: Record, modules: Sequence[Record]) -> None:
        """One study record per module (a module added to the degree later gets one too)."""
        enrolment_id = str(enrolment["_id"])
        await self.store.add_study_records(
            {
                "_id": f"{enrolment_id}:{int(m['_id'])}",
                "enrolment_id": enrolment_id,
                "user_id": enrolment["user_id"],
                "degree_course_id": enrolment["degree_course_id"],
                "module_id": int(m["_id"]),
                "module_name": m.get("name", ""),
                "order": index,
                "status": rules.ModuleStatus.NOT_OPENED.value,
                "opened_at": None,
                "done_at": None,
                "schedule": [],
            }
            for index, m in enumerate(modules)
        )

    # -- opening a module -----------------------------------------------------------------------------
    async def open_module(self, enrolment_id: str, module_id: int, *, by_admin: bool) -> Record:
        """Open a module (degree_rules.check_may_open): its schedule from today, and on the first
        opening the enrolment's start and validity. The enrolment moves first: if this request
        stopped between the two writes, the module is still not open and may be opened again."""
        enrolment = await self._enrolment_by_id(enrolment_id)
        if not by_admin and enrolment.get("status") == REFUNDED:
            raise DegreeRequired("this needs a bought degree course")
        modules = await self.store.modules(int(enrolment["degree_course_id"]))
        registered = enrolment.get("registration") is not None
        if registered:
            await self._ensure_study_records(enrolment, modules)
        study = {int(r["module_id"]): r for r in await self.store.study_records(enrolment_id)}
        status = str(enrolment.get("status"))
        rules.check_may_open(
            status, module_states(modules, study), module_id, registered=registered, by_admin=by_admin
        )
        now = self.now()
        today = now.date()
        if status == rules.EnrolmentStatus.NOT_STARTED:
            rules.next_status(status, rules.EnrolmentEvent.OPEN_FIRST_MODULE)  # the table allows it
            valid_from, valid_to = rules.validity(today)
            if not await self.store.start(enrolment_id, midnight(valid_from), midnight(valid_to), now):
                # A concurrent first opening started it (its validity stands), or a refund or a
                # suspension came first: then nothing opens.
                current = str((await self._enrolment_by_id(enrolment_id)).get("status"))
                if current != rules.EnrolmentStatus.STUDYING:
                    raise rules.EnrolmentNotActive(f"the enrolment is {current}")
        specs = [
            rules.HomeworkSpec(
                int(h["_id"]),
                int(h.get("chapter", 0)),
                int(h.get("order", 0)),
                int(h["recommended_days"]),
                int(h.get("scholarship_value", 0)),
                bool(h.get("enabled", True)),
            )
            for h in await self.store.homework_of([module_id])
        ]
        plan = [
            {"homework_id": e.homework_id, "recommended_date": midnight(e.recommended_date)}
            for e in rules.schedule(today, specs)
        ]
        if not await self.store.open_study_record(f"{enrolment_id}:{module_id}", now, plan):
            raise rules.ModuleAlreadyOpen(f"module {module_id} is already open")
        return await self._enrolment_by_id(enrolment_id)

    async def open_my_module(self, user_id: int, degree_course_id: int, module_id: int) -> Record:
        enrolment = await self.enrolment(user_id, degree_course_id)
        return await self.open_module(str(enrolment["_id"]), module_id, by_admin=False)

    # -- suspend / resume -----------------------------------------------------------------------------
    async def change_status(self, enrolment_id: str, event: rules.EnrolmentEvent) -> Record:
        """One move of the state table, conditional on the status it was decided from."""
        for _ in range(SUBMIT_ATTEMPTS):
            enrolment = await self._enrolment_by_id(enrolment_id)
            status = str(enrolment.get("status"))
            target = rules.next_status(status, event)
            after = await self.store.move_status(enrolment_id, status, target.value, self.now())
            if after is not None:
                return after
        raise ShopConflict("the enrolment keeps changing; try again")

    # -- homework authoring ---------------------------------------------------------------------------
    async def _placed(self, chapter_id: int, course_id: int | None) -> tuple[Record, Record, int]:
        """The chapter, its module, and the module's degree's total scholarship."""
        chapter = await self.store.chapter(chapter_id)
        if chapter is None:
            raise InvalidInput(f"no chapter {chapter_id}")
        module = await self.store.course(int(chapter["course_id"]))
        if module is None or module.get("course_type") != "degree" or module.get("degree_course_id") is None:
            raise InvalidInput("homework belongs to a chapter of a degree module (course_type degree)")
        if course_id is not None and course_id != int(module["_id"]):
            raise InvalidInput("course_id must be the chapter's course")
        degree = await self.store.degree(int(module["degree_course_id"]))
        total = int((degree or {}).get("total_scholarship", 0))
        return chapter, module, total

    async def add_homework(self, fields: Mapping[str, Any]) -> Record:
        checked = check_homework(fields, partial=False)
        chapter, module, total = await self._placed(checked.pop("chapter_id"), checked.pop("course_id", None))
        if checked["scholarship_value"] > total:
            raise InvalidInput(f"scholarship_value must be at most the degree's total ({total})")
        record = {
            "course_id": int(module["_id"]),
            "chapter_id": int(chapter["_id"]),
            "chapter": int(chapter.get("chapter", 0)),
            **checked,
            "created_at": self.now(),
        }
        return await self.store.add_homework(record)

    async def update_homework(self, homework_id: int, changes: Mapping[str, Any]) -> Record:
        checked = check_homework(changes, partial=True)
        current = await self.store.homework(homework_id)
        if current is None:
            raise NotFound(f"no homework {homework_id}")
        chapter_id = checked.pop("chapter_id", int(current["chapter_id"]))
        course_id = checked.pop("course_id", None)
        chapter, module, total = await self._placed(chapter_id, course_id)
        value = checked.get("scholarship_value", int(current.get("scholarship_value", 0)))
        if value > total:
            raise InvalidInput(f"scholarship_value must be at most the degree's total ({total})")
        checked.update(course_id=int(module["_id"]), chapter_id=int(chapter["_id"]))
        checked["chapter"] = int(chapter.get("chapter", 0))
        after = await self.store.update_homework(homework_id, checked)
        if after is None:
            raise NotFound(f"no homework {homework_id}")
        return after

    async def homework_of(self, course_id: int) -> list[Record]:
        module = await self.store.course(course_id)
        if module is None or module.get("course_type") != "degree":
            raise NotFound(f"no degree module {course_id}")
        return await self.store.homework_of([course_id])

    async def homework_item(self, homework_id: int) -> Record:
        found = await self.store.homework(homework_id)
        if found is None:
            raise NotFound(f"no homework {homework_id}")
        return found

    # -- handing in -----------------------------------------------------------------------------------
    async def _homework_in(self, enrolment: Record, homework_id: int) -> Record:
        homework = await self.store.homework(homework_id)
        if homework is not None:
            module = await self.store.course(int(homework["course_id"]))
            if module is not None and module.get("degree_course_id") == enrolment["degree_course_id"]:
                return homework
        raise NotFound(f"no homework {homework_id} in this degree")

    async def homework_detail(self, user_id: int, degree_course_id: int, homework_id: int) -> Record:
        """`{homework, record, recommended_date}`; disabled homework only for a student who has a record."""
        enrolment = await self.enrolment(user_id, degree_course_id)
        homework = await self._homework_in(enrolment, homework_id)
        record = await self.store.homework_record(str(enrolment["_id"]), homework_id)
        if not homework.get("enabled", True) and record is None:
            raise NotFound(f"no homework {homework_id} in this degree")
        study = await self._study_record(enrolment, int(homework["course_id"]))
        return {"homework": homework, "record": record, "recommended_date": _planned(study, homework_id)}

    async def _study_record(self, enrolment: Record, module_id: int) -> Record | None:
        records = await self.store.study_records(str(enrolment["_id"]))
        return next((r for r in records if int(r["module_id"]) == module_id), None)

    async def submit(
        self, user_id: int, degree_course_id: int, homework_id: int, text: str, files: Sequence[Upload]
    ) -> Record:
        """A hand-in: the first inserts the record, later ones add a submission and count it up; never
        once the homework passed. Files are checked before anything is stored, and removed again
        when the hand-in is refused after they were stored."""
        checked = check_submission(text, files)
        enrolment = await self.enrolment(user_id, degree_course_id)
        enrolment_id = str(enrolment["_id"])
        now = self.now()
        status = str(enrolment.get("status"))
        if status in INACTIVE_STATUSES or rules.timed_out(day_of(enrolment.get("valid_to")), now.date()):
            raise rules.EnrolmentNotActive(f"the enrolment is {status}: hand-ins are closed")
        homework = await self._homework_in(enrolment, homework_id)
        study = await self._study_record(enrolment, int(homework["course_id"]))
        if study is None or study.get("status") == rules.ModuleStatus.NOT_OPENED:
            raise ModuleNotOpen("open this homework's module first")
        if not homework.get("enabled", True):
            raise HomeworkDisabled("this homework is no longer handed in")
        existing = await self.store.homework_record(enrolment_id, homework_id)
        if existing is not None and existing.get("status") == "passed":
            raise HomeworkPassed("this homework has passed already")
        stored: list[str] = []
        try:
            attached = []
            for upload, kind in checked:
                name = clean_file_name(upload.name)
                meta = {
                    "owner_id": user_id,
                    "enrolment_id": enrolment_id,
                    "purpose": "homework",
                    "type": kind,
                    "name": name,
                }
                file_id = await self.files.put(upload.data, meta)
                stored.append(file_id)
                attached.append({"id": file_id, "name": name, "type": kind, "size": len(upload.data)})
            record = await self._hand_in(enrolment, homework, existing, study, text, attached, now)
        except BaseException:
            for file_id in stored:
                await self.files.delete(file_id)
            raise
        return record

    async def _hand_in(
        self,
        enrolment: Record,
        homework: Record,
        existing: Record | None,
        study: Record,
        text: str,
        attached: list[Record],
        now: datetime.datetime,
    ) -> Record:
        enrolment_id, homework_id = str(enrolment["_id"]), int(homework["_id"])
        changes: Record = {
            "status": "submitted",
            "reward_status": rules.RewardStatus.NEW.value,
            "handed_in_at": now,
            "mentor_id": enrolment.get("mentor_id"),
            "recommended_date": _planned(study, homework_id),
        }
        if existing is None:
            record: Record = {
                "enrolment_id": enrolment_id,
                "user_id": enrolment["user_id"],
                "degree_course_id": enrolment["degree_course_id"],
                "module_id": int(homework["course_id"]),
                "homework_id": homework_id,
                "homework_title": homework.get("title", ""),
                **changes,
                "submit_count": 1,
                "submissions": [{"n": 1, "text": text, "files": attached, "at": now}],
                **rules.ungraded_fields(),
            }
            try:
                return await self.store.insert_homework_record(record)
            except Duplicate:
                # A concurrent first hand-in (or the sweep's MISSED record) came first: add to it.
                existing = await self.store.homework_record(enrolment_id, homework_id)
        for _ in range(SUBMIT_ATTEMPTS):
            if existing is None:
                break
            if existing.get("status") == "passed":
                raise HomeworkPassed("this homework has passed already")
            count = int(existing.get("submit_count", 0))
            submission = {"n": count + 1, "text": text, "files": attached, "at": now}
            after = await self.store.add_submission(int(existing["_id"]), count, submission, changes)
            if after is not None:
                return after
            existing = await self.store.homework_record(enrolment_id, homework_id)
        raise ShopConflict("this homework record keeps changing; try again")

    # -- files ----------------------------------------------------------------------------------------
    async def file_for(self, viewer: Viewer, file_id: str) -> tuple[Record, bytes]:
        """An attachment's (metadata, bytes) for its owner, the enrolment's current mentor and admins;
        NotFound for everyone else (as for a file that does not exist)."""
        found = await self.files.get(file_id)
        if found is None:
            raise NotFound("no such file")
        meta, data = found
        if viewer.is_admin or meta.get("owner_id") == viewer.user_id:
            return meta, data
        enrolment = await self.store.enrolment(str(meta.get("enrolment_id", "")))
        if enrolment is not None and enrolment.get("mentor_id") == viewer.user_id:
            return meta, data
        raise NotFound("no such file")

    # -- mentors --------------------------------------------------------------------------------------
    async def mentors(self) -> list[Record]:
        return await self.store.active_mentors()

    # -- degree reviews -------------------------------------------------------------------------------
    async def _degree(self, degree_course_id: int) -> Record:
        degree = await self.store.degree(degree_course_id)
        if degree is None:
            raise NotFound(f"no degree course {degree_course_id}")
        return degree

    async def reviews(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool, skip: int, limit: int
    ) -> tuple[list[Record], int, dict[str, str | int | None]]:
        """Visible reviews newest first, how many, and their averages (shop/reviews.py `averages`)."""
        await self._degree(degree_course_id)
        items, total = await self.store.reviews(
            degree_course_id, module_id, all_targets=all_targets, skip=skip, limit=limit
        )
        names = await self.store.user_names({int(r["user_id"]) for r in items})
        for review in items:
            review["author"] = names.get(int(review["user_id"]), "")
        sums = await self.store.review_sums(degree_course_id, module_id, all_targets=all_targets)
        return items, total, rv.averages(dict(sums))

    async def write_review(
        self,
        user_id: int,
        degree_course_id: int,
        module_id: int | None,
        scores: Mapping[str, object],
        text: str,
    ) -> Record:
        """One review per student per target (the degree, or one of its modules); the student must
        have studied: an enrolment that is studying, suspended, graduated or timed out."""
        checked, cleaned = rv.check_scores(scores), rv.clean_text(text)
        await self._degree(degree_course_id)
        enrolment = await self.store.enrolment(enrolment_id_of(user_id, degree_course_id))
        if enrolment is None or enrolment.get("status") not in REVIEWING_STATUSES:
            raise DegreeRequired("only students who have started this degree may review it")
        if module_id is not None:
            modules = await self.store.modules(degree_course_id)
            if module_id not in {int(m["_id"]) for m in modules}:
                raise InvalidInput(f"module {module_id} is not part of this degree")
        now = self.now()
        review: Record = {
            "degree_course_id": degree_course_id,
            "module_id": module_id,
            "user_id": user_id,
            "enrolment_id": str(enrolment["_id"]),
            "scores": checked,
            "text": cleaned,
            "agree": 0,
            "disagree": 0,
            "hidden": False,
            "recommended": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            stored = await self.store.add_review(review)
        except Duplicate:
            raise rv.ReviewExists("you have already reviewed this") from None
        names = await self.store.user_names([user_id])
        return {**stored, "author": names.get(user_id, "")}


def _planned(study: Record | None, homework_id: int) -> datetime.datetime | None:
    for entry in (study or {}).get("schedule") or []:
        if int(entry["homework_id"]) == homework_id:
            value: datetime.datetime = entry["recommended_date"]
            return value
    return None
