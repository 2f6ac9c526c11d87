"""The degree path's pure rules (shop/degree_rules.py), with the worked examples of docs/degree.md."""

import datetime

import pytest

from shop import degree_rules as rules
from shop.degree_rules import (
    DegreeMoney,
    EnrolmentEvent,
    EnrolmentStatus,
    HomeworkSpec,
    ModuleState,
    ModuleStatus,
    RewardStatus,
    ScheduleEntry,
    Tier,
)

D = datetime.date
MONEY = DegreeMoney(total_scholarship=40_000, awarded_so_far=0, mentor_fee=15_000, mentor_fee_balance=15_000)


# == grades ================================================================================================
def test_the_scale_passes_from_c_minus_up() -> None:
    assert [g for g in rules.GRADES if rules.passes(g)] == ["A+", "A", "B+", "B", "B-", "C+", "C", "C-"]
    assert not rules.passes("D") and not rules.passes("N/A") and not rules.passes("COPY")


@pytest.mark.parametrize("grade", ["a+", "E", "", "100"])
def test_a_grade_outside_the_scale_is_refused(grade: str) -> None:
    with pytest.raises(rules.InvalidGrade) as caught:
        rules.passes(grade)
    assert caught.value.code == "INVALID_GRADE"


# == states ================================================================================================
def test_the_enrolment_moves_only_along_the_table() -> None:
    S, E = EnrolmentStatus, EnrolmentEvent
    assert rules.next_status("not_started", E.OPEN_FIRST_MODULE) is S.STUDYING
    assert rules.next_status("studying", E.SUSPEND) is S.SUSPENDED
    assert rules.next_status("suspended", E.RESUME) is S.STUDYING
    assert rules.next_status("studying", E.GRADUATE) is S.GRADUATED
    assert rules.next_status("suspended", E.TIME_OUT) is S.TIMED_OUT
    for status in S:
        for event in E:
            if (status, event) not in rules.TRANSITIONS:
                with pytest.raises(rules.IllegalDegreeTransition) as caught:
                    rules.next_status(status, event)
                assert caught.value.code == "ENROLMENT_STATE"


def test_an_unknown_status_is_an_illegal_move_not_a_crash() -> None:
    with pytest.raises(rules.IllegalDegreeTransition):
        rules.next_status("refunded", EnrolmentEvent.RESUME)


def test_validity_is_two_years_from_the_first_module_both_ends_included() -> None:
    assert rules.validity(D(2026, 3, 1)) == (D(2026, 3, 1), D(2028, 2, 29))
    assert rules.validity(D(2026, 12, 6)) == (D(2026, 12, 6), D(2028, 12, 5))
    assert rules.validity(D(2028, 2, 29)) == (D(2028, 2, 29), D(2030, 2, 28))
    assert not rules.timed_out(D(2028, 2, 29), D(2028, 2, 29))
    assert rules.timed_out(D(2028, 2, 29), D(2028, 3, 1))
    assert not rules.timed_out(None, D(2099, 1, 1))  # never started: no end


# == modules and schedule ==================================================================================
def test_the_schedule_adds_each_recommended_period_to_the_previous_date() -> None:
    homework = [
        HomeworkSpec(homework_id=12, chapter=2, order=1, recommended_days=5, scholarship_value=3000),
        HomeworkSpec(homework_id=10, chapter=1, order=2, recommended_days=4, scholarship_value=2000),
        HomeworkSpec(homework_id=11, chapter=1, order=1, recommended_days=7, scholarship_value=2000),
        HomeworkSpec(
            homework_id=13, chapter=2, order=2, recommended_days=9, scholarship_value=0, enabled=False
        ),
    ]
    assert rules.schedule(D(2026, 12, 1), homework) == [
        ScheduleEntry(11, D(2026, 12, 8)),
        ScheduleEntry(10, D(2026, 12, 12)),
        ScheduleEntry(12, D(2026, 12, 17)),
    ]


def _modules(*statuses: ModuleStatus) -> list[ModuleState]:
    return [ModuleState(module_id=100 + i, order=i, status=s) for i, s in enumerate(statuses)]


