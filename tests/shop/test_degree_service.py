"""DegreeService (shop/degree_service.py) on in-memory fakes with an injected clock: registration,
study records, opening modules, validity, schedules, suspend/resume, hand-ins, files, authoring, reviews."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import Any

import pytest

from engine.book.errors import GavelError, InvalidInput, NotFound
from shop import degree_rules as rules
from shop.degree_service import (
    MAX_FILE_BYTES,
    AlreadyRegistered,
    DegreeRequired,
    FileRejected,
    FileTooLarge,
    HomeworkDisabled,
    HomeworkPassed,
    ModuleNotOpen,
    TooManyFiles,
    Upload,
    clean_file_name,
    sniff_file,
)
from shop.reviews import ReviewExists
from tests.shop.degree_fakes import FORM, World

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
STUDENT, OTHER, MENTOR, ADMIN = 11, 12, 21, 1


@dataclasses.dataclass
class Degree:
    world: World
    degree_id: int
    modules: list[int]
    homework: list[list[int]]  # per module
    enrolment_id: str


async def a_degree(world: World | None = None, *, modules: int = 2) -> Degree:
    """A degree of `modules` modules, each with two homework (7 then 10 days), and STUDENT's enrolment."""
    w = world or World()
    degree_id = w.degree()
    module_ids, homework = [], []
    for index in range(modules):
        module_id = w.module(degree_id, f"Module {index + 1}", order=index + 1)
        chapter = w.chapter(module_id, 1)
        homework.append(
            [await w.homework(chapter, "first", days=7), await w.homework(chapter, "second", days=10)]
        )
        module_ids.append(module_id)
    return Degree(w, degree_id, module_ids, homework, w.enrol(STUDENT, degree_id))


def code_of(excinfo: pytest.ExceptionInfo[GavelError]) -> str:
    return excinfo.value.code


@dataclasses.dataclass(frozen=True)
class Who:
    user_id: int
    is_admin: bool = False


# == registration =====================================================================================
async def test_registration_once_makes_one_study_record_per_module() -> None:
    d = await a_degree(modules=3)
    d.world.mentor(MENTOR)
    after = await d.world.service.register(STUDENT, d.degree_id, {**FORM, "preferred_mentor_id": MENTOR})
    assert after["registration"]["company"] == "Acme" and after["registration"]["at"] == d.world.clock()
    assert after["status"] == "not_started" and after["mentor_id"] == MENTOR
    records = await d.world.store.study_records(d.enrolment_id)
    assert [(r["module_id"], r["status"], r["order"]) for r in records] == [
        (m, "not_opened", i) for i, m in enumerate(d.modules)
    ]
    with pytest.raises(AlreadyRegistered):
        await d.world.service.register(STUDENT, d.degree_id, FORM)


async def test_registration_checks_the_form_and_the_mentor() -> None:
    d = await a_degree()
    d.world.mentor(MENTOR, active=False)
    service = d.world.service
    for bad in (
        {**FORM, "salary_band": "lots"},
        {**FORM, "experience": 12},
        {**FORM, "study_hours": 0},
        {**FORM, "company": "x" * 65},
        {**FORM, "why_us": "y" * 1025},
        {**FORM, "open_first_module": "yes"},
        {**FORM, "extra": 1},
        {k: v for k, v in FORM.items() if k != "company"},
        {**FORM, "preferred_mentor_id": MENTOR},  # inactive
        {**FORM, "preferred_mentor_id": 999},  # not a mentor
    ):
        with pytest.raises(InvalidInput):
            await service.register(STUDENT, d.degree_id, bad)
    assert (await d.world.store.enrolment(d.enrolment_id) or {})["registration"] is None


async def test_a_preferred_mentor_does_not_replace_an_assigned_one() -> None:
    d = await a_degree()
    d.world.mentor(MENTOR)
    d.world.mentor(MENTOR + 1)
    d.world.store.table("enrolments")[d.enrolment_id]["mentor_id"] = MENTOR + 1
    after = await d.world.service.register(STUDENT, d.degree_id, {**FORM, "preferred_mentor_id": MENTOR})
    assert after["mentor_id"] == MENTOR + 1


