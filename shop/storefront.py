"""The storefront's catalogue browsing (issue 21): the search and filters of `GET /api/v1/courses`
and the numbers a course card shows. Pure decisions plus `browse_courses`, which runs them over the
`StorefrontReads` port (persistence/shop/reads.py on MongoDB).

Price filters and the price sort act on a course's *lowest* policy price (the "from ¥99" a card
shows); a course without any policy has no price: it never matches a price filter and sorts last.
The name search is a case-insensitive substring match (casefold, so full-width and accented names
match as a reader expects).
"""

import dataclasses
from collections.abc import Sequence
from typing import Final, Protocol

from shop.model import Record

SORTS: Final = ("order", "price", "newest")
MAX_QUERY_LENGTH: Final = 64


@dataclasses.dataclass(frozen=True)
class CourseQuery:
    """What the caller asked for; every field optional (None: no filter)."""

    category_id: int | None = None
    level: str | None = None
    course_type: str | None = None
    min_price: int | None = None  # fen, inclusive, on the lowest policy price
    max_price: int | None = None  # fen, inclusive
    q: str | None = None  # a substring of the name
    sort: str = "order"


class StorefrontReads(Protocol):
    async def course_candidates(self, query: CourseQuery) -> list[Record]:
        """Listed courses matching the stored fields (category, level, type), each with `policies`
        and `created_at`; NotFound for an unknown category."""
        ...

    async def course_cards(self, courses: list[Record]) -> None:
        """Add `hours`, `picture` and the review counters (`review_count`, `review_sums`) to each."""
        ...


def lowest_price(policies: Sequence[Record]) -> int | None:
    prices = [int(p["price"]) for p in policies]
    return min(prices) if prices else None


def one_decimal(total: int, count: int) -> str | None:
    """`total / count` with one decimal, rounded half up, as a string ("4.6"); None for no count.
    Integer arithmetic only, so the same sums always print the same average."""
    if count <= 0:
        return None
    tenths = (total * 20 + count) // (2 * count)  # round(total * 10 / count), halves up
    return f"{tenths // 10}.{tenths % 10}"


def review_average(sums: Sequence[int], count: int) -> str | None:
    """The overall rating: the mean of every score of every review (three scores per review)."""
    return one_decimal(sum(sums), count * len(sums)) if sums else None


def matches(course: Record, query: CourseQuery) -> bool:
    if query.q and query.q.casefold() not in str(course.get("name", "")).casefold():
        return False
    if query.min_price is not None or query.max_price is not None:
        price = lowest_price(course.get("policies", ()))
        if price is None:
            return False
        if query.min_price is not None and price < query.min_price:
            return False
        if query.max_price is not None and price > query.max_price:
            return False
    return True


def _by_order(course: Record) -> tuple[int, int]:
    return (int(course.get("order", 0)), int(course["_id"]))


def select_courses(candidates: Sequence[Record], query: CourseQuery) -> list[Record]:
    """The candidates that match `query`, in its order: display order (then id); price (lowest
    first, unpriced last, then display order); newest (creation time, then id, descending)."""
    found = [course for course in candidates if matches(course, query)]
    if query.sort == "price":

        def by_price(course: Record) -> tuple[int, int, tuple[int, int]]:
            price = lowest_price(course.get("policies", ()))
            return (price is None, price or 0, _by_order(course))

        return sorted(found, key=by_price)
    if query.sort == "newest":
        # created_at may be missing on courses stored before it existed: those count as oldest.
        return sorted(
            found,
            key=lambda c: (c.get("created_at") is not None, c.get("created_at") or 0, int(c["_id"])),
            reverse=True,
        )
    return sorted(found, key=_by_order)


async def browse_courses(
    reads: StorefrontReads, query: CourseQuery, skip: int, limit: int
) -> tuple[list[Record], int]:
    """One page of the catalogue and the number of matches. The card extras (pictures, hours,
    ratings) are read for the page only."""
    selected = select_courses(await reads.course_candidates(query), query)
    page = selected[skip : skip + limit]
    await reads.course_cards(page)
    for course in page:
        course["lowest_price"] = lowest_price(course.get("policies", ()))
        sums = [int(s) for s in course.get("review_sums", ())]
        course["review_average"] = review_average(sums, int(course.get("review_count", 0)))
    return page, len(selected)
