"""A new order's provider payment in the order's own transaction (the sandbox makes it locally),
and order numbers taken in blocks; on the real embedded MongoDB and Redis."""

import dataclasses
import datetime
import pathlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import tornado.httpclient
from pymongo.asynchronous.database import AsyncDatabase
from redis.commands.core import AsyncScript

from engine.settle.ports import PaidNotice, PaymentRequest, PaymentRouter
from payments.records import ensure_payment_indexes
from payments.sandbox import SandboxProvider, load_or_create_sandbox_keys
from persistence.accounts import Accounts
from persistence.mongo import Database, TxSession, as_utc, connect, ensure_indexes, utc_now
from persistence.shop import ensure_shop_indexes, mongo_shop
from persistence.shop.carts import _DELETE_IF_CHECKOUT, RedisCartStore
from persistence.shop.repos import ORDER_NUMBER_BLOCK, MongoOrders, local_payments
from shop.learning import grant_enrolment
from shop.model import CheckoutAlreadyOrdered
from shop.ports import ShopUnitOfWork
from shop.service import ShopService
from tests.persistence.test_shop import TEST_SCRYPT


@dataclasses.dataclass
class Sandboxed:
    shop: ShopService
    accounts: Accounts
    provider: SandboxProvider
    db: Database
    course_id: int
    policy_id: int

    async def buyer(self, balance: int) -> int:
        user_id, _ = await self.accounts.register(f"buyer{balance}", "correct-horse")
        await self.accounts.credit(user_id, balance, "topup", f"topup:{user_id}")
        await self.shop.cart_add(user_id, self.course_id, self.policy_id)
        return user_id


@pytest.fixture
async def sandboxed(
    mongo_url: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    redis_client: aioredis.Redis,
    tmp_path: pathlib.Path,
) -> AsyncIterator[Sandboxed]:
    client = connect(mongo_url)
    db = client[mongo_db.name]
    await ensure_indexes(db)
    await ensure_shop_indexes(db)
    await ensure_payment_indexes(db)
    private_pem, public_pem = load_or_create_sandbox_keys(tmp_path)
    router = PaymentRouter()
    provider = SandboxProvider(
        "http://127.0.0.1:1",
        "gavel-sandbox",
        private_pem,
        public_pem,
        router,
        tornado.httpclient.AsyncHTTPClient(force_instance=True),
        db=db,
    )
    accounts = Accounts(client, db, scrypt=TEST_SCRYPT)
    shop = mongo_shop(client, db, redis_client, accounts, provider)
    router.register("shop", shop.on_paid, marks_handled=True)  # as gateway/rest_shop.py does
    router.register_settling("shop", shop.settle_paid)
    top = await shop.create_category("Back end", None)
    sub = await shop.create_category("Python", top["_id"])
    course = await shop.create_course(
        {
            "name": "Async Python",
            "image": "",
            "sub_category_id": sub["_id"],
            "course_type": "paid",
            "degree_course_id": None,
            "brief": "",
            "level": "beginner",
            "status": "online",
            "order": 0,
            "period_days": 7,
        }
    )
    policy = await shop.add_policy("course", course["_id"], 30, 9_900)
    try:
        yield Sandboxed(shop, accounts, provider, db, course["_id"], policy["_id"])
    finally:
        await provider.aclose()
        await client.close()


