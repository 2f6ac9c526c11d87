"""The storefront's catalogue decisions (shop/storefront.py): filters on the lowest price, the name
search, the sorts and the one-decimal averages, on plain records."""

import datetime

from shop.storefront import CourseQuery, lowest_price, one_decimal, review_average, select_courses


def course(course_id: int, name: str, *prices: int, order: int = 0, day: int = 1) -> dict[str, object]:
    return {
        "_id": course_id,
        "name": name,
        "order": order,
        "created_at": datetime.datetime(2025, 1, day, tzinfo=datetime.UTC),
        "policies": [{"price": p} for p in prices],
    }


CATALOGUE = [
    course(1, "Python basics", 9900, 19_900, order=2, day=1),
    course(2, "Asyncio in depth", 19_900, order=1, day=3),
    course(3, "PYTHON for auctions", 4900, order=3, day=2),
    course(4, "Unpriced draft", order=0, day=4),
]


def ids(query: CourseQuery) -> list[object]:
    return [c["_id"] for c in select_courses(CATALOGUE, query)]


def test_default_is_display_order() -> None:
    assert ids(CourseQuery()) == [4, 2, 1, 3]


def test_price_filters_act_on_the_lowest_price_and_skip_unpriced_courses() -> None:
    assert ids(CourseQuery(min_price=9900)) == [2, 1]  # course 1 from 99.00 (its 199.00 plan ignored)
    assert ids(CourseQuery(max_price=9900)) == [1, 3]
    assert ids(CourseQuery(min_price=9901, max_price=19_900)) == [2]
    assert ids(CourseQuery(min_price=0)) == [2, 1, 3]


def test_search_is_a_case_insensitive_substring_of_the_name() -> None:
    assert ids(CourseQuery(q="python")) == [1, 3]
    assert ids(CourseQuery(q="IN DEPTH")) == [2]
    assert ids(CourseQuery(q="nothing like it")) == []


def test_sorts_by_price_unpriced_last_and_by_newest() -> None:
    assert ids(CourseQuery(sort="price")) == [3, 1, 2, 4]
    assert ids(CourseQuery(sort="newest")) == [4, 2, 3, 1]
    assert ids(CourseQuery(sort="price", q="python", max_price=5000)) == [3]


def test_lowest_price_and_averages_are_exact() -> None:
    assert lowest_price([{"price": 500}, {"price": 300}]) == 300 and lowest_price([]) is None
    assert one_decimal(0, 0) is None
    assert one_decimal(9, 2) == "4.5"  # 4.5 exactly
    assert one_decimal(14, 3) == "4.7"  # 4.666… rounds up
    assert one_decimal(13, 3) == "4.3"  # 4.333… rounds down
    assert one_decimal(1, 20) == "0.1"  # 0.05 rounds half up
    # Three scores per review: two reviews (5,5,4) and (4,4,5) -> 27 / 6 = 4.5
    assert review_average([9, 9, 9], 2) == "4.5"
    assert review_average([5, 4, 4], 1) == "4.3"
    assert review_average([0, 0, 0], 0) is None
