"""The degree path's rules (学位课), pure: grades, the enrolment state table, a module's schedule,
the six reward states of a homework record, scholarships and the mentor fee.

No I/O and no clock: dates come in as arguments. Money is integer fen (贝里 is the balance's unit).
docs/degree.md states every rule with worked examples; the handlers (shop/degree_handlers.py) call
these and store what they decide.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Iterable, Sequence
from typing import Final

from engine.book.errors import GavelError

# == grades ================================================================================================
# The seed's scale (HomeworkRecord.score_choices): name -> score.
GRADES: Final[dict[str, int]] = {
    "A+": 100,
    "A": 90,
    "B+": 85,
    "B": 80,
    "B-": 70,
    "C+": 60,
    "C": 50,
    "C-": 40,
    "D": -1,
    "N/A": 0,
    "COPY": -100,
}
# C- (40) is the lowest pass; D, N/A (not gradable) and COPY fail.
PASSING_GRADES: Final[frozenset[str]] = frozenset(name for name, score in GRADES.items() if score >= 40)
COPY: Final = "COPY"


class InvalidGrade(GavelError):
    code = "INVALID_GRADE"


class IllegalDegreeTransition(GavelError):
    code = "ENROLMENT_STATE"


class RegistrationRequired(GavelError):
    code = "REGISTRATION_REQUIRED"


class ModuleAlreadyOpen(GavelError):
    code = "MODULE_ALREADY_OPEN"


class EnrolmentNotActive(GavelError):
    code = "ENROLMENT_NOT_ACTIVE"


class PreviousModuleNotDone(GavelError):
    code = "PREVIOUS_MODULE_NOT_DONE"


class ModuleNotFound(GavelError):
    code = "NOT_FOUND"


def passes(grade: str) -> bool:
    """Whether `grade` passes the homework; InvalidGrade for a name outside the scale."""
    if grade not in GRADES:
        raise InvalidGrade(f"grade must be one of {', '.join(GRADES)}")
    return grade in PASSING_GRADES


# == the enrolment's states ================================================================================
class EnrolmentStatus(enum.StrEnum):
    NOT_STARTED = "not_started"  # 未开始: bought (and perhaps registered), no module open yet
    STUDYING = "studying"  # 在学中
    SUSPENDED = "suspended"  # 休学中
    GRADUATED = "graduated"  # 已毕业
    TIMED_OUT = "timed_out"  # 超时结业


class EnrolmentEvent(enum.StrEnum):
    OPEN_FIRST_MODULE = "open_first_module"
    SUSPEND = "suspend"
    RESUME = "resume"
    GRADUATE = "graduate"
    TIME_OUT = "time_out"


_S, _E = EnrolmentStatus, EnrolmentEvent
TRANSITIONS: Final[dict[tuple[EnrolmentStatus, EnrolmentEvent], EnrolmentStatus]] = {
    (_S.NOT_STARTED, _E.OPEN_FIRST_MODULE): _S.STUDYING,
    (_S.STUDYING, _E.SUSPEND): _S.SUSPENDED,
    (_S.SUSPENDED, _E.RESUME): _S.STUDYING,
    (_S.STUDYING, _E.GRADUATE): _S.GRADUATED,
    # Validity runs on while suspended (the seed counts two calendar years), so both time out.
    (_S.STUDYING, _E.TIME_OUT): _S.TIMED_OUT,
    (_S.SUSPENDED, _E.TIME_OUT): _S.TIMED_OUT,
}


def next_status(status: str, event: EnrolmentEvent) -> EnrolmentStatus:
    """The state after `event`; IllegalDegreeTransition when the table has no such move."""
    try:
        return TRANSITIONS[(EnrolmentStatus(status), event)]
    except (KeyError, ValueError):
        raise IllegalDegreeTransition(
            f"an enrolment that is {status} cannot {event.value.replace('_', ' ')}"
        ) from None


VALIDITY_YEARS: Final = 2  # from the first module's opening (seed: 开通第一个模块时 … 2年)


def validity(first_opened_on: datetime.date) -> tuple[datetime.date, datetime.date]:
    """The enrolment's validity: two calendar years from the day the first module opens, both ends
    included (1 Mar 2026 → 29 Feb 2028; a start on 29 Feb ends on 28 Feb)."""
    year = first_opened_on.year + VALIDITY_YEARS
    try:
        anniversary = first_opened_on.replace(year=year)
    except ValueError:  # 29 February in a year that has none
        anniversary = datetime.date(year, 3, 1)
    return first_opened_on, anniversary - datetime.timedelta(days=1)


def timed_out(valid_to: datetime.date | None, today: datetime.date) -> bool:
    """Past its last valid day (an enrolment that never started has no end and cannot time out)."""
    return valid_to is not None and today > valid_to


# == modules and their schedule ============================================================================
class ModuleStatus(enum.StrEnum):
    NOT_OPENED = "not_opened"  # 未开通
    STUDYING = "studying"  # 在学
    DONE = "done"  # 已完成


@dataclasses.dataclass(frozen=True)
class HomeworkSpec:
    homework_id: int
    chapter: int
    order: int
    recommended_days: int
    scholarship_value: int
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class ScheduleEntry:
    homework_id: int
    recommended_date: datetime.date


def schedule(opened_on: datetime.date, homework: Sequence[HomeworkSpec]) -> list[ScheduleEntry]:
    """The module's plan (the seed's CourseSchedule): its enabled homework in chapter and homework
    order, each due `recommended_days` after the previous one's date (the first: after opening)."""
    due = opened_on
    plan = []
    for spec in sorted((h for h in homework if h.enabled), key=lambda h: (h.chapter, h.order, h.homework_id)):
        due = due + datetime.timedelta(days=spec.recommended_days)
        plan.append(ScheduleEntry(spec.homework_id, due))
    return plan


