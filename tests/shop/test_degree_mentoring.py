"""MentorService on an in-memory store with an injected clock: every grading outcome with its
money (on time, late, fail, COPY, the cap, the penalty's cap, retries), module completion,
graduation by tier, the sweep (missed homework, time-outs), mentors' access and follow-ups."""

import copy
import datetime
from typing import Any

import pytest

from engine.book.errors import InvalidInput, NotFound
from shop.degree_files import FileRejected
from shop.degree_mentoring import AlreadyGraded, MentorInactive, MentorRequired, MentorService, NotYourStudent
from shop.degree_mentoring_ports import Applied, Grading, Graduation
from shop.degree_rules import InvalidGrade
from tests.shop.degree_docs import Doc, day, enrolment, hand_in, homework, resubmit, study

MENTOR, OTHER, STUDENT = 100, 101, 7


class FakeStore:
    def __init__(self) -> None:
        self.users: dict[int, str] = {MENTOR: "Ms Mentor", OTHER: "Mr Other", STUDENT: "Stu"}
        self.mentors_: dict[int, Doc] = {}
        self.enrolments_: dict[str, Doc] = {}
        self.studies: dict[str, Doc] = {}
        self.homework_: dict[int, Doc] = {}
        self.records_: dict[int, Doc] = {}
        self.credits: dict[str, tuple[int, int, str]] = {}  # ref -> (user, amount, kind)
        self.fee_ledger: dict[str, Doc] = {}
        self.followups_: list[Doc] = []
        self.files: dict[str, tuple[bytes, Doc]] = {}

    async def mentor(self, user_id: int) -> Doc | None:
        return copy.deepcopy(self.mentors_.get(user_id))

    async def put_mentor(self, user_id: int, name: str, intro: str, now: datetime.datetime) -> Doc:
        found = self.mentors_.setdefault(user_id, {"_id": user_id, "created_at": now})
        found.update(name=name, intro=intro, active=True)
        return dict(found)

    async def deactivate_mentor(self, user_id: int) -> Doc | None:
        if user_id not in self.mentors_:
            return None
        self.mentors_[user_id]["active"] = False
        return dict(self.mentors_[user_id])

    async def mentors(self, active_only: bool) -> list[Doc]:
        return [dict(m) for m in self.mentors_.values() if m["active"] or not active_only]

    async def user_names(self, user_ids: list[int]) -> dict[int, str]:
        return {u: self.users[u] for u in user_ids if u in self.users}

    async def enrolment(self, enrolment_id: str) -> Doc | None:
        return copy.deepcopy(self.enrolments_.get(enrolment_id))

    async def set_mentor(self, enrolment_id: str, mentor_id: int, now: datetime.datetime) -> Doc | None:
        if enrolment_id not in self.enrolments_:
            return None
        self.enrolments_[enrolment_id]["mentor_id"] = mentor_id
        return copy.deepcopy(self.enrolments_[enrolment_id])

    async def enrolments(
        self, *, mentor_id: int | None = None, degree_course_id: int | None = None, status: str | None = None
    ) -> list[Doc]:
        return [
            copy.deepcopy(e)
            for e in self.enrolments_.values()
            if (mentor_id is None or e["mentor_id"] == mentor_id)
            and (degree_course_id is None or e["degree_course_id"] == degree_course_id)
            and (status is None or e["status"] == status)
        ]

    async def study_records(self, enrolment_id: str) -> list[Doc]:
        found = [copy.deepcopy(s) for s in self.studies.values() if s["enrolment_id"] == enrolment_id]
        return sorted(found, key=lambda s: s["order"])

    async def finish_module(self, study_record_id: str, now: datetime.datetime) -> bool:
        found = self.studies[study_record_id]
        if found["status"] != "studying":
            return False
        found.update(status="done", done_at=now)
        return True

    async def time_out(self, enrolment_id: str, expect_status: str, now: datetime.datetime) -> bool:
        found = self.enrolments_[enrolment_id]
        if found["status"] != expect_status:
            return False
        found["status"] = "timed_out"
        return True

    async def graduate(self, graduation: Graduation) -> Applied:
        g = graduation
        found = self.enrolments_[g.enrolment_id]
        if found["status"] != "studying":
            return "lost"
        if found["scholarship_awarded"] != g.expect_awarded:
            return "stale"
        found.update(status="graduated", graduated_at=g.now, graduation_award=g.award)
        found["scholarship_awarded"] += g.award
        if g.award:
            self.credits.setdefault(
                f"degree_graduation:{g.enrolment_id}", (g.user_id, g.award, "degree_graduation")
            )
        return "applied"

    async def homework(self, homework_id: int) -> Doc | None:
        return copy.deepcopy(self.homework_.get(homework_id))

    async def homework_of(self, module_id: int) -> list[Doc]:
        return [dict(h) for h in self.homework_.values() if h["course_id"] == module_id]

    async def record(self, record_id: int) -> Doc | None:
        return copy.deepcopy(self.records_.get(record_id))

    async def records(self, enrolment_ids: list[str], status: str | None = None) -> list[Doc]:
        return [
            copy.deepcopy(r)
            for r in self.records_.values()
            if r["enrolment_id"] in enrolment_ids and (status is None or r["status"] == status)
        ]

    async def apply_grading(self, grading: Grading) -> Applied:
        g = grading
        record = self.records_[g.record_id]
        if (
            record["status"] != "submitted"
            or record["submit_count"] != g.submission
            or record["graded_submission"] == g.submission
        ):
            return "lost"
        found = self.enrolments_[g.enrolment_id]
        if (g.scholarship or g.penalty) and (
            found["scholarship_awarded"] != g.expect_awarded
            or found["mentor_fee_balance"] != g.expect_fee_balance
        ):
            return "stale"
        record.update(copy.deepcopy(g.record_set))
        record["gradings"].append(dict(g.entry))
        record["scholarship_awarded"] += g.scholarship
        record["penalty_total"] += g.penalty
        found["scholarship_awarded"] += g.scholarship
        found["mentor_fee_balance"] -= g.penalty
        if g.scholarship:
            assert f"degree_award:{g.record_id}" not in self.credits
            self.credits[f"degree_award:{g.record_id}"] = (g.user_id, g.scholarship, "degree_award")
        if g.penalty_entry is not None:
            assert g.penalty_entry["_id"] not in self.fee_ledger
            self.fee_ledger[g.penalty_entry["_id"]] = dict(g.penalty_entry)
        return "applied"

    async def add_missed(self, record: Doc) -> bool:
        if any(
            r["enrolment_id"] == record["enrolment_id"] and r["homework_id"] == record["homework_id"]
            for r in self.records_.values()
        ):
            return False
        record = dict(record, _id=max(self.records_, default=0) + 1)
        self.records_[record["_id"]] = record
        return True

    async def add_followup(self, followup: Doc) -> Doc:
        followup = dict(followup, _id=len(self.followups_) + 1)
        self.followups_.append(followup)
        return followup

    async def followups(self, enrolment_id: str) -> list[Doc]:
        return [f for f in self.followups_ if f["enrolment_id"] == enrolment_id]

    async def put_file(self, data: bytes, metadata: Doc) -> str:
        file_id = f"{len(self.files) + 1:024x}"
        self.files[file_id] = (data, metadata)
        return file_id


