"""Learning delivery on in-memory ports: who may open a section, the signed content link, progress,
enrolment expiry with an injected clock, and re-purchase extending the one enrolment."""

import asyncio
import copy
import datetime
from collections.abc import Iterable
from typing import Any

import pytest

from engine.book.errors import NotFound
from shop.learning import (
    Access,
    ContentLinkExpired,
    ContentLinkInvalid,
    EnrolmentExpired,
    EnrolmentRequired,
    content_key,
    grant_enrolment,
    read_content_token,
    renewed_validity,
    section_access,
    shown_status,
    sign_content_token,
)
from shop.learning_service import LearningService, run_enrolment_sweeper
from shop.model import LISTED_STATUSES, Record, to_ms
from tests.shop.fakes import FakeEnrolments, FakeShopStore, World, fake_world

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
KEY = content_key(b"installation secret")


class FakeLearningStore:
    """`LearningStore` over the fake shop's tables (sections, courses and enrolments are the ones
    the shop's handlers write)."""

    def __init__(self, store: FakeShopStore) -> None:
        self.store = store
        self.progress: dict[tuple[int, int], Record] = {}  # (user, section): the unique key

    def table(self, name: str) -> dict[Any, Record]:
        return self.store.state.table(name)

    async def course(self, course_id: int) -> Record | None:
        return copy.deepcopy(self.table("courses").get(course_id))

    async def chapters(self, course_id: int) -> list[Record]:
        course = self.table("courses").get(course_id)
        if course is None or course.get("status") not in LISTED_STATUSES:
            raise NotFound(f"no course {course_id}")
        chapters = [copy.deepcopy(c) for c in self.table("chapters").values() if c["course_id"] == course_id]
        for chapter in chapters:
            chapter["sections"] = [
                copy.deepcopy(s) for s in self.table("sections").values() if s["chapter_id"] == chapter["_id"]
            ]
        return chapters

    async def section(self, section_id: int) -> Record | None:
        return copy.deepcopy(self.table("sections").get(section_id))

    async def section_ids(self, course_ids: Iterable[int]) -> dict[int, list[int]]:
        wanted = list(course_ids)
        return {
            c: sorted(s["_id"] for s in self.table("sections").values() if s["course_id"] == c)
            for c in wanted
        }

    async def enrolment(self, user_id: int, course_id: int) -> Record | None:
        return await FakeEnrolments(self.store).current(user_id, course_id)

    async def enrolments(self, user_id: int) -> list[Record]:
        return [copy.deepcopy(e) for e in self.table("enrolments").values() if e["user_id"] == user_id]

    async def done_sections(self, user_id: int, course_ids: Iterable[int]) -> set[int]:
        wanted = set(course_ids)
        return {
            section
            for (user, section), p in self.progress.items()
            if user == user_id and p["course_id"] in wanted and p["done"]
        }

    async def set_done(
        self, user_id: int, course_id: int, section_id: int, done: bool, now: datetime.datetime
    ) -> None:
        self.progress[(user_id, section_id)] = {"course_id": course_id, "done": done, "updated_at": now}

    async def expire_enrolments(self, now: datetime.datetime) -> int:
        ended = [
            e
            for e in self.table("enrolments").values()
            if e["status"] in ("valid", "active") and e["valid_to"] <= now
        ]
        for enrolment in ended:
            enrolment["status"] = "expired"
        return len(ended)


@pytest.fixture
def world() -> World:
    return fake_world()


def learning_of(world: World) -> tuple[LearningService, FakeLearningStore]:
    store = FakeLearningStore(world.store)
    return LearningService(store, KEY, now=world.clock), store


