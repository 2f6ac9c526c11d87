"""Settlement over the real embedded MongoDB: every money movement with exact figures, crashes
between steps, concurrent coupon claims, and a state machine that checks the money invariant.

The engine and the payment provider are outside the store under test: a recording callable stands
in for `engine.execute`, an in-memory `PaymentProvider` for the provider (both are ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.errors import GavelError
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import BlockBidder, Command, MarkOverdue, Outcome, UnblockBidder
from engine.settle.ports import PaymentRequest
from engine.settle.rules import DEFAULT_PAYMENT_WINDOW_MS, PaymentCase
from engine.settle.worker import (
    OrderPayments,
    PaymentResult,
    PayRequest,
    PayWith,
    SettlementWorker,
    StepHook,
)
from payments.trade_numbers import is_random_trade_no, new_trade_no
from persistence.accounts import Accounts, ScryptParams
from persistence.archive import BUCKETS, archived_bids
from persistence.mongo import (
    Client,
    Database,
    TxSession,
    connect,
    ensure_indexes,
    next_id,
    run_in_transaction,
    utc_now,
)
from persistence.settlement import MongoSettlement, ensure_settlement_indexes, money_totals

T0 = 1_700_000_000_000
DAY = DEFAULT_PAYMENT_WINDOW_MS
T = TypeVar("T")
_keys = itertools.count(1)


class Crash(BaseException):
    """A simulated process death: not an Exception, so nothing on the way catches it."""


class FakeProvider:
    """The PaymentProvider port in memory: payments are recorded, refunds idempotent per ref."""

    name = "fake"

    def __init__(self) -> None:
        self.payments: list[PaymentRequest] = []
        self.refunds: dict[str, tuple[str, int]] = {}

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments.append(request)
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        self.refunds.setdefault(refund_ref, (out_trade_no, amount))


class FakeEngine:
    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.answer = Outcome(True, None, "", 1, None)

    async def __call__(self, command: Command) -> Outcome:
        self.commands.append(command)
        return self.answer


@dataclasses.dataclass
class World:
    client: Client
    db: Database
    accounts: Accounts
    store: MongoSettlement
    clock: FakeClock
    provider: FakeProvider
    engine: FakeEngine

    def worker(self, hook: StepHook | None = None, *, provider: bool = True) -> SettlementWorker:
        return SettlementWorker(
            self.store, self.engine, self.clock, provider=self.provider if provider else None, hook=hook
        )

    def payments(self, worker: SettlementWorker | None = None) -> OrderPayments:
        worker = worker or self.worker()
        return OrderPayments(self.store, worker, self.provider)

    # -- setting the scene ---------------------------------------------------------------------------
    async def user(self, credit: int = 0) -> int:
        user_id = await next_id(self.db, "users")
        await self.db.users.insert_one(
            {
                "_id": user_id,
                "username": f"user{user_id}",
                "username_key": f"user{user_id}",
                "password_hash": "unused",
                "balance": 0,
                "is_admin": False,
                "non_payer": False,
            }
        )
        if credit:
            await self.credit(user_id, credit)
        return user_id

    async def credit(self, user_id: int, amount: int) -> None:
        await self.accounts.credit(user_id, amount, "admin_credit", f"admin-credit:{uuid.uuid4().hex}")

    async def session(self, *, deposit: int = 0, ended: bool = True) -> int:
        session_id = await next_id(self.db, "sessions")
        await self.db.sessions.insert_one(
            {"_id": session_id, "title": "Spring porcelain", "deposit": deposit, "state": 4 if ended else 3}
        )
        return session_id

    async def end_session(self, session_id: int) -> None:
        await self.db.sessions.update_one({"_id": session_id}, {"$set": {"state": 4}})

    async def lot(self, session_id: int, title: str = "Blue and white vase") -> int:
        lot_id = await next_id(self.db, "lots")
        await self.db.lots.insert_one(
            {
                "_id": lot_id,
                "session_id": session_id,
                "catalogue_no": f"L{lot_id}",
                "title": title,
                "state": 3,
            }
        )
        return lot_id

    async def deposit(
        self, user_id: int, session_id: int, lot_id: int | None, amount: int, pay_with: PayWith = "balance"
    ) -> int:
        """A paid deposit exactly as persistence/deposits.py writes one."""
        deposit_id = await next_id(self.db, "deposits")
        doc = {
            "_id": deposit_id,
            "user_id": user_id,
            "session_id": session_id,
            "lot_id": lot_id,
            "amount": amount,
            "pay_with": pay_with,
            "status": "paid",
            "created_at": utc_now(),
            "paid_at": utc_now(),
            "payment_id": None if pay_with == "balance" else secrets.token_urlsafe(16),
        }
        if pay_with == "provider":
            await self.db.deposits.insert_one(doc)
            return deposit_id

        async def pay(s: TxSession) -> None:
            await self.db.deposits.insert_one(doc, session=s)
            await self.accounts.debit(user_id, amount, "deposit", f"deposit:{deposit_id}", session=s)

        await run_in_transaction(self.client, pay)
        return deposit_id

    async def close(
        self, lot_id: int, session_id: int, winner: int | None, price: int, *, bid_count: int = 3
    ) -> None:
        """What the archiver writes when the engine closes a lot: the bid records, the outbox row."""
        seq = await next_id(self.db, "test_seq")
        if winner is not None:
            await self.db[BUCKETS].insert_one(
                {
                    "_id": f"{lot_id}:{seq}",
                    "lot_id": lot_id,
                    "session_id": session_id,
                    "first_seq": seq,
                    "last_seq": seq,
                    "count": 1,
                    "seq": [seq],
                    "bidder": [winner],
                    "price": [price],
                    "auto": [False],
                    "at": [self.clock.now_ms()],
                }
            )
        await self.db.settlement_outbox.insert_one(
            {
                "_id": lot_id,
                "session_id": session_id,
                "result": int(LotState.SOLD if winner is not None else LotState.UNSOLD),
                "winner_id": winner,
                "price": price,
                "bid_count": bid_count,
                "closed_at_ms": self.clock.now_ms(),
                "seq": seq,
                "status": "pending",
            }
        )

    async def address(self, user_id: int) -> int:
        doc = await self.store.create_address(
            user_id, {"name": "Zhang Da", "phone": "13800000000", "detail": "1 Fuxing Rd, Taiyuan"}
        )
        return int(doc["_id"])

    async def coupon(self, session_id: int, amount: int, user_id: int) -> int:
        """A claimed coupon (the claim window is open now); returns the user coupon id."""
        now = self.clock.now_ms()
        coupon = await self.store.create_coupon(session_id, "Spring", amount, 100, now - 1_000, now + DAY)
        claimed = await self.store.claim_coupon(int(coupon["_id"]), user_id, now)
        return int(claimed["_id"])

    async def won_order(
        self, user_id: int, price: int, session_id: int | None = None
    ) -> tuple[int, int, int]:
        """A lot won by `user_id` at `price`, closed and drained: (session_id, lot_id, order_id)."""
        session_id = session_id or await self.session()
        lot_id = await self.lot(session_id)
        await self.close(lot_id, session_id, user_id, price)
        await self.worker().drain_outbox()
        order = await self.db.orders.find_one({"lot_id": lot_id})
        assert order is not None
        return session_id, lot_id, int(order["_id"])

    # -- paying ------------------------------------------------------------------------------------------
    async def pay(
        self,
        order_id: int,
        user_id: int,
        *,
        coupon_id: int | None = None,
        pay_with: PayWith = "balance",
        key: str | None = None,
    ) -> PaymentResult:
        address_id = await self.address(user_id)
        request = PayRequest(order_id, user_id, coupon_id, address_id, pay_with, key or f"k{next(_keys)}")
        return await self.payments().pay(request)

    # -- looking ------------------------------------------------------------------------------------------
    async def balance(self, user_id: int) -> int:
        return (await self.accounts.profile(user_id)).balance

    async def deposit_doc(self, deposit_id: int) -> dict[str, Any]:
        doc = await self.db.deposits.find_one({"_id": deposit_id})
        assert doc is not None
        return doc

    async def order(self, order_id: int) -> dict[str, Any]:
        return await self.store.order(order_id)

    async def _sums_by_deposit(self, collection: str) -> dict[int, int]:
        pipeline = [{"$group": {"_id": "$deposit_id", "total": {"$sum": "$amount"}}}]
        return {row["_id"]: row["total"] async for row in await self.db[collection].aggregate(pipeline)}

    async def check_money(self) -> None:
        """The money invariant, the ledger invariant, and the uniqueness of every settlement record."""
        totals = await money_totals(self.db)
        assert totals.conserved, totals
        ledger_sums = {
            row["_id"]: row["total"]
            async for row in await self.db.ledger.aggregate(
                [{"$group": {"_id": "$user_id", "total": {"$sum": "$amount"}}}]
            )
        }
        async for user in self.db.users.find({}, {"balance": 1}):
            assert user["balance"] >= 0
            assert user["balance"] == ledger_sums.get(user["_id"], 0), user
        taken = await self._sums_by_deposit("deductions")
        refunded = await self._sums_by_deposit("refunds")
        async for deposit in self.db.deposits.find({"status": {"$in": ["paid", "refunded", "consumed"]}}):
            remaining = deposit.get("remaining", deposit["amount"])
            assert 0 <= remaining <= deposit["amount"]
            # Every fen of a deposit is still held, deducted, or (being) refunded.
            assert (
                taken.get(deposit["_id"], 0) + refunded.get(deposit["_id"], 0) + remaining
                == deposit["amount"]
            )
        for collection, key in (("orders", "lot_id"), ("refunds", "deposit_id"), ("deductions", "order_id")):
            values = await self.db[collection].distinct(key)
            assert len(values) == await self.db[collection].count_documents({}), collection


@contextlib.asynccontextmanager
async def make_world(mongo_url: str, db_name: str) -> AsyncIterator[World]:
    client = connect(mongo_url)
    db = client[db_name]
    await ensure_indexes(db)
    await ensure_settlement_indexes(db)
    accounts = Accounts(client, db, scrypt=ScryptParams(n=2**10, r=8, p=1))
    try:
        yield World(
            client,
            db,
            accounts,
            MongoSettlement(client, db, accounts),
            FakeClock(T0),
            FakeProvider(),
            FakeEngine(),
        )
    finally:
        await client.close()


@pytest.fixture
async def world(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[World]:
    async with make_world(mongo_url, mongo_db.name) as w:
        yield w


async def raises_code(code: str, awaitable: Awaitable[Any]) -> GavelError:
    with pytest.raises(GavelError) as caught:
        await awaitable
    assert caught.value.code == code, caught.value
    return caught.value


# -- closing lots ------------------------------------------------------------------------------------------
async def test_sold_lot_makes_one_order_and_refunds_the_losers(world: World) -> None:
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    winner, loser_a, loser_b = await world.user(10_000), await world.user(5_000), await world.user(5_000)
    held = await world.deposit(winner, session_id, lot_id, 2_000)
    refunded_a = await world.deposit(loser_a, session_id, lot_id, 2_000)
    refunded_b = await world.deposit(loser_b, session_id, lot_id, 2_000)
    await world.close(lot_id, session_id, winner, 12_000, bid_count=5)

    assert await world.worker().drain_outbox() == 1
    [order] = await world.db.orders.find({}).to_list()
    assert (order["user_id"], order["lot_id"], order["price"], order["status"]) == (winner, lot_id, 12_000, 1)
    assert order["deadline_ms"] == T0 + DAY
    [bid] = await archived_bids(world.db, lot_id)
    assert (bid.bidder, bid.price, bid.status) == (winner, 12_000, 2)  # 成交
    lot = await world.db.lots.find_one({"_id": lot_id})
    assert lot is not None and (lot["deal_price"], lot["winner_id"], lot["order_id"]) == (
        12_000,
        winner,
        order["_id"],
    )
    session = await world.db.sessions.find_one({"_id": session_id})
    assert session is not None
    assert (session["deal_total"], session["bid_count"], session["sold_count"]) == (12_000, 5, 1)
    for loser, deposit_id in ((loser_a, refunded_a), (loser_b, refunded_b)):
        assert await world.balance(loser) == 5_000
        refund = await world.db.refunds.find_one({"deposit_id": deposit_id})
        assert refund is not None and (refund["amount"], refund["status"], refund["via"]) == (
            2_000,
            "refunded",
            "balance",
        )
        entry = await world.db.ledger.find_one({"ref": f"deposit-refund:{deposit_id}"})
        assert entry is not None and (entry["kind"], entry["amount"], entry["balance_after"]) == (
            "deposit_refund",
            2_000,
            5_000,
        )
        assert (await world.deposit_doc(deposit_id))["status"] == "refunded"
    assert (await world.deposit_doc(held))["status"] == "paid"  # held against the order
    assert await world.balance(winner) == 8_000
    outbox = await world.db.settlement_outbox.find_one({"_id": lot_id})
    assert outbox is not None and outbox["status"] == "done"

    # Draining again (a retry, another worker) changes nothing.
    assert await world.worker().drain_outbox() == 0
    assert await world.db.orders.count_documents({}) == 1
    assert await world.db.refunds.count_documents({}) == 2
    await world.check_money()


async def test_unsold_lot_refunds_every_deposit(world: World) -> None:
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    bidder = await world.user(3_000)
    deposit_id = await world.deposit(bidder, session_id, lot_id, 1_000)
    await world.close(lot_id, session_id, None, 9_000, bid_count=2)
    await world.worker().drain_outbox()

    assert await world.db.orders.count_documents({}) == 0
    lot = await world.db.lots.find_one({"_id": lot_id})
    assert lot is not None and lot["state"] == 5  # 流拍
    session = await world.db.sessions.find_one({"_id": session_id})
    assert session is not None and (session["bid_count"], session["unsold_count"]) == (2, 1)
    assert "deal_total" not in session
    assert await world.balance(bidder) == 3_000
    assert (await world.deposit_doc(deposit_id))["status"] == "refunded"
    await world.check_money()


# -- paying: the four cases with exact figures -----------------------------------------------------------
@pytest.mark.parametrize(
    ("price", "coupon", "deposit", "credit", "split", "balance_after", "deposit_status"),
    [
        # P − C ≤ 0: nothing to pay, the coupon is used, the per-lot deposit comes back whole.
        (500, 800, 1_000, 1_000, (PaymentCase.COUPON_COVERS, 500, 0, 1_000, 0, 0), 1_000, "refunded"),
        # P − C − D = 0: the deposit pays it all.
        (
            3_000,
            1_000,
            2_000,
            2_000,
            (PaymentCase.DEPOSIT_COVERS_EXACTLY, 1_000, 2_000, 0, 0, 0),
            0,
            "consumed",
        ),
        # P − C − D < 0: P − C deducted, the rest refunded.
        (3_000, 500, 5_000, 5_000, (PaymentCase.DEPOSIT_EXCEEDS, 500, 2_500, 2_500, 0, 0), 2_500, "refunded"),
        # P − C − D > 0: the whole deposit, then 7 000 from the balance.
        (10_000, 1_000, 2_000, 9_500, (PaymentCase.BALANCE_DUE, 1_000, 2_000, 0, 0, 7_000), 500, "consumed"),
    ],
)
async def test_payment_cases(
    world: World,
    price: int,
    coupon: int,
    deposit: int,
    credit: int,
    split: tuple[PaymentCase, int, int, int, int, int],
    balance_after: int,
    deposit_status: str,
) -> None:
    buyer = await world.user(credit)
    session_id = await world.session()
    lot_id = await world.lot(session_id)
    deposit_id = await world.deposit(buyer, session_id, lot_id, deposit)
    await world.close(lot_id, session_id, buyer, price)
    await world.worker().drain_outbox()
    [order] = await world.db.orders.find({}).to_list()
    coupon_id = await world.coupon(session_id, coupon, buyer)

    result = await world.pay(order["_id"], buyer, coupon_id=coupon_id)

    _case, coupon_used, deducted, refunded, _kept, to_pay = split
    got = result.split
    assert (
        got.case,
        got.coupon_used,
        got.deposit_deducted,
        got.deposit_refunded,
        got.deposit_kept,
        got.to_pay,
    ) == split
    assert await world.balance(buyer) == balance_after
    paid = await world.order(order["_id"])
    assert paid["status"] == 2  # 待收货
    assert paid["payment"]["paid_amount"] == price - coupon_used == deducted + to_pay
    assert paid["payment"]["cash_amount"] == to_pay
    assert paid["address"]["detail"] == "1 Fuxing Rd, Taiyuan"
    used = await world.db.user_coupons.find_one({"_id": coupon_id})
    assert used is not None and (used["status"], used["order_id"]) == (2, order["_id"])
    deduction = await world.db.deductions.find_one({"order_id": order["_id"]})
    if deducted:
        assert deduction is not None and (deduction["type"], deduction["amount"]) == ("payment", deducted)
    else:
        assert deduction is None
    refund = await world.db.refunds.find_one({"deposit_id": deposit_id})
    if refunded:
        assert refund is not None and (refund["amount"], refund["status"]) == (refunded, "refunded")
    else:
        assert refund is None
    assert (await world.deposit_doc(deposit_id))["status"] == deposit_status
    payment_entry = await world.db.ledger.find_one({"ref": f"order-pay:{order['_id']}"})
    if to_pay:
        assert payment_entry is not None and (payment_entry["amount"], payment_entry["balance_after"]) == (
            -to_pay,
            balance_after,
        )
    else:
        assert payment_entry is None
    await world.check_money()


async def test_short_balance_is_refused_and_changes_nothing(world: World) -> None:
    buyer = await world.user(8_999)
    session_id = await world.session()
    lot_id = await world.lot(session_id)
    deposit_id = await world.deposit(buyer, session_id, lot_id, 2_000)
    await world.close(lot_id, session_id, buyer, 10_000)
    await world.worker().drain_outbox()
    [order] = await world.db.orders.find({}).to_list()
    coupon_id = await world.coupon(session_id, 1_000, buyer)

    # 10 000 − 1 000 − 2 000 = 7 000 due; the balance holds 6 999.
    await raises_code("INSUFFICIENT_BALANCE", world.pay(order["_id"], buyer, coupon_id=coupon_id))

    assert (await world.order(order["_id"]))["status"] == 1
    assert await world.balance(buyer) == 6_999
    deposit = await world.deposit_doc(deposit_id)
    assert deposit["status"] == "paid" and deposit.get("remaining", deposit["amount"]) == 2_000
    coupon = await world.db.user_coupons.find_one({"_id": coupon_id})
    assert coupon is not None and coupon["status"] == 1
    assert await world.db.deductions.count_documents({}) == 0
    await world.credit(buyer, 1)
    result = await world.pay(order["_id"], buyer, coupon_id=coupon_id)
    assert result.split.to_pay == 7_000 and await world.balance(buyer) == 0
    await world.check_money()


async def test_pay_refusals(world: World) -> None:
    buyer, other = await world.user(50_000), await world.user(50_000)
    session_id, _lot_id, order_id = await world.won_order(buyer, 3_000, await world.session(ended=False))
    address_id = await world.address(buyer)
    payments = world.payments()

    def request(**changes: Any) -> PayRequest:
        base = PayRequest(order_id, buyer, None, address_id, "balance", "key-1")
        return dataclasses.replace(base, **changes)

    # Someone else's order is as unknown as a missing one.
    await raises_code("NOT_FOUND", payments.pay(request(user_id=other)))
    await raises_code("NOT_FOUND", payments.pay(request(order_id=order_id + 1000)))
    # Someone else's address, or none.
    other_address = await world.address(other)
    await raises_code("ADDRESS_REQUIRED", payments.pay(request(address_id=other_address)))
    # Another user's coupon, a coupon of another session, an unknown coupon.
    others_coupon = await world.coupon(session_id, 500, other)
    await raises_code("COUPON_NOT_USABLE", payments.pay(request(coupon_id=others_coupon)))
    elsewhere = await world.coupon(await world.session(ended=False), 500, buyer)
    await raises_code("COUPON_NOT_USABLE", payments.pay(request(coupon_id=elsewhere)))
    # Provider payments need a provider.
    no_provider = OrderPayments(world.store, world.worker(provider=False), None)
    await raises_code("PAYMENT_UNAVAILABLE", no_provider.pay(request(pay_with="provider")))

    paid = await payments.pay(request())
    assert paid.status == 2 and not paid.replayed
    # The same idempotency key answers the same, and moves no money again.
    again = await payments.pay(request())
    assert again.replayed and again.split == paid.split
    assert await world.balance(buyer) == 47_000
    await raises_code("ORDER_NOT_PAYABLE", payments.pay(request(idempotency_key="key-2")))
    await world.check_money()


async def test_paying_after_the_deadline_is_refused(world: World) -> None:
    buyer = await world.user(5_000)
    _session_id, _lot_id, order_id = await world.won_order(buyer, 3_000)
    world.clock.set(T0 + DAY)
    await raises_code("ORDER_NOT_PAYABLE", world.pay(order_id, buyer))


# -- a whole-session deposit shared by two won lots -------------------------------------------------------
async def test_session_deposit_shared_by_two_won_lots(world: World) -> None:
    buyer = await world.user(10_000)
    session_id = await world.session(deposit=5_000)
    deposit_id = await world.deposit(buyer, session_id, None, 5_000)
    _, _, order_a = await world.won_order(buyer, 1_000, session_id)
    _, _, order_b = await world.won_order(buyer, 3_000, session_id)
    assert await world.balance(buyer) == 5_000

    # Lot A: 1 000 − 0 − 5 000 < 0: 1 000 deducted; the rest stays held, lot B is unpaid.
    first = await world.pay(order_a, buyer)
    assert (first.split.deposit_deducted, first.split.deposit_refunded, first.split.deposit_kept) == (
        1_000,
        0,
        4_000,
    )
    deposit = await world.deposit_doc(deposit_id)
    assert (deposit["status"], deposit["remaining"]) == ("paid", 4_000)
    assert await world.balance(buyer) == 5_000

    # Lot B: 3 000 − 0 − 4 000 < 0: 3 000 deducted, the last 1 000 refunded.
    second = await world.pay(order_b, buyer)
    assert (second.split.deposit_deducted, second.split.deposit_refunded, second.split.deposit_kept) == (
        3_000,
        1_000,
        0,
    )
    assert await world.balance(buyer) == 6_000
    deposit = await world.deposit_doc(deposit_id)
    assert (deposit["status"], deposit["remaining"]) == ("refunded", 0)
    deductions = await world.db.deductions.find({}).sort("order_id", 1).to_list()
    assert [(d["order_id"], d["type"], d["amount"]) for d in deductions] == [
        (order_a, "payment", 1_000),
        (order_b, "payment", 3_000),
    ]
    [refund] = await world.db.refunds.find({}).to_list()
    assert (refund["deposit_id"], refund["amount"], refund["reason"]) == (deposit_id, 1_000, "payment_rest")
    await world.worker().settle_ended_sessions()
    session = await world.db.sessions.find_one({"_id": session_id})
    assert session is not None and session["deposits_settled"] is True
    await world.check_money()


async def test_session_deposit_is_held_until_the_session_ends(world: World) -> None:
    buyer, bystander = await world.user(10_000), await world.user(10_000)
    session_id = await world.session(deposit=5_000, ended=False)
    held = await world.deposit(buyer, session_id, None, 5_000)
    unused = await world.deposit(bystander, session_id, None, 5_000)
    _, _, order_id = await world.won_order(buyer, 2_000, session_id)
    keep_coupon = await world.coupon(session_id, 100, bystander)

    # The session still runs: its deposit may still be needed for more wins.
    paid = await world.pay(order_id, buyer)
    assert (paid.split.deposit_deducted, paid.split.deposit_kept, paid.split.deposit_refunded) == (
        2_000,
        3_000,
        0,
    )
    worker = world.worker()
    assert await worker.settle_ended_sessions() == 0
    assert await world.balance(bystander) == 5_000

    await world.end_session(session_id)
    assert await worker.settle_ended_sessions() == 1
    assert await world.balance(buyer) == 8_000  # 10 000 − 5 000 + 3 000
    assert await world.balance(bystander) == 10_000  # won nothing: all of it
    assert (
        (await world.deposit_doc(held))["status"] == (await world.deposit_doc(unused))["status"] == "refunded"
    )
    coupon = await world.db.user_coupons.find_one({"_id": keep_coupon})
    assert coupon is not None and coupon["status"] == 3  # the session is over: 已过期
    await world.check_money()


# -- overdue ------------------------------------------------------------------------------------------------
async def test_overdue_forfeits_the_lot_deposit_and_flags_the_non_payer(world: World) -> None:
    buyer = await world.user(5_000)
    session_id = await world.session()
    lot_id = await world.lot(session_id)
    deposit_id = await world.deposit(buyer, session_id, lot_id, 2_000)
    await world.close(lot_id, session_id, buyer, 10_000)
    worker = world.worker()
    await worker.drain_outbox()
    [order] = await world.db.orders.find({}).to_list()

    assert await worker.sweep_overdue(T0 + DAY - 1) == 0
    world.clock.set(T0 + DAY)
    assert await worker.sweep_overdue() == 1

    overdue = await world.order(order["_id"])
    assert (overdue["status"], overdue["forfeit"], overdue["engine_synced"]) == (4, 2_000, True)
    [deduction] = await world.db.deductions.find({}).to_list()
    assert (deduction["order_id"], deduction["type"], deduction["amount"]) == (order["_id"], "overdue", 2_000)
    assert (await world.deposit_doc(deposit_id))["status"] == "consumed"
    lot = await world.db.lots.find_one({"_id": lot_id})
    [bid] = await archived_bids(world.db, lot_id)
    user = await world.db.users.find_one({"_id": buyer})
    assert lot is not None and lot["state"] == 6  # 逾期未支付
    assert (bid.bidder, bid.status) == (buyer, 3)  # 逾期未付款
    assert user is not None and user["non_payer"] is True
    assert world.engine.commands == [MarkOverdue(lot_id), BlockBidder(buyer)]
    assert await world.balance(buyer) == 3_000
    await raises_code("ORDER_NOT_PAYABLE", world.pay(order["_id"], buyer))
    assert await worker.sweep_overdue() == 0  # once

    assert await worker.clear_non_payer(buyer) is True
    assert world.engine.commands[-1] == UnblockBidder(buyer)
    user = await world.db.users.find_one({"_id": buyer})
    assert user is not None and user["non_payer"] is False
    assert await worker.clear_non_payer(buyer) is False
    await raises_code("NOT_FOUND", worker.clear_non_payer(999_999))
    await world.check_money()


async def test_overdue_forfeit_from_a_session_deposit(world: World) -> None:
    buyer = await world.user(10_000)
    session_id = await world.session(deposit=5_000)
    deposit_id = await world.deposit(buyer, session_id, None, 5_000)
    _, _, order_a = await world.won_order(buyer, 3_000, session_id)
    _, _, order_b = await world.won_order(buyer, 1_000, session_id)
    await world.pay(order_b, buyer)  # 1 000 deducted, 4 000 kept for lot A
    assert (await world.deposit_doc(deposit_id))["remaining"] == 4_000

    world.clock.set(T0 + DAY)
    worker = world.worker()
    assert await worker.sweep_overdue() == 1
    # The forfeit takes min(4 000 held, 3 000 price); nothing else is unpaid: 1 000 comes back.
    overdue = await world.order(order_a)
    assert (overdue["status"], overdue["forfeit"]) == (4, 3_000)
    deductions = await world.db.deductions.find({}).sort("order_id", 1).to_list()
    assert [(d["order_id"], d["type"], d["amount"]) for d in deductions] == [
        (order_a, "overdue", 3_000),
        (order_b, "payment", 1_000),
    ]
    assert await world.balance(buyer) == 6_000
    assert (await world.deposit_doc(deposit_id))["status"] == "refunded"
    await world.check_money()


async def test_forfeit_keeps_the_session_deposit_rest_while_another_order_is_unpaid(world: World) -> None:
    buyer = await world.user(20_000)
    session_id = await world.session(deposit=5_000)
    deposit_id = await world.deposit(buyer, session_id, None, 5_000)
    _, _, order_a = await world.won_order(buyer, 2_000, session_id)
    world.clock.advance(DAY // 2)
    _, _, order_b = await world.won_order(buyer, 9_000, session_id)

    world.clock.set(T0 + DAY)  # A is due, B is not
    assert await world.worker().sweep_overdue() == 1
    assert (await world.order(order_a))["forfeit"] == 2_000
    assert (await world.deposit_doc(deposit_id))["remaining"] == 3_000  # held for B
    paid = await world.pay(order_b, buyer)
    assert (paid.split.deposit_deducted, paid.split.to_pay) == (3_000, 6_000)
    assert await world.balance(buyer) == 20_000 - 5_000 - 6_000
    await world.check_money()


# -- the payment provider ------------------------------------------------------------------------------
async def test_provider_payment_is_applied_once_and_stale_attempts_are_refunded(world: World) -> None:
    buyer = await world.user(2_000)
    session_id = await world.session()
    lot_id = await world.lot(session_id)
    deposit_id = await world.deposit(buyer, session_id, lot_id, 2_000)
    await world.close(lot_id, session_id, buyer, 10_000)
    await world.worker().drain_outbox()
    [order] = await world.db.orders.find({}).to_list()
    order_id = order["_id"]
    payments = world.payments()

    first = await world.pay(order_id, buyer, pay_with="provider", key="attempt-1")
    assert first.status == 1 and first.charge is not None
    first_no = first.charge.out_trade_no  # 128 random bits (payments/trade_numbers.py)
    assert is_random_trade_no(first_no) and first_no.startswith("ord-") and first.charge.amount == 8_000
    assert first.charge.pay_url == f"https://pay.example/{first_no}"
    assert world.provider.payments[-1].amount == 8_000
    again = await world.pay(order_id, buyer, pay_with="provider", key="attempt-1")
    assert again.replayed and again.charge == first.charge and len(world.provider.payments) == 1
    # Nothing moved yet.
    assert (await world.deposit_doc(deposit_id))["status"] == "paid"
    second = await world.pay(order_id, buyer, pay_with="provider", key="attempt-2")
    assert second.charge is not None and is_random_trade_no(second.charge.out_trade_no)
    second_no = second.charge.out_trade_no
    assert second_no != first_no

    # The first attempt's notification arrives: stale, so refunded, never kept.
    await payments.on_provider_paid(first_no, 8_000)
    assert world.provider.refunds == {f"refund-{first_no}": (first_no, 8_000)}
    assert (await world.order(order_id))["status"] == 1
    # A wrong amount for the live attempt: refunded too.
    await payments.on_provider_paid(f"ord-{order_id}-3", 1)
    assert f"refund-ord-{order_id}-3" in world.provider.refunds

    await payments.on_provider_paid(second_no, 8_000)
    paid = await world.order(order_id)
    assert paid["status"] == 2
    assert (
        paid["payment"]["cash_source"],
        paid["payment"]["cash_amount"],
        paid["payment"]["paid_amount"],
    ) == (
        "provider",
        8_000,
        10_000,
    )
    [deduction] = await world.db.deductions.find({}).to_list()
    assert (deduction["type"], deduction["amount"]) == ("payment", 2_000)
    # A repeated notification is recorded once and applied once.
    await payments.on_provider_paid(second_no, 8_000)
    assert await world.db.deductions.count_documents({}) == 1
    assert len(world.provider.refunds) == 2
    assert await world.balance(buyer) == 0
    await world.check_money()


async def test_late_provider_payment_for_an_overdue_order_is_refunded(world: World) -> None:
    buyer = await world.user(1_000)
    _session_id, _lot_id, order_id = await world.won_order(buyer, 5_000)
    charge = (await world.pay(order_id, buyer, pay_with="provider")).charge
    assert charge is not None
    world.clock.set(T0 + DAY)
    await world.worker().sweep_overdue()
    await world.payments().on_provider_paid(charge.out_trade_no, 5_000)
    assert world.provider.refunds == {f"refund-{charge.out_trade_no}": (charge.out_trade_no, 5_000)}
    receipt = await world.db.provider_payments.find_one({"_id": charge.out_trade_no})
    assert receipt is not None and (receipt["outcome"], receipt["reason"]) == (
        "refunded",
        "the order is overdue",
    )
    await world.check_money()


async def test_provider_paid_deposit_is_refunded_through_the_provider(world: World) -> None:
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    winner, loser = await world.user(), await world.user()
    deposit_id = await world.deposit(loser, session_id, lot_id, 2_000, pay_with="provider")
    await world.close(lot_id, session_id, winner, 6_000)

    # Without a provider the refund is recorded and waits.
    await world.worker(provider=False).drain_outbox()
    refund = await world.db.refunds.find_one({"deposit_id": deposit_id})
    assert refund is not None and (refund["status"], refund["via"], refund["amount"]) == (
        "pending",
        "provider",
        2_000,
    )
    await world.check_money()

    assert await world.worker().execute_pending_refunds() == 1
    trade_no = f"dep-{deposit_id}"
    assert world.provider.refunds == {f"refund-{trade_no}": (trade_no, 2_000)}
    refund = await world.db.refunds.find_one({"deposit_id": deposit_id})
    assert refund is not None and refund["status"] == "refunded"
    assert await world.balance(loser) == 0  # it went back the way it came
    await world.check_money()


async def test_random_trade_numbers_are_stored_and_found_on_mongodb(world: World) -> None:
    """The adapters keep what the handlers need: every attempt's number on the order (indexed, found
    by a notification), and a provider deposit's own number on its refund."""
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    winner, loser = await world.user(), await world.user()
    deposit_id = await world.deposit(loser, session_id, lot_id, 2_000, pay_with="provider")
    dep_no = new_trade_no("dep")  # as engine/settle/deposits.py now makes payment_id
    await world.db.deposits.update_one({"_id": deposit_id}, {"$set": {"payment_id": dep_no}})
    await world.close(lot_id, session_id, winner, 6_000)
    await world.worker(provider=False).drain_outbox()
    refund = await world.db.refunds.find_one({"deposit_id": deposit_id})
    assert refund is not None and refund["out_trade_no"] == dep_no
    assert await world.worker().execute_pending_refunds() == 1
    assert world.provider.refunds == {f"refund-{dep_no}": (dep_no, 2_000)}

    [order] = await world.db.orders.find({}).to_list()
    first = await world.pay(order["_id"], winner, pay_with="provider", key="one")
    second = await world.pay(order["_id"], winner, pay_with="provider", key="two")
    assert first.charge is not None and second.charge is not None
    numbers = [first.charge.out_trade_no, second.charge.out_trade_no]
    assert (await world.order(order["_id"]))["trade_nos"] == numbers
    assert "trade_nos" in await world.db.orders.index_information()
    stale = await world.store.receive_provider_payment(numbers[0], 6_000, world.clock.now_ms())
    assert (stale.order_id, stale.outcome) == (order["_id"], "refund_pending")
    await world.payments().on_provider_paid(numbers[1], 6_000)
    assert (await world.order(order["_id"]))["status"] == 2
    await world.check_money()


