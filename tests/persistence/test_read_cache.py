"""The read cache of the public catalogue reads (persistence/read_cache.py) on the real MongoDB and
Redis: an admin edit is visible on the next read, in this process at once and in another process
(a second cache and shop on the same Redis and database) as soon as the Redis message arrives; a
cart add is one Redis round trip and keeps the cart's rules."""

import asyncio
import itertools
import pathlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from pymongo.asynchronous.database import AsyncDatabase

import persistence.catalog as catalog_module
from engine.book.errors import NotFound
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import OpenLot, PlaceBid
from engine.engine import Engine
from persistence.accounts import Accounts, ScryptParams
from persistence.catalog import Catalog
from persistence.mongo import connect, ensure_indexes
from persistence.read_cache import MISSING, ReadCache
from persistence.redis_pipe import PipelinedRedis
from persistence.shop import RedisCartStore, ensure_shop_indexes, mongo_shop
from shop.model import CART_LIMIT, CartFull, CourseNotOnSale, InvalidPolicy
from shop.service import ShopService
from shop.storefront import CourseQuery
from tests.persistence.test_catalog import START, lot_spec, session_spec
from tests.persistence.test_shop import FakeProvider

TEST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)
_names = itertools.count(1)


async def live(cache: ReadCache) -> asyncio.Task[None]:
    task = cache.start()
    for _ in range(200):
        if cache.live:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the read cache did not subscribe")


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> None:
    """Another process learns of a change when the Redis message arrives: poll briefly."""
    for _ in range(int(seconds / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not seen in time")


class Cluster:
    """Two 'processes' of one deployment: each its own cache and shop, one database, one Redis."""

    def __init__(self, shops: list[ShopService], caches: list[ReadCache], sub_category: int) -> None:
        self.shops, self.caches, self.sub_category = shops, caches, sub_category

    async def course(self, price: int = 99_00, status: str = "online") -> tuple[int, int]:
        shop = self.shops[0]
        course = await shop.create_course(
            {
                "name": f"Cached course {next(_names)}",
                "image": "",
                "sub_category_id": self.sub_category,
                "course_type": "paid",
                "degree_course_id": None,
                "brief": "",
                "level": "beginner",
                "status": status,
                "order": 0,
                "period_days": 7,
                "attachment_path": "",
            }
        )
        policy = await shop.add_policy("course", int(course["_id"]), 30, price)
        return int(course["_id"]), int(policy["_id"])


@pytest.fixture
async def cluster(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], redis_client: aioredis.Redis
) -> AsyncIterator[Cluster]:
    client = connect(mongo_url)
    db = client[mongo_db.name]
    await ensure_indexes(db)
    await ensure_shop_indexes(db)
    accounts = Accounts(client, db, scrypt=TEST_SCRYPT)
    caches = [ReadCache(redis_client), ReadCache(redis_client)]
    tasks = [await live(cache) for cache in caches]
    shops = [mongo_shop(client, db, redis_client, accounts, FakeProvider(), cache=cache) for cache in caches]
    top = await shops[0].create_category(f"Top {next(_names)}", None)
    sub = await shops[0].create_category(f"Sub {next(_names)}", top["_id"])
    try:
        yield Cluster(shops, caches, int(sub["_id"]))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


async def listed(shop: ShopService) -> dict[int, dict[str, Any]]:
    courses, _total = await shop.browse_courses(CourseQuery(), 0, 100)
    return {int(c["_id"]): c for c in courses}


async def test_an_edit_shows_on_the_next_read_here_and_promptly_in_another_process(cluster: Cluster) -> None:
    here, there = cluster.shops
    course_id, _policy = await cluster.course(price=99_00)
    assert (await listed(here))[course_id]["lowest_price"] == 99_00
    assert (await listed(there))[course_id]["lowest_price"] == 99_00
    assert (await there.course_page(course_id))["name"].startswith("Cached course")
    # Served from the cache now: the second process holds the page.
    assert cluster.caches[1].get("shop", ("page", course_id)) is not MISSING

    await here.update_course(course_id, {"name": "Renamed"})
    await here.add_policy("course", course_id, 7, 19_00)
    assert (await here.course_page(course_id))["name"] == "Renamed"
    assert (await listed(here))[course_id]["lowest_price"] == 19_00

    async def seen_there() -> bool:
        page = await there.course_page(course_id)
        return bool(page["name"] == "Renamed" and (await listed(there))[course_id]["lowest_price"] == 19_00)

    await eventually(seen_there)


async def test_an_unpublished_course_leaves_the_list_404s_and_cannot_go_in_a_cart(cluster: Cluster) -> None:
    here, there = cluster.shops
    course_id, policy_id = await cluster.course()
    assert course_id in await listed(there)
    await there.course_page(course_id)
    await there.cart_add(4242, course_id, policy_id)  # warms the cart's course lookups there

    await here.update_course(course_id, {"status": "offline"})
    assert course_id not in await listed(here)
    with pytest.raises(NotFound):
        await here.course_page(course_id)

    async def gone_there() -> bool:
        # The list alone does not show the message arrived: a late message about the course's
        # creation can empty the list there while the page, read again since, waits for this one.
        if course_id in await listed(there):
            return False
        try:
            await there.course_page(course_id)
        except NotFound:
            return True
        return False

    await eventually(gone_there)
    with pytest.raises(CourseNotOnSale):
        await there.cart_add(4243, course_id, policy_id)
    [line] = await there.cart(4242)
    assert line.available is False and line.reason == "offline"


async def test_a_read_that_raced_a_change_is_not_kept(redis_client: aioredis.Redis) -> None:
    cache = ReadCache(redis_client)
    task = await live(cache)
    try:
        stamp = cache.stamp("shop")
        await cache.changed("shop")  # a write became durable while the read was under way
        cache.put("shop", "key", "old value", stamp)
        assert cache.get("shop", "key") is MISSING
        cache.put("shop", "key", "new value", cache.stamp("shop"))
        assert cache.get("shop", "key") == "new value"
        cache.put("auction", "key", "other domain", cache.stamp("auction"))
        await cache.changed("shop")
        assert cache.get("shop", "key") is MISSING and cache.get("auction", "key") == "other domain"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Without its subscription the cache neither keeps nor serves anything.
    assert not cache.live
    cache.put("shop", "key", "value", cache.stamp("shop"))
    assert cache.get("shop", "key") is MISSING


class CountingRedis:
    """Counts the commands sent through a client and through the cart's pipelined connection
    (each a round trip: the cart sends one command per request)."""

    def __init__(self, client: aioredis.Redis, pipe: PipelinedRedis | None) -> None:
        self.commands: list[str] = []
        send = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]))
            return await send(*args, **options)

        client.execute_command = counted  # type: ignore[method-assign]
        if pipe is not None:
            pipe_send = pipe.execute

            async def pipe_counted(*args: str | bytes | int) -> Any:
                self.commands.append(str(args[0]))
                return await pipe_send(*args)

            pipe.execute = pipe_counted  # type: ignore[method-assign]


