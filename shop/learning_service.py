"""`LearningService`: what a student does with a course they may study (docs/shop.md "Learning").

The outline with what is locked and done, a section's content through a signed short-lived link,
progress, "my courses", and the sweeper that marks ended enrolments expired. The rules are in
shop/learning.py; the `LearningStore` port only loads and saves (persistence/shop/learning.py on
MongoDB, tests/shop/test_learning.py in memory).
"""

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from engine.book.errors import NotFound
from shop.learning import (
    ANONYMOUS,
    CONTENT_LINK_SECONDS,
    ContentLinkExpired,
    ContentLinkInvalid,
    EnrolmentExpired,
    EnrolmentRequired,
    locked,
    playable_link,
    read_content_token,
    section_access,
    shown_status,
    sign_content_token,
)
from shop.model import LISTED_STATUSES, Record, to_ms

log = logging.getLogger("gavel.shop")


class LearningStore(Protocol):
    async def course(self, course_id: int) -> Record | None:
        """The course whatever its status (enrolled students keep an offline course)."""
        ...

    async def chapters(self, course_id: int) -> list[Record]:
        """Chapters in order, each with `sections` in order; NotFound unless the course is listed."""
        ...

    async def section(self, section_id: int) -> Record | None: ...

    async def section_ids(self, course_ids: Iterable[int]) -> dict[int, list[int]]:
        """Each course's current section ids."""
        ...

    async def enrolment(self, user_id: int, course_id: int) -> Record | None:
        """The user's enrolment in the course (the one ending last, if older records hold two)."""
        ...

    async def enrolments(self, user_id: int) -> list[Record]: ...

    async def done_sections(self, user_id: int, course_ids: Iterable[int]) -> set[int]:
        """The sections of those courses the user marked done."""
        ...

    async def set_done(
        self, user_id: int, course_id: int, section_id: int, done: bool, now: datetime.datetime
    ) -> None:
        """One record per user and section (unique): writing the same value again changes nothing."""
        ...

    async def expire_enrolments(self, now: datetime.datetime) -> int:
        """Valid enrolments whose end has come -> expired (conditional update); how many."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class SectionContent:
    section: Record
    token: str | None  # None when the section has no playable link (yet)
    expires_at: datetime.datetime | None


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _listed(course: Record | None) -> bool:
    return course is not None and course.get("status") in LISTED_STATUSES


def progress_of(section_ids: list[int], done: set[int]) -> Record:
    return {"done": sum(1 for s in section_ids if s in done), "total": len(section_ids)}


def enrolment_summary(enrolment: Record | None, now: datetime.datetime) -> Record | None:
    if enrolment is None:
        return None
    return {
        "status": shown_status(enrolment, now),
        "valid_from_ms": to_ms(enrolment["valid_from"]),
        "valid_to_ms": to_ms(enrolment["valid_to"]),
    }


class LearningService:
    """`key` signs the content links (shop.learning.content_key); `now` is injectable."""

    def __init__(
        self,
        store: LearningStore,
        key: bytes,
        *,
        now: Callable[[], datetime.datetime] = _utc_now,
        link_seconds: int = CONTENT_LINK_SECONDS,
    ) -> None:
        self.store = store
        self.key = key
        self.now = now
        self.link_seconds = link_seconds

    async def _enrolment(self, user_id: int | None, course_id: int) -> Record | None:
        if user_id is None or user_id == ANONYMOUS:
            return None
        return await self.store.enrolment(user_id, course_id)

    # == the outline ==================================================================================
    async def chapters(self, course_id: int, user_id: int | None) -> list[Record]:
        """The outline for this caller: every section `locked` or not, `done` when signed in, and
        never its link (content goes through `open_section`)."""
        chapters = await self.store.chapters(course_id)
        enrolment = await self._enrolment(user_id, course_id)
        done = await self.store.done_sections(user_id, [course_id]) if user_id else set()
        now = self.now()
        for chapter in chapters:
            for section in chapter["sections"]:
                section["locked"] = locked(section, True, enrolment, now)
                if user_id:
                    section["done"] = int(section["_id"]) in done
                section.pop("link", None)
        return chapters

    async def course_status(self, course_id: int, user_id: int) -> Record:
        """The course page's `my` block: enrolment (or None) and progress."""
        enrolment = await self.store.enrolment(user_id, course_id)
        sections = (await self.store.section_ids([course_id])).get(course_id, [])
        done = await self.store.done_sections(user_id, [course_id])
        return {
            "enrolment": enrolment_summary(enrolment, self.now()),
            "progress": progress_of(sections, done),
        }

    # == content ======================================================================================
    async def _accessible(self, user_id: int | None, section_id: int) -> tuple[Record, Record | None]:
        """The section and its course, provided the caller may open it now (else 403 codes)."""
        section = await self.store.section(section_id)
        if section is None:
            raise NotFound(f"no section {section_id}")
        course_id = int(section["course_id"])
        course = await self.store.course(course_id)
        if course is None:
            raise NotFound(f"no section {section_id}")
        section_access(section, _listed(course), await self._enrolment(user_id, course_id), self.now())
        return section, course

    async def open_section(self, user_id: int | None, section_id: int) -> SectionContent:
        """The section's content for this caller: a link of ours, signed for `link_seconds`."""
        section, _course = await self._accessible(user_id, section_id)
        if playable_link(section.get("link")) is None:
            return SectionContent(section, None, None)
        expires_at = self.now() + datetime.timedelta(seconds=self.link_seconds)
        token = sign_content_token(self.key, section_id, user_id or ANONYMOUS, to_ms(expires_at))
        return SectionContent(section, token, expires_at)

    async def redeem(self, token: str) -> str:
        """The real link a valid token stands for. Access is checked again (an enrolment ended
        within the link's minutes ends it too)."""
        grant = read_content_token(self.key, token, to_ms(self.now()))
        try:
            section, _course = await self._accessible(grant.user_id, grant.section_id)
        except (NotFound, EnrolmentRequired) as exc:
            raise ContentLinkInvalid(f"this content link is no longer valid: {exc.message}") from None
        except EnrolmentExpired:
            # Asking for the section again then says why (ENROLMENT_EXPIRED).
            raise ContentLinkExpired("this content link has expired; open the section again") from None
        link = playable_link(section.get("link"))
        if link is None:
            raise ContentLinkInvalid("this section has no content")
        return link

    # == progress =====================================================================================
    async def set_progress(self, user_id: int, section_id: int, done: bool) -> Record:
        """Mark a section done (or not) for a student who may open it; idempotent."""
        section, _course = await self._accessible(user_id, section_id)
        course_id = int(section["course_id"])
        await self.store.set_done(user_id, course_id, section_id, done, self.now())
        sections = (await self.store.section_ids([course_id])).get(course_id, [])
        marked = await self.store.done_sections(user_id, [course_id])
        return {"section_id": section_id, "done": done, "progress": progress_of(sections, marked)}

    # == my courses ===================================================================================
    async def my_enrolments(self, user_id: int) -> list[Record]:
        """The student's enrolments, valid first then by end (latest first), each with its course
        (`course`, None if deleted), shown `status` and `progress`."""
        enrolments = await self.store.enrolments(user_id)
        course_ids = sorted({int(e["course_id"]) for e in enrolments})
        sections = await self.store.section_ids(course_ids)
        done = await self.store.done_sections(user_id, course_ids)
        now = self.now()
        items = []
        for enrolment in enrolments:
            course_id = int(enrolment["course_id"])
            items.append(
                {
                    **enrolment,
                    "course": await self.store.course(course_id),
                    "status": shown_status(enrolment, now),
                    "progress": progress_of(sections.get(course_id, []), done),
                }
            )
        items.sort(key=lambda e: (e["status"] != "valid", -to_ms(e["valid_to"]), str(e["_id"])))
        return items

    # == expiry =======================================================================================
    async def expire_enrolments(self, now: datetime.datetime) -> int:
        return await self.store.expire_enrolments(now)


async def run_enrolment_sweeper(learning: LearningService, *, interval_seconds: float = 60.0) -> None:
    """Mark ended enrolments expired every `interval_seconds` until cancelled (errors are logged and
    the loop goes on). Access never waits for it: the rules compare valid_to with the time."""
    while True:
        try:
            expired = await learning.expire_enrolments(learning.now())
            if expired:
                log.info("%d enrolment(s) expired", expired)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("enrolment sweeper pass failed")
        await asyncio.sleep(interval_seconds)