def test_a_student_opens_the_next_module_only_when_the_earlier_ones_are_done() -> None:
    modules = _modules(ModuleStatus.STUDYING, ModuleStatus.NOT_OPENED)
    with pytest.raises(rules.PreviousModuleNotDone):
        rules.check_may_open("studying", modules, 101, registered=True, by_admin=False)
    rules.check_may_open("studying", modules, 101, registered=True, by_admin=True)  # an admin may
    done = _modules(ModuleStatus.DONE, ModuleStatus.NOT_OPENED)
    rules.check_may_open("studying", done, 101, registered=True, by_admin=False)


@pytest.mark.parametrize(
    ("status", "module_id", "registered", "error"),
    [
        ("not_started", 100, False, rules.RegistrationRequired),
        ("suspended", 100, True, rules.EnrolmentNotActive),
        ("graduated", 100, True, rules.EnrolmentNotActive),
        ("timed_out", 100, True, rules.EnrolmentNotActive),
        ("not_started", 999, True, rules.ModuleNotFound),
    ],
)
def test_opening_is_refused_with_its_reason(
    status: str, module_id: int, registered: bool, error: type[Exception]
) -> None:
    with pytest.raises(error):
        rules.check_may_open(
            status, _modules(ModuleStatus.NOT_OPENED), module_id, registered=registered, by_admin=True
        )


def test_an_open_module_does_not_open_twice() -> None:
    with pytest.raises(rules.ModuleAlreadyOpen) as caught:
        rules.check_may_open("studying", _modules(ModuleStatus.STUDYING), 100, registered=True, by_admin=True)
    assert caught.value.code == "MODULE_ALREADY_OPEN"


def test_a_module_is_done_when_every_enabled_homework_passed_and_the_degree_when_every_module_is() -> None:
    assert rules.module_done([1, 2], [2, 1, 7])
    assert not rules.module_done([1, 2], [1])
    assert rules.module_done([], [])
    assert rules.graduation_due(_modules(ModuleStatus.DONE, ModuleStatus.DONE))
    assert not rules.graduation_due(_modules(ModuleStatus.DONE, ModuleStatus.STUDYING))
    assert not rules.graduation_due([])


# == rewards ===============================================================================================
def test_timeliness_counts_the_recommended_day_itself_as_on_time() -> None:
    assert rules.timeliness(D(2026, 12, 8), D(2026, 12, 8)) is RewardStatus.ON_TIME
    assert rules.timeliness(D(2026, 12, 9), D(2026, 12, 8)) is RewardStatus.LATE
    assert rules.timeliness(D(2030, 1, 1), None) is RewardStatus.ON_TIME


def _grade(
    grade: str, handed_in: datetime.date, money: DegreeMoney = MONEY, **flags: bool
) -> rules.GradeOutcome:
    return rules.grade_outcome(
        grade,
        handed_in_on=handed_in,
        recommended_date=D(2026, 12, 8),
        scholarship_value=2000,
        money=money,
        already_rewarded=flags.get("already_rewarded", False),
        already_penalised=flags.get("already_penalised", False),
        forfeited=flags.get("forfeited", False),
    )


def test_worked_example_a_pass_on_time_earns_the_homework_value() -> None:
    outcome = _grade("B+", D(2026, 12, 8))
    assert outcome == rules.GradeOutcome("passed", RewardStatus.REWARDED, 2000, 0, False)


def test_worked_example_a_late_pass_earns_nothing_and_costs_the_mentor_his_share() -> None:
    # 15 000 × 2 000 ÷ 40 000 = 750
    outcome = _grade("A", D(2026, 12, 9))
    assert outcome == rules.GradeOutcome("passed", RewardStatus.PENALISED, 0, 750, False)


def test_worked_example_a_fail_on_time_costs_the_mentor_too() -> None:
    assert _grade("D", D(2026, 12, 1)) == rules.GradeOutcome("failed", RewardStatus.PENALISED, 0, 750, False)