async def setup_course(world: World, days: int = 30, price: int = 1000) -> tuple[int, int, int, int]:
    """A course with one chapter: a free-trial section and a paid one. (course, policy, free, paid)"""
    shop = world.shop
    top = await shop.create_category(f"top {len(world.store.state.table('categories'))}", None)
    sub = await shop.create_category(f"sub {len(world.store.state.table('categories'))}", top["_id"])
    course = await shop.create_course(
        {
            "name": f"c{len(world.store.state.table('courses'))}",
            "sub_category_id": sub["_id"],
            "status": "online",
        }
    )
    policy = await shop.add_policy("course", course["_id"], days, price)
    chapter = await shop.add_chapter(course["_id"], {"chapter": 1, "name": "Start", "summary": ""})
    free = await shop.add_section(
        chapter["_id"],
        {"name": "Intro", "order": 1, "link": "https://example.com/v/free", "free_trial": True},
    )
    paid = await shop.add_section(
        chapter["_id"],
        {"name": "Deep", "order": 2, "link": "https://example.com/v/paid", "free_trial": False},
    )
    return course["_id"], policy["_id"], free["_id"], paid["_id"]


async def buy(world: World, user_id: int, course_id: int, policy_id: int, key: str) -> Record:
    world.store.state.balances.setdefault(user_id, 0)
    world.store.state.balances[user_id] += 1000
    await world.shop.cart_add(user_id, course_id, policy_id)
    await world.shop.create_checkout(user_id, [course_id])
    placed = await world.shop.pay(user_id, 1000, key)
    assert placed.order["status"] == "paid"
    return placed.order


def enrolment(valid_to: datetime.datetime, status: str = "valid", **more: Any) -> Record:
    return {"_id": "1:1", "valid_from": valid_to - 30 * DAY, "valid_to": valid_to, "status": status, **more}


# -- the rules --------------------------------------------------------------------------------------------
def test_who_may_open_a_section() -> None:
    paid, free = {"free_trial": False}, {"free_trial": True}
    valid = enrolment(NOW + DAY)
    assert section_access(paid, True, valid, NOW) is Access.ENROLLED
    assert section_access(paid, False, valid, NOW) is Access.ENROLLED  # an offline course stays studied
    assert section_access(free, True, None, NOW) is Access.FREE_TRIAL
    with pytest.raises(EnrolmentRequired):
        section_access(free, False, None, NOW)  # no free preview of an unlisted course
    with pytest.raises(EnrolmentRequired):
        section_access(paid, True, None, NOW)
    # Ended by time, even before the sweeper marks it; the end instant itself is no longer valid.
    for ended in (enrolment(NOW), enrolment(NOW - DAY), enrolment(NOW + DAY, "expired")):
        with pytest.raises(EnrolmentExpired):
            section_access(paid, True, ended, NOW)
        assert section_access(free, True, ended, NOW) is Access.FREE_TRIAL
        assert shown_status(ended, NOW) == "expired"
    with pytest.raises(EnrolmentExpired):
        section_access(paid, True, enrolment(NOW + DAY, "refunded"), NOW)
    assert shown_status(enrolment(NOW + DAY, "active"), NOW) == "valid"  # older records


def test_renewal_extends_from_the_later_of_now_and_the_end() -> None:
    running = enrolment(NOW + 10 * DAY)
    assert renewed_validity(running, NOW, 30) == (running["valid_from"], NOW + 40 * DAY)
    assert renewed_validity(enrolment(NOW - 5 * DAY), NOW, 30) == (NOW, NOW + 30 * DAY)
    assert renewed_validity(enrolment(NOW + 10 * DAY, "refunded"), NOW, 30) == (NOW, NOW + 30 * DAY)
    assert renewed_validity(None, NOW, 7) == (NOW, NOW + 7 * DAY)


def test_content_token_is_signed_and_short_lived() -> None:
    expires = to_ms(NOW) + 600_000
    token = sign_content_token(KEY, 5, 7, expires)
    grant = read_content_token(KEY, token, to_ms(NOW))
    assert (grant.section_id, grant.user_id, grant.expires_ms) == (5, 7, expires)
    with pytest.raises(ContentLinkExpired):
        read_content_token(KEY, token, expires)
    section, user, exp, sig = token.split(".")
    forged = [
        f"6.{user}.{exp}.{sig}",  # another section
        f"{section}.8.{exp}.{sig}",  # another user
        f"{section}.{user}.{int(exp) + 3_600_000}.{sig}",  # a longer life
        f"{section}.{user}.{exp}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        sign_content_token(content_key(b"another installation"), 5, 7, expires),
        "",
        "5.7",
        "../../etc/passwd",
    ]
    for bad in forged:
        with pytest.raises(ContentLinkInvalid):
            read_content_token(KEY, bad, to_ms(NOW))
    # A forged token is refused as invalid even when its claimed expiry has passed.
    with pytest.raises(ContentLinkInvalid):
        read_content_token(KEY, f"6.{user}.{exp}.{sig}", expires + 1)
    assert KEY != b"installation secret" and len(KEY) == 32