async def test_no_enrolment_or_a_refunded_one_is_degree_required() -> None:
    d = await a_degree()
    with pytest.raises(DegreeRequired):
        await d.world.service.register(OTHER, d.degree_id, FORM)
    d.world.store.table("enrolments")[d.enrolment_id]["status"] = "refunded"
    for attempt in (
        d.world.service.register(STUDENT, d.degree_id, FORM),
        d.world.service.degree_detail(STUDENT, d.degree_id),
        d.world.service.submit(STUDENT, d.degree_id, d.homework[0][0], "hi", []),
    ):
        with pytest.raises(DegreeRequired):
            await attempt
    assert await d.world.service.enrolments(STUDENT) == []


# == opening modules ==================================================================================
async def test_opening_the_first_module_starts_validity_and_the_schedule() -> None:
    d = await a_degree()
    w = d.world
    after = await w.service.register(STUDENT, d.degree_id, {**FORM, "open_first_module": True})
    today = w.clock().date()
    assert after["status"] == "studying"
    assert after["valid_from"].date() == today
    assert (after["valid_from"].date(), after["valid_to"].date()) == rules.validity(today)
    first = (await w.store.study_records(d.enrolment_id))[0]
    assert first["status"] == "studying" and first["opened_at"] == w.clock()
    assert [(e["homework_id"], e["recommended_date"].date()) for e in first["schedule"]] == [
        (d.homework[0][0], today + datetime.timedelta(days=7)),
        (d.homework[0][1], today + datetime.timedelta(days=17)),
    ]
    assert first["schedule"][0]["recommended_date"].tzinfo == datetime.UTC


async def test_the_student_opens_in_order_an_admin_may_skip() -> None:
    d = await a_degree(modules=3)
    w = d.world
    with pytest.raises(rules.RegistrationRequired):
        await w.service.open_my_module(STUDENT, d.degree_id, d.modules[0])
    await w.service.register(STUDENT, d.degree_id, FORM)
    with pytest.raises(rules.PreviousModuleNotDone):
        await w.service.open_my_module(STUDENT, d.degree_id, d.modules[1])
    with pytest.raises(rules.ModuleNotFound):
        await w.service.open_my_module(STUDENT, d.degree_id, 9999)
    # The admin opens module 2 first: that is the first opening, so the validity starts now.
    w.clock.advance(3)
    after = await w.service.open_module(d.enrolment_id, d.modules[1], by_admin=True)
    assert after["status"] == "studying" and after["valid_from"].date() == w.clock().date()
    # A later opening keeps the validity.
    w.clock.advance(5)
    after = await w.service.open_module(d.enrolment_id, d.modules[0], by_admin=False)
    assert after["valid_from"].date() == w.clock().date() - datetime.timedelta(days=5)
    with pytest.raises(rules.ModuleAlreadyOpen):
        await w.service.open_module(d.enrolment_id, d.modules[0], by_admin=True)
    # Module 3 needs modules 1 and 2 done for the student.
    w.store.table("study_records")[f"{d.enrolment_id}:{d.modules[0]}"]["status"] = "done"
    with pytest.raises(rules.PreviousModuleNotDone):
        await w.service.open_my_module(STUDENT, d.degree_id, d.modules[2])
    w.store.table("study_records")[f"{d.enrolment_id}:{d.modules[1]}"]["status"] = "done"
    opened = await w.service.open_my_module(STUDENT, d.degree_id, d.modules[2])
    detail = await w.service.detail_of(str(opened["_id"]))
    assert [m["status"] for m in detail["modules"]] == ["done", "done", "studying"]
    assert detail["progress"] == {"done": 2, "total": 3}