@dataclasses.dataclass(frozen=True)
class ModuleState:
    module_id: int
    order: int
    status: ModuleStatus


def check_may_open(
    status: str, modules: Sequence[ModuleState], module_id: int, *, registered: bool, by_admin: bool
) -> None:
    """Raise unless `module_id` may open now: the registration form is in, the enrolment is not
    started or studying, the module is not open yet and — for the student — every earlier module
    (smaller `order`) is done. An admin may open any module that is not open."""
    target = next((m for m in modules if m.module_id == module_id), None)
    if target is None:
        raise ModuleNotFound(f"module {module_id} is not part of this degree")
    if not registered:
        raise RegistrationRequired("fill in the registration form first")
    if status not in (EnrolmentStatus.NOT_STARTED, EnrolmentStatus.STUDYING):
        raise EnrolmentNotActive(f"the enrolment is {status}")
    if target.status is not ModuleStatus.NOT_OPENED:
        raise ModuleAlreadyOpen(f"module {module_id} is already {target.status.value}")
    if not by_admin and any(m.order < target.order and m.status is not ModuleStatus.DONE for m in modules):
        raise PreviousModuleNotDone("finish the earlier modules first")


def module_done(enabled_homework_ids: Iterable[int], passed_homework_ids: Iterable[int]) -> bool:
    """Every enabled homework of the module passed (a module without homework is done once open)."""
    return set(enabled_homework_ids) <= set(passed_homework_ids)


def graduation_due(modules: Sequence[ModuleState]) -> bool:
    return bool(modules) and all(m.status is ModuleStatus.DONE for m in modules)


# == rewards ===============================================================================================
class RewardStatus(enum.StrEnum):
    """The seed's six reward states of a homework record (HomeworkRecord.reward_status)."""

    NEW = "new"  # 0 新提交: handed in, not graded yet, timeliness not judged
    ON_TIME = "on_time"  # 1 按时提交: handed in on or before its recommended date
    LATE = "late"  # 2 未按时提交: handed in after it
    REWARDED = "rewarded"  # 3 成绩已奖励: passed on time; its scholarship is credited
    PENALISED = "penalised"  # 4 成绩已处罚: failed, late or copied; the mentor fee is reduced
    MISSED = "missed"  # 5 未作按时检测: the date passed with nothing handed in


def ungraded_fields() -> dict[str, object]:
    """A homework record's grading and reward fields before its first grading (a new record, and
    the sweep's MISSED one): nothing earned, nothing penalised, nothing forfeited."""
    return {
        "grade": None,
        "score": None,
        "comment": "",
        "graded_at": None,
        "graded_by": None,
        "graded_submission": None,
        "gradings": [],
        "rewarded": False,
        "penalised": False,
        "forfeited": False,
        "scholarship_awarded": 0,
        "penalty_total": 0,
    }


def timeliness(handed_in_on: datetime.date, recommended_date: datetime.date | None) -> RewardStatus:
    """ON_TIME on or before the recommended date (or when there is none), else LATE."""
    if recommended_date is None or handed_in_on <= recommended_date:
        return RewardStatus.ON_TIME
    return RewardStatus.LATE