def test_worked_example_copy_forfeits_the_homework_for_good() -> None:
    copied = _grade("COPY", D(2026, 12, 1))
    assert copied == rules.GradeOutcome("failed", RewardStatus.PENALISED, 0, 750, True)
    redone = _grade("A+", D(2026, 12, 2), forfeited=True, already_penalised=True)
    assert redone == rules.GradeOutcome("passed", RewardStatus.PENALISED, 0, 0, True)


def test_a_homework_is_penalised_once_and_rewarded_once_in_its_life() -> None:
    again = _grade("D", D(2026, 12, 10), already_penalised=True)
    assert (again.reward_status, again.mentor_penalty) == (RewardStatus.PENALISED, 0)
    after_pass = _grade("A", D(2026, 12, 1), already_penalised=True)
    assert (after_pass.scholarship, after_pass.mentor_penalty) == (2000, 0)  # failed first, passed in time
    rewarded = _grade("A", D(2026, 12, 1), already_rewarded=True)
    assert (rewarded.reward_status, rewarded.scholarship, rewarded.mentor_penalty) == (
        RewardStatus.REWARDED,
        0,
        0,
    )


def test_the_total_scholarship_is_never_exceeded() -> None:
    nearly_spent = DegreeMoney(40_000, 39_500, 15_000, 15_000)
    assert _grade("A", D(2026, 12, 1), nearly_spent).scholarship == 500
    spent = DegreeMoney(40_000, 40_000, 15_000, 15_000)
    assert _grade("A", D(2026, 12, 1), spent).scholarship == 0


def test_the_penalty_never_takes_the_fee_balance_below_zero() -> None:
    low = DegreeMoney(40_000, 0, 15_000, 300)
    assert _grade("D", D(2026, 12, 1), low).mentor_penalty == 300
    assert rules.mentor_penalty(2000, DegreeMoney(0, 0, 15_000, 15_000)) == 0  # no scholarship: no share
    assert rules.mentor_penalty(0, MONEY) == 0


def test_used_percent_rounds_up_and_counts_the_first_day() -> None:
    assert rules.used_percent(D(2026, 1, 1), D(2026, 1, 1), 150) == 1
    assert rules.used_percent(D(2026, 1, 1), D(2026, 4, 30), 150) == 80  # 120 days
    assert rules.used_percent(D(2026, 1, 1), D(2026, 5, 1), 150) == 81


TIERS = [Tier(60, 10_000), Tier(80, 6000), Tier(100, 3000)]


@pytest.mark.parametrize(
    ("graduated_on", "award"),
    [
        (D(2026, 3, 31), 10_000),  # 90 days = 60 %
        (D(2026, 4, 1), 6000),  # 91 days = 61 %
        (D(2026, 4, 30), 6000),  # 120 days = 80 %
        (D(2026, 5, 30), 3000),  # 150 days = 100 %
        (D(2026, 5, 31), 0),  # 151 days: slower than every tier
    ],
)
def test_worked_example_graduation_tiers(graduated_on: datetime.date, award: int) -> None:
    assert (
        rules.graduation_award(
            TIERS, valid_from=D(2026, 1, 1), graduated_on=graduated_on, period_days=150, money=MONEY
        )
        == award
    )


def test_the_graduation_award_is_capped_by_what_is_left() -> None:
    money = DegreeMoney(40_000, 36_000, 15_000, 15_000)
    award = rules.graduation_award(
        TIERS, valid_from=D(2026, 1, 1), graduated_on=D(2026, 2, 1), period_days=150, money=money
    )
    assert award == 4000


def test_missed_and_behind_schedule() -> None:
    plan = [
        ScheduleEntry(1, D(2026, 12, 1)),
        ScheduleEntry(2, D(2026, 12, 5)),
        ScheduleEntry(3, D(2026, 12, 9)),
    ]
    today = D(2026, 12, 6)
    assert rules.missed(plan, handed_in={2}, today=today) == [1]
    assert rules.missed(plan, handed_in=set(), today=D(2026, 12, 5)) == [1]  # the day itself is not missed
    assert rules.behind_schedule(plan, handed_in={1, 2}, passed={1}, today=today) == 1
