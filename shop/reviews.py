"""Course reviews and their agree/disagree votes: the rules, and the ports they are stored through.

- A review needs an enrolment in the course that has started (valid now, or past: an expired one
  counts; a refunded one does not), and there is one review per enrolment (unique index).
- Three integer scores 1-5 (teacher, content, clarity) and a plain text of at most 1,024
  characters (control characters removed; the API returns it as text, every surface renders it
  as text).
- Averages are exact: each course keeps integer sums of the visible reviews' scores and their
  count, changed in the same transaction as the review (insert, edit, hide, show), so at any
  commit `sum == Σ records` and `count == #records`.
- A vote is once per user per review (unique `(review, user)` record); the same vote again takes
  it back, the other vote switches; the review's counters move in the same transaction as the
  vote record.
- Admins hide/show and recommend/unrecommend; hidden reviews are never listed, recommended first.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Final, Literal, Protocol

from engine.book.errors import GavelError, InvalidInput, NotFound
from shop.model import Record, as_utc

SCORE_NAMES: Final = ("teacher", "content", "clarity")
MIN_SCORE, MAX_SCORE = 1, 5
MAX_REVIEW_TEXT = 1024
VOTES: Final = ("agree", "disagree")
# Enrolments that never gave (or no longer give) the right to review: bought back or revoked.
REVOKED_ENROLMENT_STATUSES: Final = frozenset({"refunded", "revoked", "cancelled"})

Vote = Literal["agree", "disagree"]
Moderation = Literal["hide", "show", "recommend", "unrecommend"]
MODERATIONS: Final = ("hide", "show", "recommend", "unrecommend")


class EnrolmentRequired(GavelError):
    code = "ENROLMENT_REQUIRED"


class ReviewExists(GavelError):
    code = "REVIEW_EXISTS"


# == pure rules =============================================================================================
def check_scores(scores: Mapping[str, object], *, partial: bool = False) -> dict[str, int]:
    """The three scores as integers 1-5 (a partial edit may name only some)."""
    unknown = set(scores) - set(SCORE_NAMES)
    if unknown:
        raise InvalidInput(f"unknown score(s): {', '.join(sorted(unknown))[:100]}")
    checked: dict[str, int] = {}
    for name in SCORE_NAMES:
        if name not in scores:
            if partial:
                continue
            raise InvalidInput(f"scores.{name} is required")
        value = scores[name]
        if type(value) is not int or not MIN_SCORE <= value <= MAX_SCORE:
            raise InvalidInput(f"scores.{name} must be an integer from {MIN_SCORE} to {MAX_SCORE}")
        checked[name] = value
    return checked


def clean_text(text: str) -> str:
    """Plain text: line breaks normalised, other control characters dropped, ends trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in "\n\t" or not (ch < " " or "\x7f" <= ch <= "\x9f"))
    kept = kept.strip()
    if len(kept) > MAX_REVIEW_TEXT:
        raise InvalidInput(f"text must be at most {MAX_REVIEW_TEXT} characters")
    return kept


def enrolment_counts(enrolment: Record, now: datetime.datetime) -> bool:
    """Whether an enrolment gives the right to review: started (valid now or past), not revoked."""
    if enrolment.get("status") in REVOKED_ENROLMENT_STATUSES:
        return False
    valid_from = enrolment.get("valid_from")
    return valid_from is None or as_utc(valid_from) <= now


def average(total: int, count: int) -> str | None:
    """`total / count` with one decimal, rounded half up, from integers only ("4.5"); None if empty."""
    if count <= 0:
        return None
    tenths = (total * 20 + count) // (2 * count)
    return f"{tenths // 10}.{tenths % 10}"


def averages(stats: Record | None) -> dict[str, str | int | None]:
    """The contract's `averages` of a course's sums: per score, overall (all three), and the count."""
    count = int(stats.get("count", 0)) if stats else 0
    sums = {name: int(stats.get(name, 0)) if stats else 0 for name in SCORE_NAMES}
    answer: dict[str, str | int | None] = {name: average(sums[name], count) for name in SCORE_NAMES}
    answer["overall"] = average(sum(sums.values()), count * len(SCORE_NAMES))
    answer["count"] = count
    return answer


@dataclasses.dataclass(frozen=True, slots=True)
class VoteChange:
    """A click's outcome: the user's vote after, and how the review's counters move."""

    vote: Vote | None
    agree: int
    disagree: int


def vote_change(current: str | None, clicked: Vote) -> VoteChange:
    """Once per user per review: the same vote again takes it back; the other one switches."""
    if current == clicked:
        return VoteChange(None, -1 if clicked == "agree" else 0, -1 if clicked == "disagree" else 0)
    agree = (1 if clicked == "agree" else 0) - (1 if current == "agree" else 0)
    disagree = (1 if clicked == "disagree" else 0) - (1 if current == "disagree" else 0)
    return VoteChange(clicked, agree, disagree)


def moderation_change(action: Moderation) -> tuple[str, bool]:
    """The flag an admin action sets: (field, value)."""
    if action in ("hide", "show"):
        return "hidden", action == "hide"
    return "recommended", action == "recommend"