async def test_deposit_paid_after_its_lot_closed_is_reconciled(world: World) -> None:
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    winner, late = await world.user(), await world.user(3_000)
    await world.close(lot_id, session_id, winner, 6_000)
    worker = world.worker()
    await worker.drain_outbox()
    await world.deposit(late, session_id, lot_id, 1_000)  # e.g. a slow provider callback
    assert await worker.reconcile() == 1
    assert await world.balance(late) == 3_000
    assert await worker.reconcile() == 0
    await world.check_money()


# -- auction coupons -----------------------------------------------------------------------------------------
async def test_fifty_concurrent_claimers_for_ten_coupons(world: World) -> None:
    session_id = await world.session(ended=False)
    now = world.clock.now_ms()
    coupon = await world.store.create_coupon(session_id, "Opening day", 500, 10, now - 1, now + DAY)
    users = [await world.user() for _ in range(50)]

    async def claim(user_id: int) -> str:
        try:
            await world.store.claim_coupon(int(coupon["_id"]), user_id, now)
        except GavelError as error:
            return error.code
        return "OK"

    outcomes = await asyncio.gather(*(claim(user_id) for user_id in users))
    assert outcomes.count("OK") == 10
    assert outcomes.count("COUPON_SOLD_OUT") == 40
    stored = await world.store.coupon(int(coupon["_id"]))
    assert (stored["claimed"], stored["left"]) == (10, 0)
    assert await world.db.user_coupons.count_documents({"coupon_id": coupon["_id"]}) == 10


