"""Review and vote rules (shop/reviews.py through CommunityService) on in-memory ports.

Every test that writes ends by checking the books: each course's stored sums and count equal the
sums over its visible review records, and each review's counters equal its vote records.
"""

import datetime
from typing import Any

import pytest

from engine.book.errors import InvalidInput, NotFound
from shop.community import CommunityService
from shop.reviews import (
    MAX_REVIEW_TEXT,
    SCORE_NAMES,
    EnrolmentRequired,
    ReviewExists,
    average,
    averages,
    clean_text,
    vote_change,
)
from tests.shop.community_fakes import community_of
from tests.shop.fakes import World, fake_world

GOOD = {"teacher": 5, "content": 4, "clarity": 3}


@pytest.fixture
def world() -> World:
    return fake_world()


async def course(world: World, name: str = "Python") -> int:
    shop = world.shop
    if not world.store.state.table("categories"):
        top = await shop.create_category("Back end", None)
        await shop.create_category("Python", top["_id"])
    sub = next(c["_id"] for c in world.store.state.table("categories").values() if c["parent_id"])
    created = await shop.create_course({"name": name, "sub_category_id": sub, "status": "online"})
    await shop.add_policy("course", created["_id"], 30, 1000)
    return int(created["_id"])


async def enrolled(world: World, course_id: int, user_id: int | None = None) -> int:
    """A user who bought the course with their balance (the shop's own flow makes the enrolment)."""
    if user_id is None:
        user_id = 100 + len(world.store.state.balances)
        world.store.state.balances[user_id] = 0
    world.store.state.balances[user_id] += 1000
    policy = next(
        p["_id"] for p in world.store.state.table("price_policies").values() if p["target_id"] == course_id
    )
    await world.shop.cart_add(user_id, course_id, policy)
    await world.shop.create_checkout(user_id, [course_id])
    placed = await world.shop.pay(user_id, 1000, f"k-{user_id}-{len(world.store.state.table('orders'))}")
    assert placed.order["status"] == "paid"
    return user_id


def assert_books(world: World) -> None:
    state = world.store.state
    reviews = state.table("reviews").values()
    for course_id in {r["course_id"] for r in reviews} | set(state.table("review_stats")):
        shown = [r for r in reviews if r["course_id"] == course_id and not r["hidden"]]
        stats = state.table("review_stats").get(course_id, {})
        assert stats.get("count", 0) == len(shown)
        for name in SCORE_NAMES:
            assert stats.get(name, 0) == sum(r["scores"][name] for r in shown)
    for review in reviews:
        votes = [v["vote"] for v in state.table("review_votes").values() if v["review_id"] == review["_id"]]
        assert (review["agree"], review["disagree"]) == (votes.count("agree"), votes.count("disagree"))


@pytest.fixture
def community(world: World) -> CommunityService:
    return community_of(world)


# -- pure rules --------------------------------------------------------------------------------------------
def test_averages_are_exact_to_one_decimal_rounded_half_up() -> None:
    assert average(0, 0) is None
    assert average(13, 3) == "4.3"  # 4.333…
    assert average(89, 20) == "4.5"  # 4.45 exactly: half up
    assert average(87, 20) == "4.4"  # 4.35 -> 4.4
    assert average(5, 1) == "5.0"
    stats = {"count": 3, "teacher": 12, "content": 13, "clarity": 12}
    assert averages(stats) == {
        "teacher": "4.0",
        "content": "4.3",
        "clarity": "4.0",
        "overall": "4.1",
        "count": 3,
    }
    assert averages(None) == {"teacher": None, "content": None, "clarity": None, "overall": None, "count": 0}


def test_a_second_click_takes_the_vote_back_and_the_other_switches() -> None:
    assert (vote_change(None, "agree").vote, vote_change(None, "agree").agree) == ("agree", 1)
    back = vote_change("agree", "agree")
    assert (back.vote, back.agree, back.disagree) == (None, -1, 0)
    switch = vote_change("agree", "disagree")
    assert (switch.vote, switch.agree, switch.disagree) == ("disagree", -1, 1)


