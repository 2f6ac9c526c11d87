"""The ports of the mentoring service (shop/degree_mentoring.py): what it loads and the guarded
writes it asks for. persistence/shop/degree_mentoring.py implements them on MongoDB (grading and
graduation in one transaction each); tests/shop/test_degree_mentoring.py in memory."""

import dataclasses
import datetime
from typing import Literal, Protocol

from shop.model import Record

Applied = Literal["applied", "lost", "stale"]


@dataclasses.dataclass(frozen=True)
class Grading:
    """One grading's writes. The record update is guarded (still "submitted", this submission the
    latest, not graded yet: else "lost"); the enrolment's money is guarded by the amounts the
    decision read (else "stale": decide again)."""

    record_id: int
    submission: int
    record_set: Record  # fields to $set on the record
    entry: Record  # pushed to the record's `gradings`
    enrolment_id: str
    user_id: int
    expect_awarded: int
    expect_fee_balance: int
    scholarship: int  # credited with ref degree_award:{record_id}
    penalty: int  # off mentor_fee_balance, ledger _id mentor_penalty:{record_id}
    penalty_entry: Record | None
    now: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Graduation:
    enrolment_id: str
    user_id: int
    expect_awarded: int
    award: int  # credited with ref degree_graduation:{enrolment_id}
    now: datetime.datetime


class MentoringStore(Protocol):
    # -- mentors ------------------------------------------------------------------------------------
    async def mentor(self, user_id: int) -> Record | None: ...

    async def put_mentor(self, user_id: int, name: str, intro: str, now: datetime.datetime) -> Record:
        """Create or re-activate (name and intro replaced)."""
        ...

    async def deactivate_mentor(self, user_id: int) -> Record | None: ...

    async def mentors(self, active_only: bool) -> list[Record]: ...

    async def user_names(self, user_ids: list[int]) -> dict[int, str]:
        """Display name (else username) of each user that exists."""
        ...

    # -- enrolments and modules ----------------------------------------------------------------------
    async def enrolment(self, enrolment_id: str) -> Record | None: ...

    async def set_mentor(
        self, enrolment_id: str, mentor_id: int, now: datetime.datetime
    ) -> Record | None: ...

    async def enrolments(
        self, *, mentor_id: int | None = None, degree_course_id: int | None = None, status: str | None = None
    ) -> list[Record]: ...

    async def study_records(self, enrolment_id: str) -> list[Record]: ...

    async def finish_module(self, study_record_id: str, now: datetime.datetime) -> bool:
        """studying -> done (+done_at), conditional."""
        ...

    async def time_out(self, enrolment_id: str, expect_status: str, now: datetime.datetime) -> bool: ...

    async def graduate(self, graduation: Graduation) -> Applied:
        """studying -> graduated with the award, the award credited once; "lost" when no longer
        studying, "stale" when scholarship_awarded moved."""
        ...

    # -- homework --------------------------------------------------------------------------------------
    async def homework(self, homework_id: int) -> Record | None: ...

    async def homework_of(self, module_id: int) -> list[Record]: ...

    async def record(self, record_id: int) -> Record | None: ...

    async def records(self, enrolment_ids: list[str], status: str | None = None) -> list[Record]:
        """Homework records of those enrolments, oldest hand-in first."""
        ...

    async def apply_grading(self, grading: Grading) -> Applied: ...

    async def add_missed(self, record: Record) -> bool:
        """Insert a MISSED record unless one exists for (enrolment_id, homework_id)."""
        ...

    # -- follow-ups and files -----------------------------------------------------------------------------
    async def add_followup(self, followup: Record) -> Record: ...

    async def followups(self, enrolment_id: str) -> list[Record]: ...

    async def put_file(self, data: bytes, metadata: Record) -> str:
        """Store the bytes (GridFS bucket degree_files); the file's id."""
        ...