class Clock:
    def __init__(self, text: str) -> None:
        self.at = day(text) + datetime.timedelta(hours=12)

    def __call__(self) -> datetime.datetime:
        return self.at


class World:
    def __init__(self, **money: Any) -> None:
        self.store = FakeStore()
        self.clock = Clock("2026-02-01")
        self.notices: list[tuple[int, Doc]] = []
        self.service = MentorService(self.store, now=self.clock, notify=self.notice)
        self.store.mentors_[MENTOR] = {"_id": MENTOR, "name": "Ms Mentor", "intro": "", "active": True}
        self.store.mentors_[OTHER] = {"_id": OTHER, "name": "Mr Other", "intro": "", "active": True}
        self.enrolment = enrolment(STUDENT, mentor_id=MENTOR, **money)
        self.store.enrolments_[self.enrolment["_id"]] = self.enrolment
        schedule = [
            {"homework_id": 1, "recommended_date": day("2026-01-10")},
            {"homework_id": 2, "recommended_date": day("2026-01-20")},
        ]
        self.store.studies[f"{self.enrolment['_id']}:11"] = study(
            self.enrolment, 11, order=1, schedule=schedule
        )
        self.store.studies[f"{self.enrolment['_id']}:12"] = study(
            self.enrolment, 12, order=2, status="not_opened"
        )
        self.store.homework_[1] = homework(1, 11, value=2000)
        self.store.homework_[2] = homework(2, 11, value=2000)
        self.store.homework_[3] = homework(3, 12, value=2000)

    async def notice(self, user_id: int, message: Doc) -> None:
        self.notices.append((user_id, message))

    def hand_in(
        self, record_id: int, homework_id: int, handed_in: str, recommended: str | None = "2026-01-10"
    ) -> None:
        self.store.records_[record_id] = hand_in(
            record_id,
            self.enrolment,
            11 if homework_id < 3 else 12,
            homework_id,
            handed_in=handed_in,
            recommended=recommended,
        )

    @property
    def money(self) -> tuple[int, int]:
        found = self.store.enrolments_[self.enrolment["_id"]]
        return found["scholarship_awarded"], found["mentor_fee_balance"]


