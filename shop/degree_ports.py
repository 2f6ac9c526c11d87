"""The ports of the degree path's student side (shop/degree_service.py): what it loads and stores.

Adapters only store: every write that must not happen twice is conditional (a guard in the filter)
and answers whether it happened, so the service decides on what the winner wrote. Implemented on
MongoDB and GridFS by persistence/shop/degree.py, in memory by tests/shop/degree_fakes.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Protocol

from shop.model import Record


class DegreeStore(Protocol):
    # == the catalogue (read only here) ===================================================================
    async def degree(self, degree_course_id: int) -> Record | None:
        """A `shop_degree_courses` record."""
        ...

    async def modules(self, degree_course_id: int) -> list[Record]:
        """The degree's modules (`shop_courses` of course_type "degree" naming it, listed or not),
        by `order` (absent: after those with one) then `_id`."""
        ...

    async def course(self, course_id: int) -> Record | None: ...

    async def chapter(self, chapter_id: int) -> Record | None: ...

    # == enrolments (created by the BUY part at payment) ==================================================
    async def enrolment(self, enrolment_id: str) -> Record | None: ...

    async def enrolments_of(self, user_id: int) -> list[Record]:
        """The user's degree enrolments, newest first."""
        ...

    async def set_registration(self, enrolment_id: str, registration: Record, now: datetime.datetime) -> bool:
        """Store the form if none is stored yet; whether this call stored it."""
        ...

    async def set_mentor_if_none(self, enrolment_id: str, mentor_id: int, now: datetime.datetime) -> bool: ...

    async def start(
        self,
        enrolment_id: str,
        valid_from: datetime.datetime,
        valid_to: datetime.datetime,
        now: datetime.datetime,
    ) -> bool:
        """not_started -> studying with its validity; False when it was not (or no longer) not_started."""
        ...

    async def move_status(
        self, enrolment_id: str, from_status: str, to_status: str, now: datetime.datetime
    ) -> Record | None:
        """`from_status` -> `to_status` if still `from_status`; the enrolment after, or None."""
        ...

    # == study records ====================================================================================
    async def add_study_records(self, records: Iterable[Record]) -> None:
        """Insert those whose `_id` is not stored yet (a repeat changes nothing)."""
        ...

    async def study_records(self, enrolment_id: str) -> list[Record]: ...

    async def open_study_record(
        self, record_id: str, opened_at: datetime.datetime, schedule: list[Record]
    ) -> bool:
        """not_opened -> studying with its schedule; False when another open won."""
        ...

    # == homework =========================================================================================
    async def add_homework(self, homework: Record) -> Record:
        """Stored under a new integer `_id`."""
        ...

    async def update_homework(self, homework_id: int, changes: Record) -> Record | None: ...

    async def homework(self, homework_id: int) -> Record | None: ...

    async def homework_of(self, course_ids: Iterable[int]) -> list[Record]:
        """Every homework of those modules, by chapter, order and `_id`."""
        ...

    # == homework records =================================================================================
    async def homework_record(self, enrolment_id: str, homework_id: int) -> Record | None: ...

    async def homework_records(self, enrolment_id: str) -> list[Record]: ...

    async def insert_homework_record(self, record: Record) -> Record:
        """A new record under a new integer `_id`; Duplicate when (enrolment, homework) has one."""
        ...

    async def add_submission(
        self, record_id: int, expected_count: int, submission: Record, changes: Record
    ) -> Record | None:
        """Push `submission`, set `changes` and count it, if the record is not passed and still has
        `expected_count` submissions; the record after, or None when it changed meanwhile."""
        ...

    # == mentors, users ===================================================================================
    async def mentor(self, user_id: int) -> Record | None: ...

    async def active_mentors(self) -> list[Record]: ...

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]: ...

    # == degree reviews ===================================================================================
    async def add_review(self, review: Record) -> Record:
        """A new review under a new integer `_id`; Duplicate when the student reviewed this target."""
        ...

    async def reviews(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool, skip: int, limit: int
    ) -> tuple[list[Record], int]:
        """Visible reviews of the degree (every target, or only `module_id`, None = the whole
        degree), newest first, and how many there are."""
        ...

    async def review_sums(
        self, degree_course_id: int, module_id: int | None, *, all_targets: bool
    ) -> Mapping[str, int]:
        """`count` and the integer score sums of the same visible reviews."""
        ...


class FileStore(Protocol):
    """Hand-in attachments (GridFS bucket `degree_files` on MongoDB)."""

    async def put(self, data: bytes, metadata: Record) -> str:
        """Store the bytes; the file's id (24 hex digits)."""
        ...

    async def get(self, file_id: str) -> tuple[Record, bytes] | None:
        """(metadata, bytes), or None when there is no such file."""
        ...

    async def delete(self, file_id: str) -> None: ...