# -- enrolments at payment ----------------------------------------------------------------------------------
async def test_buying_again_extends_the_one_enrolment(world: World) -> None:
    course_id, policy_id, _free, _paid = await setup_course(world, days=30)
    first = await buy(world, 1, course_id, policy_id, "k1")
    [enrolled] = world.store.state.table("enrolments").values()
    assert (enrolled["valid_from"], enrolled["valid_to"]) == (world.clock.at, world.clock.at + 30 * DAY)
    start = world.clock.at
    world.clock.advance(days=10)
    second = await buy(world, 1, course_id, policy_id, "k2")
    [extended] = world.store.state.table("enrolments").values()
    assert extended["_id"] == enrolled["_id"] == f"1:{course_id}"
    assert (extended["valid_from"], extended["valid_to"]) == (start, start + 60 * DAY)
    assert extended["order_nos"] == [first["_id"], second["_id"]] and extended["order_no"] == second["_id"]
    # After the end, a purchase starts again from now.
    world.clock.advance(days=100)
    await buy(world, 1, course_id, policy_id, "k3")
    [renewed] = world.store.state.table("enrolments").values()
    assert (renewed["valid_from"], renewed["valid_to"]) == (world.clock.at, world.clock.at + 30 * DAY)
    assert renewed["status"] == "valid"


async def test_granting_is_idempotent_per_order(world: World) -> None:
    repo = FakeEnrolments(world.store)
    for _ in range(3):  # a retried transaction or notification
        await grant_enrolment(repo, user_id=1, course_id=2, course_name="c", order_no="A", days=30, now=NOW)
    [only] = world.store.state.table("enrolments").values()
    assert only["valid_to"] == NOW + 30 * DAY and only["order_nos"] == ["A"]
    # An older record (one per order, "active", no order_nos) is extended, not duplicated.
    world.store.state.table("enrolments").clear()
    old = {
        "_id": "X:2",
        "user_id": 1,
        "course_id": 2,
        "order_no": "X",
        "valid_from": NOW,
        "valid_to": NOW + DAY,
        "status": "active",
    }
    world.store.state.table("enrolments")["X:2"] = dict(old)
    await grant_enrolment(repo, user_id=1, course_id=2, course_name="c", order_no="X", days=30, now=NOW)
    assert world.store.state.table("enrolments")["X:2"]["valid_to"] == NOW + DAY  # X already counted
    await grant_enrolment(repo, user_id=1, course_id=2, course_name="c", order_no="B", days=30, now=NOW)
    assert list(world.store.state.table("enrolments")) == ["X:2"]
    assert world.store.state.table("enrolments")["X:2"]["valid_to"] == NOW + 31 * DAY


async def test_expiry_with_an_injected_clock(world: World) -> None:
    learning, _store = learning_of(world)
    course_id, policy_id, _free, paid = await setup_course(world, days=30)
    await buy(world, 1, course_id, policy_id, "k1")
    assert await learning.expire_enrolments(world.clock.at + 30 * DAY - datetime.timedelta(seconds=1)) == 0
    await learning.open_section(1, paid)
    world.clock.advance(days=30)
    with pytest.raises(EnrolmentExpired):  # the time decides, before any sweep
        await learning.open_section(1, paid)
    assert await learning.expire_enrolments(world.clock.at) == 1
    assert await learning.expire_enrolments(world.clock.at) == 0  # conditional: once
    [stored] = world.store.state.table("enrolments").values()
    assert stored["status"] == "expired"
    assert [e["status"] for e in await learning.my_enrolments(1)] == ["expired"]