async def test_on_time_pass_is_rewarded_once_and_notified() -> None:
    w = World()
    w.hand_in(1, 1, "2026-01-10")
    graded = await w.service.grade(MENTOR, 1, 1, "A", "good")
    assert (graded["status"], graded["reward_status"], graded["rewarded"]) == ("passed", "rewarded", True)
    assert w.store.credits == {"degree_award:1": (STUDENT, 2000, "degree_award")}
    assert w.money == (2000, 15000)
    assert w.notices[0] == (
        STUDENT,
        {
            "type": "homework_graded",
            "degree_course_id": 1,
            "homework_id": 1,
            "record_id": 1,
            "grade": "A",
            "passed": True,
            "reward_status": "rewarded",
            "scholarship": 2000,
        },
    )
    again = await w.service.grade(MENTOR, 1, 1, "A", "good")  # a retry: same answer, nothing moves
    assert again["gradings"] == graded["gradings"]
    assert w.money == (2000, 15000) and len(w.store.credits) == 1 and len(w.notices) == 1
    with pytest.raises(AlreadyGraded):
        await w.service.grade(MENTOR, 1, 1, "B", "changed my mind")


async def test_late_pass_earns_nothing_and_costs_the_mentor_his_share() -> None:
    w = World()  # total 40000, fee 15000, value 2000 -> penalty 15000*2000//40000 = 750
    w.hand_in(1, 1, "2026-01-11")
    graded = await w.service.grade(MENTOR, 1, 1, "A+", "")
    assert (graded["status"], graded["reward_status"], graded["penalty_total"]) == (
        "passed",
        "penalised",
        750,
    )
    assert w.store.credits == {}
    assert w.money == (0, 14250)
    entry = w.store.fee_ledger["mentor_penalty:1"]
    assert (entry["amount"], entry["balance_after"], entry["mentor_id"]) == (-750, 14250, MENTOR)


async def test_fail_then_pass_on_time_is_rewarded_and_penalised_once() -> None:
    w = World()
    w.hand_in(1, 1, "2026-01-05")
    failed = await w.service.grade(MENTOR, 1, 1, "D", "redo")
    assert (failed["status"], failed["reward_status"]) == ("failed", "penalised")
    assert w.money == (0, 14250)
    w.store.records_[1] = resubmit(w.store.records_[1], "2026-01-09")
    with pytest.raises(AlreadyGraded):  # not the latest submission
        await w.service.grade(MENTOR, 1, 1, "D", "redo")
    passed = await w.service.grade(MENTOR, 1, 2, "B", "ok now")
    assert (passed["status"], passed["reward_status"]) == ("passed", "rewarded")
    assert w.money == (2000, 14250) and len(w.store.fee_ledger) == 1


async def test_copy_forfeits_and_a_later_pass_earns_nothing() -> None:
    w = World()
    w.hand_in(1, 1, "2026-01-05")
    copied = await w.service.grade(MENTOR, 1, 1, "COPY", "copied")
    assert (copied["status"], copied["reward_status"], copied["forfeited"]) == ("failed", "penalised", True)
    w.store.records_[1] = resubmit(w.store.records_[1], "2026-01-08")
    redone = await w.service.grade(MENTOR, 1, 2, "A+", "")
    assert (redone["status"], redone["reward_status"], redone["forfeited"]) == ("passed", "penalised", True)
    assert w.store.credits == {} and w.money == (0, 14250)


async def test_scholarship_capped_at_the_total() -> None:
    w = World(awarded=39500)
    w.hand_in(1, 1, "2026-01-10")
    await w.service.grade(MENTOR, 1, 1, "A", "")
    assert w.store.credits["degree_award:1"][1] == 500
    assert w.money == (40000, 15000)


async def test_penalty_capped_at_the_fee_balance() -> None:
    w = World(fee_balance=300)
    w.hand_in(1, 1, "2026-01-12")
    await w.service.grade(MENTOR, 1, 1, "C", "")
    assert w.money == (0, 0)
    assert w.store.fee_ledger["mentor_penalty:1"]["amount"] == -300


async def test_module_done_then_graduation_by_tier_credited_once() -> None:
    tiers = [{"time_percent": 50, "value": 5000}, {"time_percent": 100, "value": 2000}]
    w = World(tiers=tiers)  # valid from 2026-01-01, period 100 days; graded 2026-02-01: 32 % used
    w.store.studies[f"{w.enrolment['_id']}:12"]["status"] = "done"
    w.hand_in(1, 1, "2026-01-10")
    w.hand_in(2, 2, "2026-01-20", recommended="2026-01-20")
    await w.service.grade(MENTOR, 1, 1, "A", "")
    assert w.store.studies[f"{w.enrolment['_id']}:11"]["status"] == "studying"
    await w.service.grade(MENTOR, 2, 1, "C-", "")
    assert w.store.studies[f"{w.enrolment['_id']}:11"]["status"] == "done"
    found = w.store.enrolments_[w.enrolment["_id"]]
    assert (found["status"], found["graduation_award"], found["scholarship_awarded"]) == (
        "graduated",
        5000,
        9000,
    )
    assert w.store.credits[f"degree_graduation:{w.enrolment['_id']}"] == (STUDENT, 5000, "degree_graduation")
    assert (STUDENT, {"type": "degree_graduated", "degree_course_id": 1, "award": 5000}) in w.notices
    assert await w.service.check_graduation(w.enrolment["_id"]) is not None
    assert found["scholarship_awarded"] == 9000 and len(w.store.credits) == 3