# == ports ==================================================================================================
class ReviewRepository(Protocol):
    """Reviews, votes and per-course sums; guarded writes answer False/None when the state differs."""

    async def enrolments_of(self, user_id: int, course_id: int) -> list[Record]:
        """The user's enrolments in the course, oldest first."""
        ...

    async def reviewed_enrolments(self, user_id: int, course_id: int) -> set[str]: ...

    async def get(self, review_id: int) -> Record | None: ...

    async def add(self, review: Record) -> Record:
        """A new review (new `_id`); Duplicate when its enrolment already has one."""
        ...

    async def update(self, review_id: int, changes: Record) -> None: ...

    async def set_flag(self, review_id: int, field: str, value: bool) -> Record | None:
        """Set `field` to `value` if it is not already; the review before, or None if unchanged."""
        ...

    async def add_to_stats(self, course_id: int, count: int, sums: Mapping[str, int]) -> None:
        """Atomically add to a course's visible-review count and score sums (created if missing)."""
        ...

    async def stats(self, course_id: int) -> Record | None: ...

    async def vote_of(self, review_id: int, user_id: int) -> str | None: ...

    async def set_vote(self, review_id: int, user_id: int, vote: str | None, now: datetime.datetime) -> None:
        """Record, change or (None) delete the user's vote; Duplicate if a concurrent first vote won."""
        ...

    async def add_to_counters(self, review_id: int, agree: int, disagree: int) -> Record | None:
        """Atomically add to the review's counters; the review after."""
        ...

    async def visible(self, course_id: int, skip: int, limit: int) -> tuple[list[Record], int]:
        """Visible reviews, recommended first, then newest."""
        ...

    async def all_of(self, course_id: int) -> list[Record]:
        """Every review of a course, hidden ones too (the admin's list)."""
        ...

    async def votes_by(self, user_id: int, review_ids: Iterable[int]) -> dict[int, str]: ...

    async def author_names(self, user_ids: Iterable[int]) -> dict[int, str]: ...


# == decisions (run inside one unit of work) =================================================================
def _sums(scores: Mapping[str, int], sign: int = 1) -> dict[str, int]:
    return {name: sign * int(scores[name]) for name in SCORE_NAMES}


async def write_review(
    reviews: ReviewRepository,
    course_exists: bool,
    user_id: int,
    course_id: int,
    scores: dict[str, int],
    text: str,
    now: datetime.datetime,
) -> Record:
    """A new review on the user's first enrolment of the course that has none yet."""
    if not course_exists:
        raise NotFound(f"no course {course_id}")
    enrolments = [e for e in await reviews.enrolments_of(user_id, course_id) if enrolment_counts(e, now)]
    if not enrolments:
        raise EnrolmentRequired("only students enrolled in this course may review it")
    reviewed = await reviews.reviewed_enrolments(user_id, course_id)
    free = [e for e in enrolments if str(e["_id"]) not in reviewed]
    if not free:
        raise ReviewExists("you have already reviewed this course (edit your review instead)")
    review: Record = {
        "course_id": course_id,
        "user_id": user_id,
        "enrolment_id": str(free[0]["_id"]),
        "scores": dict(scores),
        "text": text,
        "agree": 0,
        "disagree": 0,
        "hidden": False,
        "recommended": False,
        "created_at": now,
        "updated_at": now,
    }
    review = await reviews.add(review)
    await reviews.add_to_stats(course_id, 1, _sums(scores))
    return review


async def edit_review(
    reviews: ReviewRepository,
    user_id: int,
    review_id: int,
    scores: dict[str, int],
    text: str | None,
    now: datetime.datetime,
) -> Record:
    """The author changes some scores and/or the text; the course's sums move by the difference."""
    review = await reviews.get(review_id)
    if review is None or review["user_id"] != user_id:
        raise NotFound(f"no review {review_id} of yours")
    new_scores = {**review["scores"], **scores}
    changes: Record = {"scores": new_scores, "updated_at": now}
    if text is not None:
        changes["text"] = text
    await reviews.update(review_id, changes)
    if not review.get("hidden"):
        delta = {name: new_scores[name] - int(review["scores"][name]) for name in SCORE_NAMES}
        if any(delta.values()):
            await reviews.add_to_stats(int(review["course_id"]), 0, delta)
    return {**review, **changes}


async def vote(
    reviews: ReviewRepository, user_id: int, review_id: int, clicked: Vote, now: datetime.datetime
) -> tuple[Record, str | None]:
    """Apply one click; the review after and the user's vote after."""
    review = await reviews.get(review_id)
    if review is None or review.get("hidden"):
        raise NotFound(f"no review {review_id}")
    change = vote_change(await reviews.vote_of(review_id, user_id), clicked)
    await reviews.set_vote(review_id, user_id, change.vote, now)
    after = await reviews.add_to_counters(review_id, change.agree, change.disagree)
    if after is None:
        raise NotFound(f"no review {review_id}")
    return after, change.vote


async def moderate(reviews: ReviewRepository, review_id: int, action: Moderation) -> tuple[Record, Record]:
    """hide/show/recommend/unrecommend (the same again changes nothing); (before, after) for the audit.
    Hiding takes the review out of the course's sums, showing puts it back."""
    field, value = moderation_change(action)
    before = await reviews.set_flag(review_id, field, value)
    if before is None:
        current = await reviews.get(review_id)
        if current is None:
            raise NotFound(f"no review {review_id}")
        return current, current
    if field == "hidden":
        sign = -1 if value else 1
        await reviews.add_to_stats(int(before["course_id"]), sign, _sums(before["scores"], sign))
    return before, {**before, field: value}