async def test_one_coupon_per_user_even_when_claiming_concurrently(world: World) -> None:
    session_id = await world.session(ended=False)
    now = world.clock.now_ms()
    coupon = await world.store.create_coupon(session_id, "Opening day", 500, 100, now - 1, now + DAY)
    user_id = await world.user()

    async def claim() -> str:
        try:
            await world.store.claim_coupon(int(coupon["_id"]), user_id, now)
        except GavelError as error:
            return error.code
        return "OK"

    outcomes = await asyncio.gather(*(claim() for _ in range(8)))
    assert sorted(outcomes) == ["COUPON_ALREADY_CLAIMED"] * 7 + ["OK"]
    stored = await world.store.coupon(int(coupon["_id"]))
    assert (stored["claimed"], stored["left"]) == (1, 99)  # the refused claims undid their increment


async def test_coupon_claim_window(world: World) -> None:
    session_id = await world.session(ended=False)
    user_id = await world.user()
    coupon = await world.store.create_coupon(session_id, "Later", 500, 5, T0 + 1_000, T0 + 2_000)
    coupon_id = int(coupon["_id"])
    await raises_code("COUPON_NOT_CLAIMABLE", world.store.claim_coupon(coupon_id, user_id, T0 + 999))
    await raises_code("COUPON_NOT_CLAIMABLE", world.store.claim_coupon(coupon_id, user_id, T0 + 2_000))
    await raises_code("NOT_FOUND", world.store.claim_coupon(coupon_id + 100, user_id, T0 + 1_500))
    claimed = await world.store.claim_coupon(coupon_id, user_id, T0 + 1_000)
    assert (claimed["status"], claimed["amount"], claimed["session_id"]) == (1, 500, session_id)
    ended = await world.store.create_coupon(
        await world.session(ended=True), "Too late", 500, 5, T0, T0 + 2_000
    )
    await raises_code(
        "COUPON_NOT_CLAIMABLE", world.store.claim_coupon(int(ended["_id"]), user_id, T0 + 1_000)
    )
    assert (await world.store.coupon(int(ended["_id"])))["left"] == 5
    await raises_code("VALIDATION", world.store.create_coupon(session_id, "Bad", 500, 5, T0, T0))
    await raises_code("NOT_FOUND", world.store.create_coupon(999_999, "Bad", 500, 5, T0, T0 + 1))