async def test_two_concurrent_opens_one_wins() -> None:
    d = await a_degree()
    w = d.world
    await w.service.register(STUDENT, d.degree_id, FORM)
    results = await asyncio.gather(
        w.service.open_module(d.enrolment_id, d.modules[0], by_admin=False),
        w.service.open_module(d.enrolment_id, d.modules[0], by_admin=True),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ModuleAlreadyOpen", "dict"]


async def test_a_module_added_after_registration_gets_its_record_when_opened() -> None:
    d = await a_degree(modules=1)
    w = d.world
    await w.service.register(STUDENT, d.degree_id, FORM)
    late = w.module(d.degree_id, "Late module", order=9)
    await w.service.open_module(d.enrolment_id, late, by_admin=True)
    records = {r["module_id"]: r["status"] for r in await w.store.study_records(d.enrolment_id)}
    assert records == {d.modules[0]: "not_opened", late: "studying"}


async def test_disabled_homework_is_left_out_of_the_schedule() -> None:
    d = await a_degree(modules=1)
    w = d.world
    await w.service.update_homework(d.homework[0][0], {"enabled": False})
    await w.service.register(STUDENT, d.degree_id, {**FORM, "open_first_module": True})
    (record,) = await w.store.study_records(d.enrolment_id)
    assert [(e["homework_id"], e["recommended_date"].date()) for e in record["schedule"]] == [
        (d.homework[0][1], w.clock().date() + datetime.timedelta(days=10))
    ]


# == suspend / resume =================================================================================
async def test_suspend_and_resume_follow_the_table() -> None:
    d = await a_degree()
    w = d.world
    with pytest.raises(rules.IllegalDegreeTransition):  # not started yet
        await w.service.change_status(d.enrolment_id, rules.EnrolmentEvent.SUSPEND)
    await w.service.register(STUDENT, d.degree_id, {**FORM, "open_first_module": True})
    suspended = await w.service.change_status(d.enrolment_id, rules.EnrolmentEvent.SUSPEND)
    assert suspended["status"] == "suspended"
    with pytest.raises(rules.IllegalDegreeTransition):
        await w.service.change_status(d.enrolment_id, rules.EnrolmentEvent.SUSPEND)
    with pytest.raises(rules.EnrolmentNotActive):  # a suspended student opens nothing
        await w.service.open_module(d.enrolment_id, d.modules[1], by_admin=True)
    resumed = await w.service.change_status(d.enrolment_id, rules.EnrolmentEvent.RESUME)
    assert resumed["status"] == "studying"
    with pytest.raises(rules.IllegalDegreeTransition):
        await w.service.change_status(d.enrolment_id, rules.EnrolmentEvent.RESUME)
    with pytest.raises(NotFound):
        await w.service.change_status("1:999", rules.EnrolmentEvent.SUSPEND)


# == hand-ins =========================================================================================
async def studying(d: Degree) -> None:
    await d.world.service.register(STUDENT, d.degree_id, {**FORM, "open_first_module": True})


async def test_hand_in_and_resubmission_count_up() -> None:
    d = await a_degree()
    w = d.world
    await studying(d)
    homework = d.homework[0][0]
    first = await w.service.submit(STUDENT, d.degree_id, homework, "my answer", [Upload("a.png", PNG)])
    assert (first["status"], first["reward_status"], first["submit_count"]) == ("submitted", "new", 1)
    assert first["recommended_date"].date() == w.clock().date() + datetime.timedelta(days=7)
    assert first["submissions"][0]["files"][0]["type"] == "image/png"
    assert first["submissions"][0]["files"][0]["size"] == len(PNG)
    file_id = first["submissions"][0]["files"][0]["id"]
    meta, data = w.files.files[file_id]
    assert data == PNG and meta == {
        "owner_id": STUDENT,
        "enrolment_id": d.enrolment_id,
        "purpose": "homework",
        "type": "image/png",
        "name": "a.png",
    }
    # A mentor failed it; the student hands in again.
    w.store.table("homework_records")[first["_id"]].update(status="failed", reward_status="penalised")
    w.clock.advance(2)
    second = await w.service.submit(STUDENT, d.degree_id, homework, "better", [])
    assert (second["_id"], second["status"], second["reward_status"]) == (first["_id"], "submitted", "new")
    assert second["submit_count"] == 2 and [s["n"] for s in second["submissions"]] == [1, 2]
    assert second["handed_in_at"] == w.clock()
    # Once passed, no more hand-ins (and nothing is stored).
    w.store.table("homework_records")[first["_id"]]["status"] = "passed"
    before = len(w.files.files)
    with pytest.raises(HomeworkPassed):
        await w.service.submit(STUDENT, d.degree_id, homework, "again", [Upload("b.png", PNG)])
    assert len(w.files.files) == before


async def test_a_missed_record_becomes_a_normal_one() -> None:
    d = await a_degree()
    w = d.world
    await studying(d)
    homework = d.homework[0][0]
    missed = await w.store.insert_homework_record(
        {
            "enrolment_id": d.enrolment_id,
            "homework_id": homework,
            "status": "missed",
            "reward_status": "missed",
            "submit_count": 0,
            "submissions": [],
        }
    )
    after = await w.service.submit(STUDENT, d.degree_id, homework, "late work", [])
    assert after["_id"] == missed["_id"]
    assert (after["status"], after["reward_status"], after["submit_count"]) == ("submitted", "new", 1)


async def test_concurrent_first_hand_ins_make_one_record() -> None:
    d = await a_degree()
    w = d.world
    await studying(d)
    homework = d.homework[0][0]
    await asyncio.gather(
        *(w.service.submit(STUDENT, d.degree_id, homework, f"try {i}", []) for i in range(3))
    )
    (record,) = await w.store.homework_records(d.enrolment_id)
    assert record["submit_count"] == 3 and sorted(s["n"] for s in record["submissions"]) == [1, 2, 3]


async def test_hand_in_refusals() -> None:
    d = await a_degree()
    w = d.world
    service = w.service
    await service.register(STUDENT, d.degree_id, FORM)
    with pytest.raises(ModuleNotOpen):  # registered, nothing open
        await service.submit(STUDENT, d.degree_id, d.homework[0][0], "x", [])
    await service.open_my_module(STUDENT, d.degree_id, d.modules[0])
    with pytest.raises(ModuleNotOpen):
        await service.submit(STUDENT, d.degree_id, d.homework[1][0], "x", [])
    await service.update_homework(d.homework[0][1], {"enabled": False})
    with pytest.raises(HomeworkDisabled):
        await service.submit(STUDENT, d.degree_id, d.homework[0][1], "x", [])
    with pytest.raises(NotFound):
        await service.submit(STUDENT, d.degree_id, 99_999, "x", [])
    # Input limits come first, before anything is read or stored.
    with pytest.raises(InvalidInput):
        await service.submit(STUDENT, d.degree_id, d.homework[0][0], "   ", [])
    with pytest.raises(InvalidInput):
        await service.submit(STUDENT, d.degree_id, d.homework[0][0], "x" * 10_001, [])
    with pytest.raises(TooManyFiles):
        await service.submit(
            STUDENT, d.degree_id, d.homework[0][0], "", [Upload(f"{i}.png", PNG) for i in range(6)]
        )
    with pytest.raises(FileTooLarge):
        await service.submit(
            STUDENT, d.degree_id, d.homework[0][0], "", [Upload("big.png", PNG + b"\x00" * MAX_FILE_BYTES)]
        )
    with pytest.raises(FileRejected):
        await service.submit(STUDENT, d.degree_id, d.homework[0][0], "", [Upload("x.exe", b"MZ\x90\x00\x03")])
    assert w.files.files == {}
    # Suspended, graduated, timed out (even before the sweep marks it): hand-ins are closed.
    enrolment = w.store.table("enrolments")[d.enrolment_id]
    for status in ("suspended", "graduated", "timed_out"):
        enrolment["status"] = status
        with pytest.raises(rules.EnrolmentNotActive):
            await service.submit(STUDENT, d.degree_id, d.homework[0][0], "x", [])
    enrolment["status"] = "studying"
    valid_to = (await w.store.enrolment(d.enrolment_id) or {})["valid_to"].date()
    w.clock.advance((valid_to - w.clock().date()).days + 1)  # the day after the last valid one
    with pytest.raises(rules.EnrolmentNotActive):
        await service.submit(STUDENT, d.degree_id, d.homework[0][0], "x", [])


async def test_homework_detail_and_the_degree_view() -> None:
    d = await a_degree()
    w = d.world
    await studying(d)
    record = await w.service.submit(STUDENT, d.degree_id, d.homework[0][0], "answer", [])
    detail = await w.service.homework_detail(STUDENT, d.degree_id, d.homework[0][0])
    assert detail["homework"]["title"] == "first" and detail["record"]["_id"] == record["_id"]
    assert detail["recommended_date"] == record["recommended_date"]
    # Disabled homework: still shown to the student who handed it in, hidden from the others.
    await w.service.update_homework(d.homework[0][0], {"enabled": False})
    await w.service.update_homework(d.homework[0][1], {"enabled": False})
    assert (await w.service.homework_detail(STUDENT, d.degree_id, d.homework[0][0]))["record"] is not None
    with pytest.raises(NotFound):
        await w.service.homework_detail(STUDENT, d.degree_id, d.homework[0][1])
    view = await w.service.degree_detail(STUDENT, d.degree_id)
    assert [[h["_id"] for h in m["homework"]] for m in view["modules"]] == [[d.homework[0][0]], d.homework[1]]
    assert view["modules"][0]["homework"][0]["record"]["submit_count"] == 1
    # Homework of another degree is not found through this one.
    other = await a_degree(w)
    with pytest.raises(NotFound):
        await w.service.homework_detail(STUDENT, d.degree_id, other.homework[0][0])


# == files ============================================================================================
async def test_files_are_for_the_owner_the_mentor_and_admins() -> None:
    d = await a_degree()
    w = d.world
    w.mentor(MENTOR)
    await w.service.register(
        STUDENT, d.degree_id, {**FORM, "open_first_module": True, "preferred_mentor_id": MENTOR}
    )
    record = await w.service.submit(
        STUDENT, d.degree_id, d.homework[0][0], "", [Upload("notes.txt", b"hello\n")]
    )
    file_id = record["submissions"][0]["files"][0]["id"]
    for viewer in (Who(STUDENT), Who(MENTOR), Who(ADMIN, is_admin=True)):
        meta, data = await w.service.file_for(viewer, file_id)
        assert data == b"hello\n" and meta["type"] == "text/plain"
    for viewer in (Who(OTHER), Who(MENTOR + 1)):
        with pytest.raises(NotFound):
            await w.service.file_for(viewer, file_id)
    with pytest.raises(NotFound):
        await w.service.file_for(Who(ADMIN, is_admin=True), "0" * 24)


def test_sniffing_and_file_names() -> None:
    assert sniff_file(b"%PDF-1.7 ...") == "application/pdf"
    assert sniff_file(PNG) == "image/png"
    assert sniff_file(b"\xff\xd8\xff\xe0 jpeg") == "image/jpeg"
    assert sniff_file(b"GIF89a....") == "image/gif"
    assert sniff_file(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_file(b"PK\x03\x04zip") == "application/zip"
    assert sniff_file("答案:\n\tprint('hi')\n".encode()) == "text/plain"
    assert sniff_file("答\u3000案\u00a0ok".encode()) == "text/plain"  # full-width and no-break spaces
    for rejected in (b"MZ\x90\x00", b"\xff\xfe\x00", b"", b"text with a \x00 in it", b"\x7fELF"):
        assert sniff_file(rejected) is None
    assert clean_file_name("C:\\Users\\me\\作业.pdf") == "作业.pdf"
    assert clean_file_name("../../etc/passwd") == "passwd"
    assert clean_file_name("a\x00b\x1b.txt") == "ab.txt" and clean_file_name("   ") == "file"
    assert len(clean_file_name("x" * 500)) == 200


# == homework authoring ===============================================================================
async def test_homework_authoring_rules() -> None:
    w = World()
    degree_id = w.degree(total=5000)
    module = w.module(degree_id, "M1")
    chapter = w.chapter(module, 3)
    made = await w.service.add_homework({"chapter_id": chapter, "title": "Build it", "kind": "exam"})
    assert {k: made[k] for k in ("course_id", "chapter", "kind", "recommended_days", "order", "enabled")} == {
        "course_id": module,
        "chapter": 3,
        "kind": "exam",
        "recommended_days": 7,
        "order": 0,
        "enabled": True,
    }
    plain = w.store.table("courses")
    plain[500] = {"_id": 500, "name": "Plain", "course_type": "paid"}
    plain_chapter = w.chapter(500)
    bad: list[dict[str, Any]] = [
        {"chapter_id": plain_chapter, "title": "x"},  # not a degree module
        {"chapter_id": 123_456, "title": "x"},  # no chapter
        {"chapter_id": chapter, "title": "x", "course_id": 500},  # not the chapter's course
        {"chapter_id": chapter, "title": ""},
        {"chapter_id": chapter, "title": "x" * 129},
        {"chapter_id": chapter, "title": "x", "kind": "quiz"},
        {"chapter_id": chapter, "title": "x", "recommended_days": 0},
        {"chapter_id": chapter, "title": "x", "recommended_days": 366},
        {"chapter_id": chapter, "title": "x", "scholarship_value": 5001},  # over the degree's total
        {"chapter_id": chapter, "title": "x", "requirement": "r" * 4001},
        {"chapter_id": chapter, "title": "x", "order": -1},
        {"chapter_id": chapter, "title": "x", "enabled": 1},
        {"title": "x"},
        {"chapter_id": chapter, "title": "x", "surprise": True},
    ]
    for fields in bad:
        with pytest.raises(InvalidInput):
            await w.service.add_homework(fields)
    changed = await w.service.update_homework(
        int(made["_id"]), {"title": "Build it well", "scholarship_value": 5000}
    )
    assert changed["title"] == "Build it well" and changed["scholarship_value"] == 5000
    with pytest.raises(InvalidInput):
        await w.service.update_homework(int(made["_id"]), {"scholarship_value": 5001})
    other_chapter = w.chapter(module, 4)
    moved = await w.service.update_homework(int(made["_id"]), {"chapter_id": other_chapter})
    assert (moved["chapter_id"], moved["chapter"]) == (other_chapter, 4)
    with pytest.raises(NotFound):
        await w.service.update_homework(99_999, {"title": "x"})
    assert [h["_id"] for h in await w.service.homework_of(module)] == [made["_id"]]
    with pytest.raises(NotFound):
        await w.service.homework_of(500)


# == reviews ==========================================================================================
async def test_degree_reviews() -> None:
    d = await a_degree()
    w = d.world
    w.store.users.update({STUDENT: "alice", OTHER: "bob"})
    scores = {"teacher": 5, "content": 4, "clarity": 3}
    with pytest.raises(DegreeRequired):  # bought, not started
        await w.service.write_review(STUDENT, d.degree_id, None, scores, "great")
    await studying(d)
    whole = await w.service.write_review(STUDENT, d.degree_id, None, scores, "  great\x00 ")
    assert whole["text"] == "great" and whole["author"] == "alice" and whole["module_id"] is None
    with pytest.raises(ReviewExists):
        await w.service.write_review(STUDENT, d.degree_id, None, scores, "again")
    w.clock.advance(1)
    module = await w.service.write_review(STUDENT, d.degree_id, d.modules[0], {**scores, "teacher": 4}, "m1")
    with pytest.raises(InvalidInput):
        await w.service.write_review(STUDENT, d.degree_id, 99_999, scores, "no such module")
    with pytest.raises(InvalidInput):
        await w.service.write_review(STUDENT, d.degree_id, d.modules[1], {"teacher": 6}, "bad score")
    with pytest.raises(DegreeRequired):
        await w.service.write_review(OTHER, d.degree_id, None, scores, "not enrolled")
    items, total, averages = await w.service.reviews(d.degree_id, None, all_targets=True, skip=0, limit=10)
    assert [r["_id"] for r in items] == [module["_id"], whole["_id"]] and total == 2
    assert averages == {"teacher": "4.5", "content": "4.0", "clarity": "3.0", "overall": "3.8", "count": 2}
    items, total, _ = await w.service.reviews(d.degree_id, d.modules[0], all_targets=False, skip=0, limit=10)
    assert [r["_id"] for r in items] == [module["_id"]] and total == 1
    with pytest.raises(NotFound):
        await w.service.reviews(99_999, None, all_targets=True, skip=0, limit=10)


async def test_a_refund_before_the_first_opening_stops_it() -> None:
    d = await a_degree()
    w = d.world
    await w.service.register(STUDENT, d.degree_id, FORM)
    start = w.store.start

    async def refunded_first(*args: Any) -> bool:
        # The BUY part's refund (conditional on not_started) commits just before this start.
        w.store.table("enrolments")[d.enrolment_id]["status"] = "refunded"
        return await start(*args)

    w.store.start = refunded_first  # type: ignore[method-assign, assignment]
    with pytest.raises(rules.EnrolmentNotActive):
        await w.service.open_module(d.enrolment_id, d.modules[0], by_admin=True)
    assert {r["status"] for r in await w.store.study_records(d.enrolment_id)} == {"not_opened"}