async def test_graduation_after_the_last_tier_earns_nothing() -> None:
    w = World(tiers=[{"time_percent": 10, "value": 5000}])
    w.store.studies[f"{w.enrolment['_id']}:12"]["status"] = "done"
    w.store.homework_[2]["enabled"] = False  # a disabled homework does not hold the module back
    w.hand_in(1, 1, "2026-01-10")
    await w.service.grade(MENTOR, 1, 1, "A", "")
    found = w.store.enrolments_[w.enrolment["_id"]]
    assert (found["status"], found["graduation_award"]) == ("graduated", 0)
    assert f"degree_graduation:{w.enrolment['_id']}" not in w.store.credits


async def test_sweep_records_missed_homework_and_times_out() -> None:
    w = World()
    w.hand_in(1, 1, "2026-01-09")
    w.clock.at = day("2026-01-21")
    assert await w.service.sweep(w.clock()) == {"missed": 1, "timed_out": 0, "graduated": 0}
    missed = [r for r in w.store.records_.values() if r["reward_status"] == "missed"]
    assert [(r["homework_id"], r["submit_count"], r["status"]) for r in missed] == [(2, 0, "failed")]
    assert await w.service.sweep(w.clock()) == {"missed": 0, "timed_out": 0, "graduated": 0}
    rows = await w.service.students(MENTOR)
    assert rows[0]["behind"] == 2  # homework 1 waits for its grade, homework 2 was missed
    w.clock.at = day("2028-01-01")
    assert (await w.service.sweep(w.clock()))["timed_out"] == 1
    assert w.store.enrolments_[w.enrolment["_id"]]["status"] == "timed_out"


async def test_mentors_see_only_their_students() -> None:
    w = World()
    w.hand_in(1, 1, "2026-01-10")
    queue = await w.service.queue(MENTOR)
    assert [(q["record_id"], q["student"]["name"], q["module_name"], q["late"]) for q in queue] == [
        (1, "Stu", "Module 11", False)
    ]
    assert await w.service.queue(OTHER) == []
    with pytest.raises(NotYourStudent):
        await w.service.record(OTHER, 1)
    with pytest.raises(NotYourStudent):
        await w.service.grade(OTHER, 1, 1, "A", "")
    with pytest.raises(MentorRequired):
        await w.service.queue(STUDENT)
    graded = await w.service.grade(999, 1, 1, "A", "", by_admin=True)
    assert graded["graded_by"] == 999
    with pytest.raises(InvalidGrade):
        await w.service.grade(MENTOR, 1, 1, "E", "")


async def test_grant_revoke_assign() -> None:
    w = World()
    with pytest.raises(NotFound):
        await w.service.grant_mentor(555, "Nobody", "")
    await w.service.grant_mentor(STUDENT, "Stu", "also teaches")
    assert await w.service.is_mentor(STUDENT)
    await w.service.revoke_mentor(STUDENT)
    assert not await w.service.is_mentor(STUDENT)
    with pytest.raises(MentorInactive):
        await w.service.assign_mentor(w.enrolment["_id"], STUDENT)
    assigned = await w.service.assign_mentor(w.enrolment["_id"], OTHER)
    assert assigned["mentor_id"] == OTHER
    with pytest.raises(NotFound):
        await w.service.assign_mentor("9:9", OTHER)


async def test_followups_sniff_their_file() -> None:
    w = World()
    added = await w.service.add_followup(MENTOR, w.enrolment["_id"], "phone", "called", [("n.txt", b"notes")])
    assert added["files"][0]["type"] == "text/plain"
    assert [f["_id"] for f in await w.service.followups(MENTOR, w.enrolment["_id"])] == [added["_id"]]
    with pytest.raises(FileRejected):
        await w.service.add_followup(MENTOR, w.enrolment["_id"], "phone", "", [("x.exe", b"MZ\x00\x01")])
    with pytest.raises(InvalidInput):
        await w.service.add_followup(MENTOR, w.enrolment["_id"], "pigeon", "hi", [])
    with pytest.raises(NotYourStudent):
        await w.service.followups(OTHER, w.enrolment["_id"])