# -- addresses ----------------------------------------------------------------------------------------------
async def test_addresses_belong_to_their_owner(world: World) -> None:
    owner, other = await world.user(), await world.user()
    address_id = await world.address(owner)
    await raises_code("NOT_FOUND", world.store.address(address_id, other))
    await raises_code("NOT_FOUND", world.store.update_address(address_id, other, {"name": "Mallory"}))
    await raises_code("NOT_FOUND", world.store.delete_address(address_id, other))
    updated = await world.store.update_address(address_id, owner, {"city": "Taiyuan"})
    assert (updated["city"], updated["name"]) == ("Taiyuan", "Zhang Da")
    await raises_code(
        "VALIDATION", world.store.create_address(owner, {"name": "x", "phone": "12", "detail": "y"})
    )
    await world.store.delete_address(address_id, owner)
    assert await world.store.addresses(owner) == []


# -- crashes between steps --------------------------------------------------------------------------------
CRASH_POINTS = [
    "close_recorded",
    "refund_opened",
    "refund_executed",
    "outbox_done",
    "order_overdue",
    "engine_synced",
    "provider_refund_sent",
]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_worker_killed_between_steps_settles_exactly_once(world: World, crash_at: str) -> None:
    """Close, refund the loser, forfeit the winner's deposit: crash after `crash_at`, restart."""
    session_id = await world.session(ended=False)
    lot_id = await world.lot(session_id)
    winner, loser = await world.user(5_000), await world.user(5_000)
    await world.deposit(winner, session_id, lot_id, 2_000)
    loser_pays_with: PayWith = "provider" if crash_at == "provider_refund_sent" else "balance"
    loser_deposit = await world.deposit(loser, session_id, lot_id, 2_000, pay_with=loser_pays_with)
    await world.close(lot_id, session_id, winner, 10_000)
    crashed: list[str] = []

    def hook(step: str, _key: int) -> None:
        if step == crash_at and not crashed:
            crashed.append(step)
            raise Crash(step)

    async def run(phase: Callable[[SettlementWorker], Awaitable[object]]) -> None:
        with contextlib.suppress(Crash):
            await phase(world.worker(hook))
        # The process is restarted: a fresh worker finishes whatever was left.
        fresh = world.worker()
        await fresh.run_once(reconcile=True)

    await run(lambda worker: worker.drain_outbox())
    world.clock.set(T0 + DAY)
    await run(lambda worker: worker.sweep_overdue())
    await world.worker().run_once(reconcile=True)  # and once more, as the loop would

    assert crashed == [crash_at]
    assert await world.db.orders.count_documents({}) == 1
    [refund] = await world.db.refunds.find({}).to_list()
    assert (refund["deposit_id"], refund["amount"], refund["status"]) == (loser_deposit, 2_000, "refunded")
    [deduction] = await world.db.deductions.find({}).to_list()
    assert (deduction["type"], deduction["amount"]) == ("overdue", 2_000)
    [order] = await world.db.orders.find({}).to_list()
    assert (order["status"], order["engine_synced"]) == (4, True)
    assert world.engine.commands.count(BlockBidder(winner)) >= 1
    if loser_pays_with == "balance":
        assert await world.db.ledger.count_documents({"kind": "deposit_refund"}) == 1
        assert await world.balance(loser) == 5_000
    else:
        assert world.provider.refunds == {f"refund-dep-{loser_deposit}": (f"dep-{loser_deposit}", 2_000)}
    assert await world.balance(winner) == 3_000
    outbox = await world.db.settlement_outbox.find_one({"_id": lot_id})
    assert outbox is not None and outbox["status"] == "done"
    session = await world.db.sessions.find_one({"_id": session_id})
    assert session is not None and (session["deal_total"], session["sold_count"]) == (10_000, 1)
    await world.check_money()