@dataclasses.dataclass(frozen=True)
class DegreeMoney:
    """The enrolment's money an outcome must respect."""

    total_scholarship: int
    awarded_so_far: int
    mentor_fee: int
    mentor_fee_balance: int

    @property
    def scholarship_left(self) -> int:
        return max(0, self.total_scholarship - self.awarded_so_far)


@dataclasses.dataclass(frozen=True)
class GradeOutcome:
    status: str  # "passed" | "failed"
    reward_status: RewardStatus
    scholarship: int  # to credit the student now
    mentor_penalty: int  # to take off the enrolment's mentor-fee balance now
    forfeited: bool  # COPY: this homework can never earn a scholarship again


def mentor_penalty(scholarship_value: int, money: DegreeMoney) -> int:
    """The homework's share of the mentor fee (fee × value ÷ total scholarship, rounded down), never
    more than what is left of the fee. The seed takes every penalty off the mentor's fee for the
    student (导师费用余额: 每有惩罚,需在此字段同时扣除); it leaves the amount open, so each homework
    carries the share of the fee that its share of the scholarship is."""
    if money.total_scholarship <= 0 or scholarship_value <= 0:
        return 0
    share = money.mentor_fee * scholarship_value // money.total_scholarship
    return max(0, min(share, money.mentor_fee_balance))


def grade_outcome(
    grade: str,
    *,
    handed_in_on: datetime.date,
    recommended_date: datetime.date | None,
    scholarship_value: int,
    money: DegreeMoney,
    already_rewarded: bool,
    already_penalised: bool,
    forfeited: bool,
) -> GradeOutcome:
    """What grading a hand-in decides. A record earns its scholarship at most once and costs the
    mentor at most once in its life (the `already_*` flags come from the record), so a retried or
    repeated grading moves no money twice."""
    passed = passes(grade)
    status = "passed" if passed else "failed"
    if already_rewarded:
        return GradeOutcome(status, RewardStatus.REWARDED, 0, 0, forfeited)
    penalty = 0 if already_penalised else mentor_penalty(scholarship_value, money)
    if grade == COPY:
        return GradeOutcome(status, RewardStatus.PENALISED, 0, penalty, True)
    on_time = timeliness(handed_in_on, recommended_date) is RewardStatus.ON_TIME
    if passed and on_time and not forfeited:
        return GradeOutcome(
            status, RewardStatus.REWARDED, min(scholarship_value, money.scholarship_left), 0, False
        )
    if passed and on_time:  # a copied homework redone on time: passes, earns nothing, costs nothing more
        return GradeOutcome(status, RewardStatus.PENALISED, 0, 0, True)
    return GradeOutcome(status, RewardStatus.PENALISED, 0, penalty, forfeited)


@dataclasses.dataclass(frozen=True)
class Tier:
    time_percent: int
    value: int


def used_percent(valid_from: datetime.date, finished_on: datetime.date, period_days: int) -> int:
    """The share of the suggested period used, in whole percent rounded up (day one counts)."""
    days = (finished_on - valid_from).days + 1
    return -(-days * 100 // max(1, period_days))


def graduation_award(
    tiers: Sequence[Tier],
    *,
    valid_from: datetime.date,
    graduated_on: datetime.date,
    period_days: int,
    money: DegreeMoney,
) -> int:
    """The seed's scholarship tiers (奖励档位: time percent → value) at graduation: the tier with the
    smallest time_percent that is at least the share of the suggested period used; none when the
    student took longer than the largest tier. Never more than what is left of the total."""
    used = used_percent(valid_from, graduated_on, period_days)
    reached = sorted((t for t in tiers if t.time_percent >= used), key=lambda t: t.time_percent)
    if not reached:
        return 0
    return min(reached[0].value, money.scholarship_left)


# == the schedule's checks ================================================================================
def missed(entries: Sequence[ScheduleEntry], handed_in: set[int], today: datetime.date) -> list[int]:
    """Homework whose recommended date is before `today` and that was never handed in."""
    return [e.homework_id for e in entries if e.recommended_date < today and e.homework_id not in handed_in]


def behind_schedule(
    entries: Sequence[ScheduleEntry], handed_in: set[int], passed: set[int], today: datetime.date
) -> int:
    """How many planned homework are past their date and not passed (the cohort overview's figure).
    `handed_in` is kept in the signature for symmetry with `missed`; a hand-in waiting for its
    grade still counts as behind until it passes."""
    del handed_in
    return sum(1 for e in entries if e.recommended_date < today and e.homework_id not in passed)