def test_text_is_plain_and_bounded() -> None:
    assert clean_text("  good\r\ncourse\x00\x1b[31m \u0085 ") == "good\ncourse[31m"
    assert clean_text("x" * MAX_REVIEW_TEXT) == "x" * MAX_REVIEW_TEXT
    with pytest.raises(InvalidInput):
        clean_text("x" * (MAX_REVIEW_TEXT + 1))


@pytest.mark.parametrize(
    "scores",
    [
        {"teacher": 0, "content": 4, "clarity": 3},
        {"teacher": 6, "content": 4, "clarity": 3},
        {"teacher": 4.5, "content": 4, "clarity": 3},
        {"teacher": "4", "content": 4, "clarity": 3},
        {"teacher": True, "content": 4, "clarity": 3},
        {"teacher": 4, "content": 4},
        {"teacher": 4, "content": 4, "clarity": 3, "value": 5},
    ],
)
async def test_scores_are_integers_from_1_to_5(
    world: World, community: CommunityService, scores: Any
) -> None:
    course_id = await course(world)
    student = await enrolled(world, course_id)
    with pytest.raises(InvalidInput):
        await community.write_review(student, course_id, scores, "")
    assert world.store.state.table("reviews") == {}


# -- who may review ---------------------------------------------------------------------------------------
async def test_a_review_needs_an_enrolment_in_that_course(world: World, community: CommunityService) -> None:
    python, go = await course(world, "Python"), await course(world, "Go")
    student = await enrolled(world, python)
    with pytest.raises(EnrolmentRequired):
        await community.write_review(student, go, GOOD, "never bought it")
    with pytest.raises(NotFound):
        await community.write_review(student, 999, GOOD, "")
    review = await community.write_review(student, python, GOOD, "  clear and useful ")
    assert review["text"] == "clear and useful" and review["scores"] == GOOD and review["mine"]
    assert_books(world)


async def test_one_review_per_enrolment(world: World, community: CommunityService) -> None:
    course_id = await course(world)
    student = await enrolled(world, course_id)
    await community.write_review(student, course_id, GOOD, "first")
    with pytest.raises(ReviewExists):
        await community.write_review(student, course_id, GOOD, "again")
    # A second enrolment (e.g. bought again after it ended, as a separate record) allows one more.
    enrolments = world.store.state.table("enrolments")
    first = next(iter(enrolments.values()))
    enrolments["second"] = {**first, "_id": "second"}
    await community.write_review(student, course_id, GOOD, "second time round")
    with pytest.raises(ReviewExists):
        await community.write_review(student, course_id, GOOD, "third")
    assert len(world.store.state.table("reviews")) == 2
    assert_books(world)


async def test_an_expired_enrolment_still_counts_a_refunded_one_does_not(
    world: World, community: CommunityService
) -> None:
    course_id = await course(world)
    past, refunded = await enrolled(world, course_id), await enrolled(world, course_id)
    world.clock.advance(days=400)  # the 30-day validity is long over
    for enrolment in world.store.state.table("enrolments").values():
        if enrolment["user_id"] == refunded:
            enrolment["status"] = "refunded"
    await community.write_review(past, course_id, GOOD, "looking back")
    with pytest.raises(EnrolmentRequired):
        await community.write_review(refunded, course_id, GOOD, "")


# -- editing, averages, moderation --------------------------------------------------------------------------
async def test_the_author_edits_and_the_sums_follow(world: World, community: CommunityService) -> None:
    course_id = await course(world)
    alice, bob = await enrolled(world, course_id), await enrolled(world, course_id)
    mine = await community.write_review(alice, course_id, {"teacher": 5, "content": 4, "clarity": 3}, "ok")
    await community.write_review(bob, course_id, {"teacher": 4, "content": 4, "clarity": 4}, "fine")
    with pytest.raises(NotFound):
        await community.edit_review(bob, mine["_id"], {"teacher": 1}, None)
    world.clock.advance(minutes=5)
    edited = await community.edit_review(alice, mine["_id"], {"clarity": 5}, "better than I thought")
    assert edited["scores"] == {"teacher": 5, "content": 4, "clarity": 5}
    assert edited["text"] == "better than I thought" and edited["updated_at"] > edited["created_at"]
    page = await community.reviews(course_id, None, 0, 20)
    assert page.averages == {
        "teacher": "4.5",
        "content": "4.0",
        "clarity": "4.5",
        "overall": "4.3",
        "count": 2,
    }
    assert_books(world)