async def test_a_pending_order_is_written_with_its_payment_and_pay_url(
    sandboxed: Sandboxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_call_after_the_commit(request: PaymentRequest) -> str:
        raise AssertionError("the payment was made in the order's transaction")

    monkeypatch.setattr(sandboxed.provider, "create_payment", no_call_after_the_commit)
    user = await sandboxed.buyer(balance=1_000)
    checkout = await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
    placed = await sandboxed.shop.pay(user, 1_000, "key-1")
    order, db = placed.order, sandboxed.db
    out_trade_no = order["out_trade_no"]
    assert placed.created and order["status"] == "pending" and order["to_pay"] == 8_900
    assert order["pay_url"] == sandboxed.provider.pay_url(out_trade_no)
    stored = await db.shop_orders.find_one({"_id": order["_id"]})
    assert stored is not None and stored["pay_url"] == order["pay_url"]  # inserted with it, once
    payment = await db.payments.find_one({"_id": out_trade_no})
    assert payment is not None
    assert (payment["provider"], payment["amount"], payment["status"], payment["user_id"]) == (
        "sandbox",
        8_900,
        "pending",
        user,
    )
    trade = await db.sandbox_trades.find_one({"_id": out_trade_no})
    assert trade is not None and (trade["amount"], trade["status"]) == (8_900, "WAIT_BUYER_PAY")
    assert checkout.checkout_id == stored["checkout_id"]
    # A retry with the same key answers the same order and makes no second payment.
    again = await sandboxed.shop.pay(user, 1_000, "key-1")
    assert not again.created and again.order["pay_url"] == order["pay_url"]
    assert await db.payments.count_documents({}) == 1


async def test_an_order_that_aborts_leaves_no_payment_attempt(
    sandboxed: Sandboxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same checkout placed again under another key: its transaction debits the balance and
    writes the provider's records, then the order's insert is refused (one order per checkout), so
    all of it is rolled back: no payment, no sandbox trade, no second debit."""
    made: list[str] = []
    create_payment_in = sandboxed.provider.create_payment_in

    async def counted(request: PaymentRequest, session: TxSession) -> str:
        made.append(request.out_trade_no)
        return await create_payment_in(request, session)

    monkeypatch.setattr(sandboxed.provider, "create_payment_in", counted)
    user = await sandboxed.buyer(balance=5_000)
    checkout = await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
    first = await sandboxed.shop.place_order(checkout, 1_000, "key-1")
    with pytest.raises(CheckoutAlreadyOrdered):
        await sandboxed.shop.place_order(checkout, 1_000, "key-2")
    db = sandboxed.db
    assert len(made) == 2 and made[0] == first.order["out_trade_no"]  # both wrote, one committed
    assert await db.shop_orders.count_documents({}) == 1
    assert [p["_id"] async for p in db.payments.find({})] == [first.order["out_trade_no"]]
    assert [t["_id"] async for t in db.sandbox_trades.find({})] == [first.order["out_trade_no"]]
    assert (await sandboxed.accounts.profile(user)).balance == 4_000


async def test_order_numbers_come_in_blocks(sandboxed: Sandboxed) -> None:
    """Consecutive orders of one process take consecutive numbers from one counter write."""
    numbers = []
    for balance in (20_000, 20_001, 20_002):
        user = await sandboxed.buyer(balance=balance)
        await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
        numbers.append((await sandboxed.shop.pay(user, 9_900, f"key-{balance}")).order["_id"])
    sequences = [int(number[-8:]) for number in numbers]
    assert sequences == [sequences[0], sequences[0] + 1, sequences[0] + 2]
    counter = await sandboxed.db.counters.find_one({"_id": "shop_orders"})
    assert counter is not None and counter["seq"] == sequences[0] - 1 + ORDER_NUMBER_BLOCK


async def test_a_notification_is_settled_in_one_transaction_and_a_repeat_changes_nothing(
    sandboxed: Sandboxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop's settling handler: our payment record's pending -> paid and handled, the order's
    move and the enrolment in one transaction (nothing written outside it); a repeated
    notification falls to the provider's own checks and answers "already handled"."""
    user = await sandboxed.buyer(balance=1_000)
    await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
    order = (await sandboxed.shop.pay(user, 1_000, "key-1")).order
    provider, db = sandboxed.provider, sandboxed.db
    outside: list[str] = []

    async def paid_outside(*args: Any, **kwargs: Any) -> None:
        outside.append("mark_paid_if")
        return

    async def handled_outside(out_trade_no: str, session: TxSession | None = None) -> None:
        raise AssertionError("marked handled outside the shop's transaction")

    monkeypatch.setattr(provider.records, "mark_handled", handled_outside)
    monkeypatch.setattr(provider.records, "mark_paid_if", paid_outside)
    trade = {
        "_id": order["out_trade_no"],
        "subject": "Courses",
        "amount": 8_900,
        "trade_no": "SBX1",
        "notify_id": "n1",
        "status": "TRADE_SUCCESS",
    }
    result = await provider.handle_notification(provider.notification(trade))
    assert (result.ok, result.detail, outside) == (True, "paid", [])
    payment = await db.payments.find_one({"_id": order["out_trade_no"]})
    assert payment is not None
    assert (payment["status"], payment["handled"], payment["trade_no"]) == ("paid", True, "SBX1")
    stored = await db.shop_orders.find_one({"_id": order["_id"]})
    assert stored is not None
    assert (stored["status"], stored["paid_trade_no"]) == ("paid", order["out_trade_no"])
    enrolled = [e["course_id"] async for e in db.shop_enrolments.find({"user_id": user})]
    assert enrolled == [sandboxed.course_id]
    again = await provider.handle_notification(provider.notification(trade))
    assert (again.ok, again.detail, outside) == (True, "already handled", ["mark_paid_if"])
    assert await db.shop_enrolments.count_documents({"user_id": user}) == 1


async def test_forgetting_a_paid_checkout_is_one_round_trip_even_for_a_script_redis_lacks(
    sandboxed: Sandboxed,
) -> None:
    """`forget` sends the script by digest with the cart's HDEL in one pipeline; a Redis that lacks
    the script (restarted, flushed: here a variant it never saw) gets it and still forgets only
    the paid checkout."""
    carts = sandboxed.shop.carts
    assert isinstance(carts, RedisCartStore)
    unseen = f"{_DELETE_IF_CHECKOUT}\n-- {uuid.uuid4().hex}"
    carts._delete_if_checkout = AsyncScript(carts.redis, unseen)
    for attempt in range(2):  # unknown to Redis, then loaded
        user = await sandboxed.buyer(balance=30_000 + attempt)
        paid = await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
        await carts.forget(user, "another-checkout", [])  # a newer checkout of this user survives it
        assert await carts.load_checkout(user) is not None
        await carts.forget(user, paid.checkout_id, [sandboxed.course_id])
        assert await carts.load_checkout(user) is None
        assert await sandboxed.shop.cart(user) == []


async def test_a_first_enrolment_is_inserted_and_an_older_one_of_another_id_extended(
    sandboxed: Sandboxed,
) -> None:
    """`add_first` inserts only when the user has no enrolment in the course at all: one from
    before enrolments were keyed by user and course (`{order}:{course}`) is extended, not doubled."""
    now = utc_now()
    db, store = sandboxed.db, sandboxed.shop.store
    legacy_end = now + datetime.timedelta(days=10)
    await db.shop_enrolments.insert_one(
        {
            "_id": "2026010100000001:7",
            "user_id": 5,
            "course_id": 7,
            "course_name": "c",
            "order_no": "2026010100000001",
            "valid_from": now - datetime.timedelta(days=20),
            "valid_to": legacy_end,
            "status": "valid",
        }
    )

    async def bought(user_id: int, order_no: str) -> None:
        async def work(uow: ShopUnitOfWork) -> None:
            await grant_enrolment(
                uow.enrolments,
                user_id=user_id,
                course_id=7,
                course_name="c",
                order_no=order_no,
                days=30,
                now=now,
            )

        await store.atomically(work)

    await bought(5, "o2")
    await bought(6, "o3")
    [older] = [e async for e in db.shop_enrolments.find({"user_id": 5})]
    assert older["_id"] == "2026010100000001:7" and older["order_nos"] == ["o2"]
    assert as_utc(older["valid_to"]) == legacy_end + datetime.timedelta(days=30)
    [first] = [e async for e in db.shop_enrolments.find({"user_id": 6})]
    assert (first["_id"], first["order_nos"]) == ("6:7", ["o3"])
    assert as_utc(first["valid_to"]) == now + datetime.timedelta(days=30)


def test_a_provider_is_asked_for_local_payments_without_touching_its_attributes(
    tmp_path: pathlib.Path,
) -> None:
    """The admin's shop instance is built with a stand-in provider that refuses every attribute:
    building the store must not ask it (composition/backoffice.py `_NoProvider`)."""

    class Refusing:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name} here")

    private_pem, public_pem = load_or_create_sandbox_keys(tmp_path)
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    no_database: Any = {}  # never reached
    router = PaymentRouter()
    sandbox = SandboxProvider("http://x", "app", private_pem, public_pem, router, client, db=no_database)
    assert local_payments(Refusing()) is None
    assert local_payments(sandbox) is sandbox


async def test_an_order_cancelled_after_the_settling_read_is_not_paid(
    sandboxed: Sandboxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settling transaction moves the order by `_id` alone, relying on its own read: the owner
    cancelling in between (committed after that read) makes the move a write conflict, and the
    retried transaction reads the cancelled order and settles nothing (the provider's own path then
    takes the payment as a late one). The order is never paid, the course never enrolled."""
    user = await sandboxed.buyer(balance=1_000)
    await sandboxed.shop.create_checkout(user, [sandboxed.course_id])
    order = (await sandboxed.shop.pay(user, 1_000, "key-1")).order
    order_no, db = str(order["_id"]), sandboxed.db
    read = MongoOrders.for_trade_no
    reads: list[str] = []

    async def read_then_cancel(self: MongoOrders, out_trade_no: str) -> Any:
        found = await read(self, out_trade_no)
        reads.append(found["status"])
        if len(reads) == 1:  # committed by the owner after the settling transaction's read
            await sandboxed.shop.cancel_order(user, order_no)
        return found

    monkeypatch.setattr(MongoOrders, "for_trade_no", read_then_cancel)
    notice = PaidNotice(order["out_trade_no"], "sandbox", 8_900, "SBX1", "n1")
    assert await sandboxed.shop.settle_paid(notice) is False
    assert reads == ["pending", "cancelled_by_user"]  # the move conflicted; the retry saw the cancel
    stored = await db.shop_orders.find_one({"_id": order_no})
    assert stored is not None and stored["status"] == "cancelled_by_user"
    assert stored.get("paid_at") is None and stored.get("paid_trade_no") is None
    payment = await db.payments.find_one({"_id": order["out_trade_no"]})
    assert payment is not None and payment["status"] == "closed" and not payment.get("handled")
    assert await db.shop_enrolments.count_documents({"user_id": user}) == 0
    assert (await sandboxed.accounts.profile(user)).balance == 1_000  # the held balance came back