async def test_a_cart_add_and_a_cart_view_are_one_redis_round_trip_each(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    shop = cluster.shops[0]
    first, first_policy = await cluster.course(price=10_00)
    second, second_policy = await cluster.course(price=20_00)
    other_course, other_policy = await cluster.course()
    await shop.cart_add(7001, first, first_policy)  # the course cache warms
    await shop.cart_add(7001, second, second_policy)
    carts = shop.carts
    assert isinstance(carts, RedisCartStore) and carts.pipe is not None  # its own connection
    counting = CountingRedis(redis_client, carts.pipe)
    lines = await shop.cart_add(7001, first, first_policy)  # again: replaces, no duplicate
    assert counting.commands == ["EVALSHA"]
    assert [(line.course_id, line.price) for line in lines] == [(first, 10_00), (second, 20_00)]
    counting.commands.clear()
    assert len(await shop.cart(7001)) == 2
    assert counting.commands == ["HGETALL"]
    # The rules stand: a policy of another course, and a full cart, are refused.
    with pytest.raises(InvalidPolicy):
        await shop.cart_add(7001, first, other_policy)
    for _ in range(CART_LIMIT - 2):
        extra, extra_policy = await cluster.course()
        await shop.cart_add(7001, extra, extra_policy)
    with pytest.raises(CartFull):
        await shop.cart_add(7001, other_course, other_policy)
    assert len(await shop.cart(7001)) == CART_LIMIT


@pytest.fixture
async def catalogs(
    mongo_url: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    redis_client: aioredis.Redis,
    tmp_path: pathlib.Path,
) -> AsyncIterator[tuple[Catalog, Catalog, Engine]]:
    """Two gateways' catalogues (each its cache) over one engine, one database and one Redis."""
    client = connect(mongo_url)
    db = client[mongo_db.name]
    await ensure_indexes(db)
    engine = Engine(FakeClock(START), tmp_path / "journal", None, sync=False)
    await engine.start()
    caches = [ReadCache(redis_client), ReadCache(redis_client)]
    tasks = [await live(cache) for cache in caches]
    named = lambda session_id, user_id: f"P{session_id}-{user_id}" if user_id else ""  # noqa: E731
    try:
        yield Catalog(db, engine, named, caches[0]), Catalog(db, engine, named, caches[1]), engine
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.stop(snapshot=False)
        await client.close()


async def test_a_lot_edit_shows_at_once_here_and_promptly_there_and_live_state_is_never_cached(
    catalogs: tuple[Catalog, Catalog, Engine],
) -> None:
    here, there, engine = catalogs
    session_id = (await here.create_session(session_spec(deposit=0)))["_id"]
    lot_id = (await here.create_lot(session_id, lot_spec(deposit=0)))["_id"]
    assert (await there.lot_view(lot_id))["title"] == "Vase"
    assert [lot["title"] for lot in (await there.session_view(session_id))["lots"]] == ["Vase"]

    await here.update_lot(lot_id, {"title": "Bowl"})
    await here.update_session(session_id, {"title": "Celadon"})
    assert (await here.lot_view(lot_id))["title"] == "Bowl"
    assert (await here.session_view(session_id))["title"] == "Celadon"

    async def seen_there() -> bool:
        view = await there.session_view(session_id)
        return bool(view["title"] == "Celadon" and view["lots"][0]["title"] == "Bowl")

    await eventually(seen_there)
    assert (await there.lot_view(lot_id))["session"]["title"] == "Celadon"

    # The engine's state (a lot opened, a bid) shows on the next read with no invalidation at all.
    assert (await engine.execute(OpenLot(lot_id))).ok
    assert (await engine.execute(PlaceBid(lot_id, 8, 1_000))).ok
    detail = await there.lot_view(lot_id)
    assert (detail["state"], detail["price"], detail["leader"]) == (
        int(LotState.BIDDING),
        1_000,
        f"P{session_id}-8",
    )
    [summary] = (await there.session_view(session_id))["lots"]
    assert (summary["price"], summary["bid_count"]) == (1_000, 1)
    # A new viewer counts at once; a known one costs no write and does not count again.
    assert (await there.lot_view(lot_id, viewer="u:8"))["watchers"] == 1
    assert (await there.lot_view(lot_id, viewer="u:8"))["watchers"] == 1
    assert (await there.session_view(session_id))["lots"][0]["watchers"] == 1  # the kept view moved
    # What one caller adds to its view is not what the next one gets.
    mine = await there.lot_view(lot_id)
    mine["reserve_price"] = 1
    assert "reserve_price" not in await there.lot_view(lot_id)


async def test_the_kept_session_answer_follows_bids_edits_and_counts_seen_elsewhere(
    catalogs: tuple[Catalog, Catalog, Engine],
) -> None:
    here, there, engine = catalogs
    session_id = (await here.create_session(session_spec(deposit=0)))["_id"]
    lot_id = (await here.create_lot(session_id, lot_spec(deposit=0)))["_id"]

    async def answer() -> Any:
        return orjson.loads(await there.session_view_json(session_id))

    assert await answer() == await there.session_view(session_id)
    assert await there.session_view_json(session_id) is await there.session_view_json(session_id)  # kept

    async def shows(field: str, value: Any) -> bool:
        return bool((await answer())["lots"][0][field] == value)

    await here.update_lot(lot_id, {"title": "Bowl"})  # edited in the other process
    await eventually(lambda: shows("title", "Bowl"))
    await here.lot_view(lot_id, viewer="u:9")  # a viewer recorded by the other process
    await eventually(lambda: shows("watchers", 1))  # read again within WATCHERS_FRESH_SECONDS
    # A bid is a command applied to the book: the next answer shows it, with no invalidation.
    assert (await engine.execute(OpenLot(lot_id))).ok
    assert (await engine.execute(PlaceBid(lot_id, 8, 1_000))).ok
    assert ((await answer())["lots"][0]["price"], (await answer())["lots"][0]["bid_count"]) == (1_000, 1)
    assert await answer() == await there.session_view(session_id)
    # A lot's kept answer likewise.
    assert orjson.loads(await there.lot_view_json(lot_id)) == await there.lot_view(lot_id)
    assert (await engine.execute(PlaceBid(lot_id, 9, 1_100))).ok
    assert orjson.loads(await there.lot_view_json(lot_id, viewer="u:10"))["price"] == 1_100
    assert orjson.loads(await there.lot_view_json(lot_id))["watchers"] == 2


async def test_the_kept_views_stay_bounded_as_sessions_go_by(
    catalogs: tuple[Catalog, Catalog, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-running process shows session after session: what it keeps per lot and per session
    # is bounded by what is read often, not by every lot it ever showed, and stays right.
    monkeypatch.setattr(catalog_module, "KEPT_LOT_VIEWS_MAX", 4)
    monkeypatch.setattr(catalog_module, "KEPT_SESSION_VIEWS_MAX", 2)
    here, _, _ = catalogs
    for number in range(5):
        session_id = (await here.create_session(session_spec(deposit=0, title=f"Session {number}")))["_id"]
        specs = [lot_spec(deposit=0, catalogue_no=f"A{k}", title=f"Lot {k}") for k in range(3)]
        lot_ids = [(await here.create_lot(session_id, spec))["_id"] for spec in specs]
        for _ in range(2):  # built, then answered from what was kept
            view = orjson.loads(await here.session_view_json(session_id))
            assert (view["title"], [lot["id"] for lot in view["lots"]]) == (f"Session {number}", lot_ids)
            for k, lot_id in enumerate(lot_ids):
                assert orjson.loads(await here.lot_view_json(lot_id, viewer=f"u:{k}"))["title"] == f"Lot {k}"
    for kept in (here._summaries, here._details, here._detail_bodies, here._watchers):
        assert 0 < len(kept) <= 4
    for kept_sessions in (here._session_views, here._session_summaries):
        assert 0 < len(kept_sessions) <= 2


async def test_the_kept_answers_hold_their_json_not_orjsons_buffer(
    catalogs: tuple[Catalog, Catalog, Engine],
) -> None:
    # orjson's output holds ~4 KiB of malloc whatever its length; a kept answer is copied into an
    # allocation of its own size (persistence/kept_json.py), or every lot kept costs ~4 KiB.
    here, _, _ = catalogs
    session_id = (await here.create_session(session_spec(deposit=0)))["_id"]
    lot_id = (await here.create_lot(session_id, lot_spec(deposit=0)))["_id"]
    tracemalloc.start(1)
    try:
        for body in (await here.session_view_json(session_id), await here.lot_view_json(lot_id)):
            made_at = tracemalloc.get_object_traceback(body)
            assert made_at is not None and made_at[0].filename.endswith("persistence/kept_json.py")
    finally:
        tracemalloc.stop()