async def test_the_sweeper_marks_ended_enrolments(world: World) -> None:
    learning, _store = learning_of(world)
    course_id, policy_id, _free, _paid = await setup_course(world, days=1)
    await buy(world, 1, course_id, policy_id, "k1")
    world.clock.advance(days=2)
    task = asyncio.create_task(run_enrolment_sweeper(learning, interval_seconds=0.01))
    try:
        for _ in range(500):
            if next(iter(world.store.state.table("enrolments").values()))["status"] == "expired":
                break
            await asyncio.sleep(0.01)
        assert next(iter(world.store.state.table("enrolments").values()))["status"] == "expired"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the service ---------------------------------------------------------------------------------------------
async def test_outline_content_and_progress(world: World) -> None:
    learning, _store = learning_of(world)
    course_id, policy_id, free, paid = await setup_course(world)
    # Signed out: the free section opens, the paid one is locked; no link anywhere in the outline.
    [chapter] = await learning.chapters(course_id, None)
    assert [(s["_id"], s["locked"], "done" in s, "link" in s) for s in chapter["sections"]] == [
        (free, False, False, False),
        (paid, True, False, False),
    ]
    opened = await learning.open_section(None, free)
    assert opened.token is not None and opened.expires_at == world.clock.at + datetime.timedelta(minutes=10)
    assert await learning.redeem(opened.token) == "https://example.com/v/free"
    with pytest.raises(EnrolmentRequired):
        await learning.open_section(None, paid)
    with pytest.raises(EnrolmentRequired):
        await learning.open_section(2, paid)
    with pytest.raises(NotFound):
        await learning.open_section(2, 999)
    # Enrolled: everything opens; progress is per user and section, and idempotent.
    await buy(world, 2, course_id, policy_id, "k1")
    [chapter] = await learning.chapters(course_id, 2)
    assert [(s["locked"], s["done"]) for s in chapter["sections"]] == [(False, False), (False, False)]
    token = (await learning.open_section(2, paid)).token
    assert token is not None and await learning.redeem(token) == "https://example.com/v/paid"
    for _ in range(2):
        answer = await learning.set_progress(2, paid, True)
        assert answer == {"section_id": paid, "done": True, "progress": {"done": 1, "total": 2}}
    assert (await learning.course_status(course_id, 2))["progress"] == {"done": 1, "total": 2}
    assert (await learning.set_progress(2, paid, False))["progress"] == {"done": 0, "total": 2}
    with pytest.raises(EnrolmentRequired):
        await learning.set_progress(3, paid, True)
    assert (await learning.set_progress(3, free, True))["progress"] == {"done": 1, "total": 2}
    # The link lives ten minutes; an enrolment that ends meanwhile ends the link too.
    world.clock.advance(minutes=10)
    with pytest.raises(ContentLinkExpired):
        await learning.redeem(token)
    token = (await learning.open_section(2, paid)).token
    assert token is not None
    enrolments = world.store.state.table("enrolments")
    next(iter(enrolments.values()))["status"] = "refunded"
    with pytest.raises(ContentLinkExpired):
        await learning.redeem(token)
    status = await learning.course_status(course_id, 2)
    assert status["enrolment"] is not None and status["enrolment"]["status"] == "expired"


async def test_my_enrolments_list_valid_first_with_progress(world: World) -> None:
    learning, _store = learning_of(world)
    old_course, old_policy, _f1, _p1 = await setup_course(world, days=5)
    new_course, new_policy, free, _p2 = await setup_course(world, days=50)
    await buy(world, 4, old_course, old_policy, "k1")
    await buy(world, 4, new_course, new_policy, "k2")
    await learning.set_progress(4, free, True)
    world.clock.advance(days=10)
    items = await learning.my_enrolments(4)
    assert [(e["course_id"], e["status"], e["progress"]) for e in items] == [
        (new_course, "valid", {"done": 1, "total": 2}),
        (old_course, "expired", {"done": 0, "total": 2}),
    ]
    assert items[0]["course"]["name"]
