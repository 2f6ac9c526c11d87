"""A new order's provider payment in the order's own transaction (the sandbox makes it locally),
and order numbers taken in blocks; on the real embedded MongoDB and Redis."""

import dataclasses
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import tornado.httpclient
from pymongo.asynchronous.database import AsyncDatabase

from engine.settle.ports import PaymentRequest, PaymentRouter
from payments.records import ensure_payment_indexes
from payments.sandbox import SandboxProvider, load_or_create_sandbox_keys
from persistence.accounts import Accounts
from persistence.mongo import Database, TxSession, connect, ensure_indexes
from persistence.shop import ensure_shop_indexes, mongo_shop
from persistence.shop.repos import ORDER_NUMBER_BLOCK
from shop.model import CheckoutAlreadyOrdered
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
    provider = SandboxProvider(
        "http://127.0.0.1:1",
        "gavel-sandbox",
        private_pem,
        public_pem,
        PaymentRouter(),
        tornado.httpclient.AsyncHTTPClient(force_instance=True),
        db=db,
    )
    accounts = Accounts(client, db, scrypt=TEST_SCRYPT)
    shop = mongo_shop(client, db, redis_client, accounts, provider)
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
