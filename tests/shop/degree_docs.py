"""Documents of the degree path in the shapes it writes, for tests that need CORE's enrolments, study
records, homework and hand-ins without CORE's code (the mentoring tests insert them directly)."""

import datetime
from typing import Any

Doc = dict[str, Any]
UTC = datetime.UTC


def day(text: str) -> datetime.datetime:
    """A schedule date as stored: 00:00 UTC of that day."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def enrolment(
    user_id: int,
    degree_id: int = 1,
    *,
    mentor_id: int | None = None,
    status: str = "studying",
    total: int = 40000,
    fee: int = 15000,
    awarded: int = 0,
    fee_balance: int | None = None,
    valid_from: str = "2026-01-01",
    valid_to: str = "2027-12-31",
    period_days: int = 100,
    tiers: list[Doc] | None = None,
) -> Doc:
    return {
        "_id": f"{user_id}:{degree_id}",
        "user_id": user_id,
        "degree_course_id": degree_id,
        "degree_name": "Data Science",
        "order_no": f"D{user_id}",
        "status": status,
        "created_at": day(valid_from),
        "registration": {"company": "ACME", "open_first_module": True, "preferred_mentor_id": None},
        "mentor_id": mentor_id,
        "valid_from": day(valid_from),
        "valid_to": day(valid_to),
        "period_days": period_days,
        "total_scholarship": total,
        "scholarship_awarded": awarded,
        "mentor_fee": fee,
        "mentor_fee_balance": fee if fee_balance is None else fee_balance,
        "scholarship_tiers": tiers if tiers is not None else [],
        "graduated_at": None,
        "graduation_award": 0,
        "updated_at": day(valid_from),
    }


def study(
    enrolment_doc: Doc,
    module_id: int,
    *,
    order: int = 1,
    status: str = "studying",
    schedule: list[Doc] | None = None,
) -> Doc:
    return {
        "_id": f"{enrolment_doc['_id']}:{module_id}",
        "enrolment_id": enrolment_doc["_id"],
        "user_id": enrolment_doc["user_id"],
        "degree_course_id": enrolment_doc["degree_course_id"],
        "module_id": module_id,
        "module_name": f"Module {module_id}",
        "order": order,
        "status": status,
        "opened_at": enrolment_doc["valid_from"] if status != "not_opened" else None,
        "done_at": None,
        "schedule": schedule or [],
    }


def homework(
    homework_id: int, module_id: int, *, value: int = 2000, enabled: bool = True, days: int = 7
) -> Doc:
    return {
        "_id": homework_id,
        "course_id": module_id,
        "chapter_id": 1,
        "chapter": 1,
        "order": homework_id,
        "title": f"Homework {homework_id}",
        "kind": "assignment",
        "requirement": "Do it",
        "scoring_points": "All of it",
        "recommended_days": days,
        "scholarship_value": value,
        "enabled": enabled,
        "created_at": day("2026-01-01"),
    }


def hand_in(
    record_id: int,
    enrolment_doc: Doc,
    module_id: int,
    homework_id: int,
    *,
    handed_in: str,
    recommended: str | None,
    submit_count: int = 1,
) -> Doc:
    at = day(handed_in) + datetime.timedelta(hours=10)
    return {
        "_id": record_id,
        "enrolment_id": enrolment_doc["_id"],
        "user_id": enrolment_doc["user_id"],
        "degree_course_id": enrolment_doc["degree_course_id"],
        "module_id": module_id,
        "homework_id": homework_id,
        "homework_title": f"Homework {homework_id}",
        "mentor_id": enrolment_doc["mentor_id"],
        "recommended_date": None if recommended is None else day(recommended),
        "status": "submitted",
        "reward_status": "new",
        "submit_count": submit_count,
        "submissions": [
            {"n": n, "text": f"try {n}", "files": [], "at": at} for n in range(1, submit_count + 1)
        ],
        "handed_in_at": at,
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


def resubmit(record: Doc, handed_in: str) -> Doc:
    """CORE's hand-in again: count up, status submitted, reward status new."""
    at = day(handed_in) + datetime.timedelta(hours=10)
    n = int(record["submit_count"]) + 1
    return {
        **record,
        "status": "submitted",
        "reward_status": "new",
        "submit_count": n,
        "submissions": [*record["submissions"], {"n": n, "text": f"try {n}", "files": [], "at": at}],
        "handed_in_at": at,
    }