async def test_hidden_reviews_leave_the_list_and_the_averages_recommended_come_first(
    world: World, community: CommunityService
) -> None:
    course_id = await course(world)
    students = [await enrolled(world, course_id) for _ in range(3)]
    ids = []
    for score, student in zip((1, 3, 5), students, strict=True):
        world.clock.advance(minutes=1)
        scores = dict.fromkeys(SCORE_NAMES, score)
        ids.append((await community.write_review(student, course_id, scores, f"{score} stars"))["_id"])
    page = await community.reviews(course_id, students[0], 0, 20)
    assert [r["_id"] for r in page.items] == ids[::-1]  # newest first
    assert [r["mine"] for r in page.items] == [False, False, True]
    before, after = await community.moderate(ids[0], "recommend")
    assert (before["recommended"], after["recommended"]) == (False, True)
    await community.moderate(ids[2], "hide")
    await community.moderate(ids[2], "hide")  # again: nothing changes, sums moved once
    page = await community.reviews(course_id, None, 0, 20)
    assert [r["_id"] for r in page.items] == [ids[0], ids[1]] and page.total == 2
    assert page.averages["teacher"] == "2.0" and page.averages["count"] == 2
    assert_books(world)
    # Editing a hidden review does not touch the sums; showing it again adds its current scores.
    await community.edit_review(students[2], ids[2], {"teacher": 4}, None)
    assert_books(world)
    await community.moderate(ids[2], "show")
    assert (await community.reviews(course_id, None, 0, 20)).averages["count"] == 3
    assert_books(world)
    with pytest.raises(NotFound):
        await community.moderate(999, "hide")


# -- votes --------------------------------------------------------------------------------------------------
async def test_votes_once_per_user_taken_back_and_switched(world: World, community: CommunityService) -> None:
    course_id = await course(world)
    author = await enrolled(world, course_id)
    review = await community.write_review(author, course_id, GOOD, "")
    rid = review["_id"]
    voter, other = 900, 901
    after, mine = await community.vote(voter, rid, "agree")
    assert (after["agree"], after["disagree"], mine) == (1, 0, "agree")
    after, mine = await community.vote(voter, rid, "agree")  # the same again: taken back
    assert (after["agree"], after["disagree"], mine) == (0, 0, None)
    await community.vote(voter, rid, "disagree")
    after, mine = await community.vote(voter, rid, "agree")  # the other one: switched
    assert (after["agree"], after["disagree"], mine) == (1, 0, "agree")
    after, _ = await community.vote(other, rid, "disagree")
    assert (after["agree"], after["disagree"]) == (1, 1)
    page = await community.reviews(course_id, voter, 0, 20)
    assert page.items[0]["my_vote"] == "agree"
    assert (await community.reviews(course_id, None, 0, 20)).items[0]["my_vote"] is None
    await community.moderate(rid, "hide")
    with pytest.raises(NotFound):
        await community.vote(voter, rid, "agree")  # hidden reviews cannot be voted on
    assert_books(world)


async def test_many_clicks_leave_counters_equal_to_records(world: World, community: CommunityService) -> None:
    course_id = await course(world)
    review = await community.write_review(await enrolled(world, course_id), course_id, GOOD, "")
    for i in range(50):
        await community.vote(1000 + i % 7, review["_id"], "agree" if i % 3 else "disagree")
    assert_books(world)


async def test_a_failed_unit_leaves_nothing(world: World, community: CommunityService) -> None:
    course_id = await course(world)
    student = await enrolled(world, course_id)
    state_before = world.store.state.table("review_stats").copy()

    async def boom(*_: Any) -> None:
        raise RuntimeError("storage failed after the insert")

    repo_cls = type(community.store.direct().reviews)
    original = repo_cls.add_to_stats
    repo_cls.add_to_stats = boom  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            await community.write_review(student, course_id, GOOD, "")
    finally:
        repo_cls.add_to_stats = original  # type: ignore[method-assign]
    assert world.store.state.table("reviews") == {}  # rolled back with the sums
    assert world.store.state.table("review_stats") == state_before
    assert isinstance(world.clock(), datetime.datetime)