async def test_archive_replay_of_a_done_lot_creates_nothing_twice(world: World) -> None:
    buyer = await world.user(1_000)
    session_id, lot_id, _order_id = await world.won_order(buyer, 4_000)
    outbox = await world.db.settlement_outbox.find_one({"_id": lot_id})
    assert outbox is not None
    # An operator cleaned the outbox and the archiver replayed the close.
    await world.db.settlement_outbox.delete_one({"_id": lot_id})
    await world.db.settlement_outbox.insert_one({**outbox, "status": "pending"})
    await world.worker().drain_outbox()
    assert await world.db.orders.count_documents({}) == 1
    session = await world.db.sessions.find_one({"_id": session_id})
    assert session is not None and session["deal_total"] == 4_000


# -- the money invariant under any sequence of operations -------------------------------------------------
def run_sync(runner: asyncio.Runner, coro: Awaitable[T]) -> T:
    return runner.run(coro)  # type: ignore[arg-type]


def test_money_is_conserved_under_any_sequence(mongo_url: str) -> None:
    """Deposits, closes (sold / unsold), payments (balance / provider, with coupons), provider
    notifications (timely / late), overdue sweeps, session ends and crashes: after every step the
    money invariant holds and nothing was recorded twice."""
    with asyncio.Runner() as runner:
        machine_class = _machine(runner, mongo_url)
        run_state_machine_as_test(
            machine_class,
            settings=settings(
                # Measured over runs: 15-30 orders paid, most runs some overdue, provider charges and
                # coupons used every run, in about 20 s. Rare paths (late provider notifications) have
                # their own tests above. Not fewer (branch coverage, 12 seeds): every 20-example run
                # reached the unsold close, paying with a whole-session deposit held and the provider
                # notification rule, but 2 seeds reached one of them only in the run's last third,
                # and with max_examples=10 one of them missed the first two.
                max_examples=20,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )


def _machine(runner: asyncio.Runner, mongo_url: str) -> type[RuleBasedStateMachine]:
    users = st.integers(min_value=0, max_value=2)
    prices = st.sampled_from([300, 1_000, 2_500, 4_000, 9_000])
    deposit_choice = st.tuples(users, st.booleans(), st.booleans())  # (user, whole session, provider)

    class Settling(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.db_name = f"gavel_sm_{uuid.uuid4().hex}"
            self._world_cm = make_world(mongo_url, self.db_name)
            self.world = run_sync(runner, self._world_cm.__aenter__())
            self.users = [run_sync(runner, self.world.user(15_000)) for _ in range(3)]
            self.session_id = run_sync(runner, self.world.session(deposit=3_000, ended=False))
            self.open_lots: list[int] = []
            self.coupon_id = 0
            self.charges: list[tuple[str, int]] = []  # (out_trade_no, amount) opened with the provider
            self.ended = False
            self.unpaid = 0  # unpaid orders after the last step: paying is tried only when there are some

        def teardown(self) -> None:
            async def drop() -> None:
                await self.world.client.drop_database(self.db_name)
                await self._world_cm.__aexit__(None, None, None)

            run_sync(runner, drop())

        def _do(self, coro: Awaitable[T]) -> T | None:
            """Run one operation; refusals (GavelError) are legitimate outcomes, not failures."""
            try:
                return run_sync(runner, coro)
            except GavelError:
                return None

        @initialize(lots=st.integers(min_value=1, max_value=3), deposits=st.lists(deposit_choice, max_size=4))
        def open_the_session(self, lots: int, deposits: list[tuple[int, bool, bool]]) -> None:
            for _ in range(lots):
                self.open_lots.append(run_sync(runner, self.world.lot(self.session_id)))
            now = self.world.clock.now_ms()
            coupon = run_sync(
                runner, self.world.store.create_coupon(self.session_id, "Spring", 700, 2, now, now + 3 * DAY)
            )
            self.coupon_id = int(coupon["_id"])
            for user, whole_session, provider in deposits:
                self.pay_deposit(user, whole_session, provider)

        @precondition(lambda self: not self.ended and len(self.open_lots) < 4)
        @rule()
        def new_lot(self) -> None:
            self.open_lots.append(run_sync(runner, self.world.lot(self.session_id)))

        @precondition(lambda self: not self.ended)
        @rule(choice=deposit_choice, top_up=st.sampled_from([0, 500, 4_000]))
        def another_deposit(self, choice: tuple[int, bool, bool], top_up: int) -> None:
            if top_up:
                run_sync(runner, self.world.credit(self.users[choice[0]], top_up))
            self.pay_deposit(*choice)

        def pay_deposit(self, user: int, whole_session: bool, provider: bool) -> None:
            user_id = self.users[user]
            if whole_session:
                target, amount = None, 3_000
            elif self.open_lots:
                target, amount = self.open_lots[user % len(self.open_lots)], 1_000
            else:
                return
            exists = run_sync(
                runner,
                self.world.db.deposits.find_one(
                    {"user_id": user_id, "session_id": self.session_id, "lot_id": target, "status": "paid"}
                ),
            )
            balance = run_sync(runner, self.world.balance(user_id))
            if exists is None and (provider or balance >= amount):
                pay_with: PayWith = "provider" if provider else "balance"
                run_sync(runner, self.world.deposit(user_id, self.session_id, target, amount, pay_with))

        @precondition(lambda self: bool(self.open_lots))
        @rule(
            winner=st.sampled_from([None, 0, 1, 2]),
            price=prices,
            crash=st.booleans(),
            then=st.sampled_from(["nothing", "nothing", "balance", "provider", "provider+notify"]),
            with_coupon=st.booleans(),
        )
        def close_and_drain(
            self, winner: int | None, price: int, crash: bool, then: str, with_coupon: bool
        ) -> None:
            """Close the oldest open lot and settle it; the winner may pay right away (deep paths in
            few steps; the separate rules below interleave everything else)."""
            lot_id = self.open_lots.pop(0)
            winner_id = None if winner is None else self.users[winner]
            run_sync(runner, self.world.close(lot_id, self.session_id, winner_id, price))
            self._drain(crash)
            order = run_sync(runner, self.world.db.orders.find_one({"lot_id": lot_id}))
            if order is not None and then != "nothing":
                self._pay(order, with_coupon, provider=then != "balance", notify=then == "provider+notify")

        def _drain(self, crash: bool) -> None:
            def hook(step: str, _key: int) -> None:
                if crash and step in ("close_recorded", "refund_opened"):
                    raise Crash(step)

            with contextlib.suppress(Crash):
                run_sync(runner, self.world.worker(hook).drain_outbox())
            run_sync(runner, self.world.worker().drain_outbox())

        def _pay(
            self, order: dict[str, Any], with_coupon: bool, *, provider: bool, notify: bool = False
        ) -> None:
            user_id = int(order["user_id"])
            if with_coupon:
                self._do(self.world.store.claim_coupon(self.coupon_id, user_id, self.world.clock.now_ms()))
            coupon = run_sync(runner, self.world.db.user_coupons.find_one({"user_id": user_id, "status": 1}))
            coupon_id = int(coupon["_id"]) if with_coupon and coupon is not None else None
            pay_with: PayWith = "provider" if provider else "balance"
            result = self._do(
                self.world.pay(int(order["_id"]), user_id, coupon_id=coupon_id, pay_with=pay_with)
            )
            if result is not None and result.charge is not None:
                self.charges.append((result.charge.out_trade_no, result.charge.amount))
                if notify:
                    self._do(
                        self.world.payments().on_provider_paid(
                            result.charge.out_trade_no, result.charge.amount
                        )
                    )

        @rule(user=users)
        def claim_coupon(self, user: int) -> None:
            self._do(
                self.world.store.claim_coupon(self.coupon_id, self.users[user], self.world.clock.now_ms())
            )

        @precondition(lambda self: self.unpaid > 0)
        @rule(pick=st.integers(min_value=0, max_value=5), with_coupon=st.booleans(), provider=st.booleans())
        def pay_an_order(self, pick: int, with_coupon: bool, provider: bool) -> None:
            unpaid = run_sync(runner, self.world.db.orders.find({"status": 1}).sort("_id", 1).to_list())
            if unpaid:
                self._pay(unpaid[pick % len(unpaid)], with_coupon, provider=provider)

        @precondition(lambda self: bool(self.charges))
        @rule(index=st.integers(min_value=0, max_value=5), wrong_amount=st.booleans())
        def provider_notifies(self, index: int, wrong_amount: bool) -> None:
            trade_no, amount = self.charges[index % len(self.charges)]
            self._do(self.world.payments().on_provider_paid(trade_no, amount + (7 if wrong_amount else 0)))

        @rule(hours=st.sampled_from([1, 25]))
        def time_passes_and_worker_runs(self, hours: int) -> None:
            self.world.clock.advance(hours * 3_600_000)
            run_sync(runner, self.world.worker().run_once(reconcile=True))

        @precondition(lambda self: not self.ended and not self.open_lots)
        @rule()
        def end_session(self) -> None:
            """The engine ends a session when its last lot closes."""
            run_sync(runner, self.world.end_session(self.session_id))
            self.ended = True
            run_sync(runner, self.world.worker().run_once(reconcile=True))

        @invariant()
        def money_is_conserved(self) -> None:
            run_sync(runner, self.world.check_money())
            self.unpaid = run_sync(runner, self.world.db.orders.count_documents({"status": 1}))

    return Settling
