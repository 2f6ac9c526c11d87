"""Settlement's storage ports in memory: a unit of work over a copy of the committed state.

`FakeSettlementStore` holds the committed state; each `FakeUnitOfWork` works on a deep copy and
commit swaps it in, unless another unit of work committed meanwhile (then `Transient`, as a MongoDB
write conflict would be): optimistic concurrency, so handlers' retries are exercised too. Ids come
from counters outside the state (a rolled-back unit of work leaves a gap, as in MongoDB).

Deposits (engine/settle/deposits.py) use the same unit of work through `deposit_records`
(`FakeDepositRecords`, with the unique keys of the MongoDB indexes); `FakeEngine` is a real `Book`
whose `RegisterDeposit`s are applied at once and remembered.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import itertools
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from engine.book.book import Book
from engine.book.errors import GavelError
from engine.book.states import LotState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.commands import Command, Outcome, RegisterDeposit
from engine.settle.deposits import DepositRecord, DepositRecords, DepositUnitOfWork
from engine.settle.model import (
    AddressSnapshot,
    CouponOffer,
    Deduction,
    Deposit,
    DepositStatus,
    NewOrder,
    Order,
    OrderPayment,
    PayWith,
    PendingCharge,
    ProviderPayment,
    Refund,
    UserCoupon,
)
from engine.settle.rules import BidStatus, MoneyTotals, OrderStatus, UserCouponStatus
from engine.settle.uow import (
    AuctionRecords,
    BalanceLedger,
    CouponRepository,
    DeductionRepository,
    DepositRepository,
    Duplicate,
    Ids,
    OrderRepository,
    ProviderPaymentRepository,
    RefundRepository,
    Transient,
    UnitOfWork,
)
from engine.settle.worker import OutboxItem, OutboxStatus
from payments.trade_numbers import new_trade_no


class InsufficientBalance(GavelError):
    code = "INSUFFICIENT_BALANCE"


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerEntry:
    user_id: UserId
    amount: Fen  # signed: + credit, - debit
    kind: str
    ref: str
    balance_after: Fen


@dataclasses.dataclass
class State:
    orders: dict[int, Order] = dataclasses.field(default_factory=dict)
    order_extra: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    trade_nos: dict[str, int] = dataclasses.field(default_factory=dict)  # every attempt's -> order
    deposits: dict[int, Deposit] = dataclasses.field(default_factory=dict)
    deposit_status: dict[int, str] = dataclasses.field(default_factory=dict)
    refunds: dict[int, Refund] = dataclasses.field(default_factory=dict)
    deductions: dict[int, Deduction] = dataclasses.field(default_factory=dict)
    offers: dict[int, CouponOffer] = dataclasses.field(default_factory=dict)
    user_coupons: dict[int, UserCoupon] = dataclasses.field(default_factory=dict)
    coupon_order: dict[int, int] = dataclasses.field(default_factory=dict)
    provider_payments: dict[str, ProviderPayment] = dataclasses.field(default_factory=dict)
    balances: dict[UserId, Fen] = dataclasses.field(default_factory=dict)
    ledger: dict[str, LedgerEntry] = dataclasses.field(default_factory=dict)
    outbox: dict[LotId, OutboxItem] = dataclasses.field(default_factory=dict)
    lots: dict[LotId, dict[str, Any]] = dataclasses.field(default_factory=dict)
    sessions: dict[SessionId, dict[str, Any]] = dataclasses.field(default_factory=dict)
    bids: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    non_payers: dict[UserId, int] = dataclasses.field(default_factory=dict)
    users: set[UserId] = dataclasses.field(default_factory=set)
    addresses: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Deposits as opened and paid (engine/settle/deposits.py; tests/engine/settle/deposit_fakes.py).
    deposit_records: dict[int, DepositRecord] = dataclasses.field(default_factory=dict)


class FakeSettlementStore:
    def __init__(self) -> None:
        self.state = State()
        self.version = 0
        self._ids: dict[str, itertools.count[int]] = {}
        self.commits = 0
        # Tests set this to make the next guarded deposit write fail (a concurrent change).
        self.fail_deposit_writes = 0

    def next_id(self, name: str) -> int:
        return next(self._ids.setdefault(name, itertools.count(1)))

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def totals(self) -> MoneyTotals:
        """The sums `persistence.settlement.money_totals` reads from MongoDB, over the fake state."""
        st = self.state
        deducted = sum(x.amount for x in st.deductions.values())
        refunds_done = sum(r.amount for r in st.refunds.values() if not r.pending)
        provider_refunds = sum(r.amount for r in st.refunds.values() if not r.pending and r.via == "provider")
        paid = [
            d for d in st.deposits.values() if st.deposit_status[d.id] in ("paid", "refunded", "consumed")
        ]
        cash = sum(o.payment.cash_amount for o in st.orders.values() if o.payment is not None)
        return MoneyTotals(
            balances=sum(st.balances.values()),
            deposits_held=sum(d.amount for d in paid) - deducted - refunds_done,
            paid_to_platform=deducted + cash,
            refunded_through_provider=provider_refunds
            + sum(p.amount for p in st.provider_payments.values() if p.outcome == "refunded"),
            owed_through_provider=sum(
                p.amount for p in st.provider_payments.values() if p.outcome == "refund_pending"
            ),
            credited=sum(e.amount for e in st.ledger.values() if e.kind == "admin_credit")
            + sum(d.amount for d in paid if d.pay_with == "provider")
            + sum(p.amount for p in st.provider_payments.values()),
        )


class FakeUnitOfWork:
    # Declared as the ports (not the fakes) so that this class is a `UnitOfWork` to mypy.
    orders: OrderRepository
    deposits: DepositRepository
    refunds: RefundRepository
    deductions: DeductionRepository
    coupons: CouponRepository
    provider_payments: ProviderPaymentRepository
    ledger: BalanceLedger
    auction: AuctionRecords
    ids: Ids
    deposit_records: DepositRecords

    def __init__(self, store: FakeSettlementStore) -> None:
        self.store = store
        self.committed = False

    async def __aenter__(self) -> Self:
        self.base_version = self.store.version
        self.state = copy.deepcopy(self.store.state)
        self.committed = False
        st, store = self.state, self.store
        self.orders = FakeOrders(st)
        self.deposits = FakeDeposits(st, store)
        self.refunds = FakeRefunds(st)
        self.deductions = FakeDeductions(st)
        self.coupons = FakeCoupons(st)
        self.provider_payments = FakeProviderPayments(st)
        self.ledger = FakeLedger(st)
        self.auction = FakeAuction(st)
        self.ids = FakeIds(store)
        self.deposit_records = FakeDepositRecords(st)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.committed:
            await self.rollback()

    async def commit(self) -> None:
        if self.store.version != self.base_version:
            raise Transient("another unit of work committed meanwhile")
        self.store.state = self.state
        self.store.version += 1
        self.store.commits += 1
        self.committed = True

    async def rollback(self) -> None:
        self.state = State()  # the working copy is dropped; the committed state is untouched


def factory(store: FakeSettlementStore) -> Callable[[], UnitOfWork]:
    return store.uow


class FakeIds:
    def __init__(self, store: FakeSettlementStore) -> None:
        self.store = store

    async def next(self, name: str) -> int:
        return self.store.next_id(name)

    def trade_no(self, prefix: str) -> str:
        return new_trade_no(prefix)  # the real numbers: tests see their format


class FakeOrders:
    def __init__(self, st: State) -> None:
        self.st = st

    def _set(self, order_id: int, **changes: Any) -> None:
        self.st.orders[order_id] = dataclasses.replace(self.st.orders[order_id], **changes)

    async def get(self, order_id: int) -> Order | None:
        return self.st.orders.get(order_id)

    async def get_for_user(self, order_id: int, user_id: UserId) -> Order | None:
        order = self.st.orders.get(order_id)
        return order if order is not None and order.user_id == user_id else None

    async def id_for_lot(self, lot_id: LotId) -> int | None:
        return next((o.id for o in self.st.orders.values() if o.lot_id == lot_id), None)

    async def id_for_trade_no(self, out_trade_no: str) -> int | None:
        return self.st.trade_nos.get(out_trade_no)

    async def add(self, order: NewOrder) -> None:
        if order.id in self.st.orders or await self.id_for_lot(order.lot_id) is not None:
            raise Duplicate(f"order {order.id} / lot {order.lot_id}")
        self.st.orders[order.id] = Order(
            order.id, order.lot_id, order.session_id, order.user_id, order.price, OrderStatus.UNPAID,
            order.deadline_ms, 0, None, None, False,
        )  # fmt: skip
        self.st.order_extra[order.id] = {"closed_at_ms": order.closed_at_ms}

    async def count_unpaid(self, user_id: UserId, session_id: SessionId, exclude: int = 0) -> int:
        return sum(
            1
            for o in self.st.orders.values()
            if o.user_id == user_id
            and o.session_id == session_id
            and o.status is OrderStatus.UNPAID
            and o.id != exclude
        )

    async def users_with_unpaid(self, session_id: SessionId) -> list[UserId]:
        return sorted(
            {
                o.user_id
                for o in self.st.orders.values()
                if o.session_id == session_id and o.status is OrderStatus.UNPAID
            }
        )

    async def due(self, now_ms: Millis, limit: int) -> list[int]:
        due = [
            o for o in self.st.orders.values() if o.status is OrderStatus.UNPAID and o.deadline_ms <= now_ms
        ]
        return [o.id for o in sorted(due, key=lambda o: (o.deadline_ms, o.id))][:limit]

    async def unsynced_overdue(self, limit: int) -> list[Order]:
        return [
            o
            for o in self.st.orders.values()
            if o.status is OrderStatus.OVERDUE and self.st.order_extra[o.id].get("engine_synced") is False
        ][:limit]

    async def mark_engine_synced(self, order_id: int) -> None:
        self.st.order_extra[order_id]["engine_synced"] = True

    async def open_charge(self, order_id: int, expected_attempts: int, charge: PendingCharge) -> bool:
        order = self.st.orders[order_id]
        if order.status is not OrderStatus.UNPAID or order.attempts != expected_attempts:
            return False
        self._set(order_id, pending=charge, attempts=expected_attempts + 1)
        self.st.trade_nos[charge.out_trade_no] = order_id
        return True

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None:
        pending = self.st.orders[order_id].pending
        if pending is not None and pending.out_trade_no == out_trade_no:
            self._set(order_id, pending=dataclasses.replace(pending, pay_url=pay_url))

    async def mark_paid(
        self, order_id: int, payment: OrderPayment, address: AddressSnapshot, now_ms: Millis
    ) -> bool:
        if self.st.orders[order_id].status is not OrderStatus.UNPAID:
            return False
        self._set(order_id, status=OrderStatus.AWAITING_DELIVERY, payment=payment, pending=None)
        self.st.order_extra[order_id].update(address=address, paid_at_ms=now_ms)
        return True

    async def mark_overdue(self, order_id: int, forfeit: Fen, deposit_id: int | None, now_ms: Millis) -> bool:
        if self.st.orders[order_id].status is not OrderStatus.UNPAID:
            return False
        self._set(order_id, status=OrderStatus.OVERDUE, forfeit=forfeit)
        self.st.order_extra[order_id].update(
            overdue_at_ms=now_ms, forfeit_deposit_id=deposit_id, engine_synced=False
        )
        return True

    async def mark_shipped(self, order_id: int, tracking_no: str | None, now_ms: Millis) -> bool:
        order = self.st.orders.get(order_id)
        if order is None or order.status is not OrderStatus.AWAITING_DELIVERY or order.shipped:
            return False
        self._set(order_id, shipped=True)
        self.st.order_extra[order_id].update(tracking_no=tracking_no, shipped_at_ms=now_ms)
        return True

    async def mark_completed(self, order_id: int, now_ms: Millis) -> bool:
        order = self.st.orders.get(order_id)
        if order is None or order.status is not OrderStatus.AWAITING_DELIVERY or not order.shipped:
            return False
        self._set(order_id, status=OrderStatus.COMPLETED)
        return True


class FakeDeposits:
    def __init__(self, st: State, store: FakeSettlementStore) -> None:
        self.st = st
        self.store = store

    def _paid(self) -> list[Deposit]:
        return [d for d in self.st.deposits.values() if self.st.deposit_status[d.id] == "paid"]

    async def paid_for_lot(self, user_id: UserId, lot_id: LotId) -> Deposit | None:
        return next((d for d in self._paid() if d.user_id == user_id and d.lot_id == lot_id), None)

    async def paid_for_session(self, user_id: UserId, session_id: SessionId) -> Deposit | None:
        return next(
            (
                d
                for d in self._paid()
                if d.user_id == user_id and d.session_id == session_id and d.lot_id is None
            ),
            None,
        )

    async def get_paid(self, deposit_id: int) -> Deposit | None:
        return next((d for d in self._paid() if d.id == deposit_id), None)

    async def paid_on_lot(self, lot_id: LotId) -> list[Deposit]:
        return [d for d in self._paid() if d.lot_id == lot_id]

    async def paid_session_wide(self, session_id: SessionId, user_id: UserId | None) -> list[int]:
        return [
            d.id
            for d in self._paid()
            if d.session_id == session_id and d.lot_id is None and (user_id is None or d.user_id == user_id)
        ]

    async def paid_lot_deposits(self, limit: int) -> list[Deposit]:
        return [d for d in self._paid() if d.lot_id is not None][:limit]

    async def paid_session_wide_in(self, session_ids: list[SessionId], limit: int) -> list[Deposit]:
        return [d for d in self._paid() if d.lot_id is None and d.session_id in session_ids][:limit]

    async def set_remaining(self, deposit: Deposit, remaining: Fen, status: DepositStatus) -> bool:
        if self.store.fail_deposit_writes > 0:
            self.store.fail_deposit_writes -= 1
            return False
        current = self.st.deposits.get(deposit.id)
        if current is None or self.st.deposit_status[deposit.id] != "paid" or current.rev != deposit.rev:
            return False
        self.st.deposits[deposit.id] = dataclasses.replace(
            current, remaining=remaining, rev=(current.rev or 0) + 1
        )
        self.st.deposit_status[deposit.id] = status
        return True


class FakeRefunds:
    def __init__(self, st: State) -> None:
        self.st = st

    async def for_deposit(self, deposit_id: int) -> Refund | None:
        return next((r for r in self.st.refunds.values() if r.deposit_id == deposit_id), None)

    async def get(self, refund_id: int) -> Refund | None:
        return self.st.refunds.get(refund_id)

    async def add(self, refund: Refund) -> None:
        if await self.for_deposit(refund.deposit_id) is not None:
            raise Duplicate(f"a refund of deposit {refund.deposit_id}")
        self.st.refunds[refund.id] = refund

    async def pending(self, limit: int) -> list[Refund]:
        return sorted((r for r in self.st.refunds.values() if r.pending), key=lambda r: r.id)[:limit]

    async def mark_refunded(self, refund_id: int, now_ms: Millis, ledger_ref: str | None) -> bool:
        refund = self.st.refunds.get(refund_id)
        if refund is None or not refund.pending:
            return False
        self.st.refunds[refund_id] = dataclasses.replace(refund, pending=False)
        return True


class FakeDeductions:
    def __init__(self, st: State) -> None:
        self.st = st

    async def add(self, deduction: Deduction) -> None:
        if any(x.order_id == deduction.order_id for x in self.st.deductions.values()):
            raise Duplicate(f"a deduction for order {deduction.order_id}")
        self.st.deductions[deduction.id] = deduction


class FakeCoupons:
    def __init__(self, st: State) -> None:
        self.st = st

    async def offer(self, coupon_id: int) -> CouponOffer | None:
        return self.st.offers.get(coupon_id)

    async def add_offer(self, offer: CouponOffer) -> None:
        self.st.offers[offer.id] = offer

    async def take_one(self, coupon_id: int) -> bool:
        offer = self.st.offers[coupon_id]
        if offer.left <= 0:
            return False
        self.st.offers[coupon_id] = dataclasses.replace(offer, left=offer.left - 1)
        return True

    async def add_user_coupon(self, coupon: UserCoupon) -> None:
        if any(
            c.coupon_id == coupon.coupon_id and c.user_id == coupon.user_id
            for c in self.st.user_coupons.values()
        ):
            raise Duplicate(f"user {coupon.user_id} has coupon {coupon.coupon_id}")
        self.st.user_coupons[coupon.id] = coupon

    async def unused(self, user_coupon_id: int, user_id: UserId, session_id: SessionId) -> UserCoupon | None:
        c = self.st.user_coupons.get(user_coupon_id)
        ok = c is not None and c.user_id == user_id and c.session_id == session_id
        return c if ok and c is not None and c.status is UserCouponStatus.UNUSED else None

    async def unused_of(self, user_id: UserId, session_id: SessionId) -> list[UserCoupon]:
        mine = [
            c
            for c in self.st.user_coupons.values()
            if c.user_id == user_id and c.session_id == session_id and c.status is UserCouponStatus.UNUSED
        ]
        return sorted(mine, key=lambda c: -c.amount)

    async def mark_used(self, user_coupon_id: int, order_id: int, now_ms: Millis) -> bool:
        c = self.st.user_coupons[user_coupon_id]
        if c.status is not UserCouponStatus.UNUSED:
            return False
        self.st.user_coupons[c.id] = dataclasses.replace(c, status=UserCouponStatus.USED)
        self.st.coupon_order[c.id] = order_id
        return True

    async def expire_unused(
        self, session_id: SessionId, user_id: UserId | None, spare: list[UserId], now_ms: Millis
    ) -> int:
        expired = 0
        for c in list(self.st.user_coupons.values()):
            if c.session_id != session_id or c.status is not UserCouponStatus.UNUSED or c.user_id in spare:
                continue
            if user_id is not None and c.user_id != user_id:
                continue
            self.st.user_coupons[c.id] = dataclasses.replace(c, status=UserCouponStatus.EXPIRED)
            expired += 1
        return expired


class FakeProviderPayments:
    def __init__(self, st: State) -> None:
        self.st = st

    async def get(self, out_trade_no: str) -> ProviderPayment | None:
        return self.st.provider_payments.get(out_trade_no)

    async def add(self, payment: ProviderPayment) -> None:
        if payment.out_trade_no in self.st.provider_payments:
            raise Duplicate(payment.out_trade_no)
        self.st.provider_payments[payment.out_trade_no] = payment

    async def refunds_due(self, limit: int) -> list[ProviderPayment]:
        due = [p for p in self.st.provider_payments.values() if p.outcome == "refund_pending"]
        return sorted(due, key=lambda p: p.out_trade_no)[:limit]

    async def mark_refunded(self, out_trade_no: str, now_ms: Millis) -> None:
        p = self.st.provider_payments.get(out_trade_no)
        if p is not None and p.outcome == "refund_pending":
            self.st.provider_payments[out_trade_no] = dataclasses.replace(p, outcome="refunded")


class FakeLedger:
    def __init__(self, st: State) -> None:
        self.st = st

    async def _move(self, user_id: UserId, delta: Fen, kind: str, ref: str) -> Fen:
        known = self.st.ledger.get(ref)
        if known is not None:  # idempotent on ref
            assert (known.user_id, known.amount, known.kind) == (user_id, delta, kind), "a ref reused"
            return known.balance_after
        after = self.st.balances.get(user_id, 0) + delta
        if after < 0:
            raise InsufficientBalance(f"user {user_id} has {self.st.balances.get(user_id, 0)} fen")
        self.st.balances[user_id] = after
        self.st.ledger[ref] = LedgerEntry(user_id, delta, kind, ref, after)
        return after

    async def credit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        assert amount > 0
        return await self._move(user_id, amount, kind, ref)

    async def debit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        assert amount > 0
        return await self._move(user_id, -amount, kind, ref)

    async def balance(self, user_id: UserId) -> Fen:
        return self.st.balances.get(user_id, 0)


class FakeAuction:
    def __init__(self, st: State) -> None:
        self.st = st

    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        items = [i for i in self.st.outbox.values() if i.status is not OutboxStatus.DONE]
        return sorted(items, key=lambda i: (i.closed_at_ms, i.lot_id))[:limit]

    async def outbox_pending(self, lot_id: LotId) -> bool:
        item = self.st.outbox.get(lot_id)
        return item is not None and item.status is OutboxStatus.PENDING

    async def session_has_pending_closes(self, session_id: SessionId) -> bool:
        return any(
            i.session_id == session_id and i.status is OutboxStatus.PENDING for i in self.st.outbox.values()
        )

    async def mark_outbox_recorded(self, lot_id: LotId, order_id: int | None) -> None:
        if await self.outbox_pending(lot_id):
            self.st.outbox[lot_id] = dataclasses.replace(self.st.outbox[lot_id], status=OutboxStatus.RECORDED)

    async def mark_outbox_done(self, lot_id: LotId) -> None:
        item = self.st.outbox.get(lot_id)
        if item is not None and item.status is OutboxStatus.RECORDED:
            self.st.outbox[lot_id] = dataclasses.replace(item, status=OutboxStatus.DONE)

    async def done_closes(self, lot_ids: list[LotId]) -> dict[LotId, OutboxItem]:
        return {
            i: self.st.outbox[i]
            for i in lot_ids
            if i in self.st.outbox and self.st.outbox[i].status is OutboxStatus.DONE
        }

    async def lot_sold(self, lot_id: LotId, price: Fen, winner_id: UserId, order_id: int) -> None:
        self.st.lots.setdefault(lot_id, {}).update(deal_price=price, winner_id=winner_id, order_id=order_id)

    async def lot_unsold(self, lot_id: LotId) -> None:
        lot = self.st.lots.setdefault(lot_id, {})
        if lot.get("state") != LotState.OVERDUE:
            lot.update(state=LotState.UNSOLD, deal_price=None)

    async def lot_overdue(self, lot_id: LotId) -> None:
        self.st.lots.setdefault(lot_id, {})["state"] = LotState.OVERDUE

    async def lot_title(self, lot_id: LotId) -> str:
        return str(self.st.lots.get(lot_id, {}).get("title", ""))

    async def session_sold(self, session_id: SessionId, price: Fen, bid_count: int) -> None:
        s = self.st.sessions[session_id]
        s.update(deal_total=s.get("deal_total", 0) + price, sold_count=s.get("sold_count", 0) + 1)
        s["bid_count"] = s.get("bid_count", 0) + bid_count

    async def session_unsold(self, session_id: SessionId, bid_count: int) -> None:
        s = self.st.sessions[session_id]
        s.update(unsold_count=s.get("unsold_count", 0) + 1, bid_count=s.get("bid_count", 0) + bid_count)

    async def session_exists(self, session_id: SessionId) -> bool:
        return session_id in self.st.sessions

    async def session_ended(self, session_id: SessionId) -> bool:
        return bool(self.st.sessions.get(session_id, {}).get("ended"))

    async def sessions_to_settle(self, limit: int) -> list[SessionId]:
        return [i for i, s in self.st.sessions.items() if s.get("ended") and not s.get("deposits_settled")][
            :limit
        ]

    async def settled_sessions(self) -> list[SessionId]:
        return [i for i, s in self.st.sessions.items() if s.get("deposits_settled")]

    async def mark_deposits_settled(self, session_id: SessionId) -> None:
        self.st.sessions[session_id]["deposits_settled"] = True

    async def mark_bid_won(self, lot_id: LotId, bidder: UserId, price: Fen) -> bool:
        for bid in reversed(self.st.bids):
            if bid["lot_id"] == lot_id and bid["bidder"] == bidder and bid["price"] == price:
                bid["status"] = BidStatus.WON
                return True
        return False

    async def mark_bids_overdue(self, lot_id: LotId, bidder: UserId) -> None:
        for bid in self.st.bids:
            if bid["lot_id"] == lot_id and bid["bidder"] == bidder and bid["status"] == BidStatus.WON:
                bid["status"] = BidStatus.OVERDUE

    async def flag_non_payer(self, user_id: UserId, order_id: int) -> None:
        self.st.non_payers[user_id] = order_id

    async def clear_non_payer(self, user_id: UserId) -> bool:
        return self.st.non_payers.pop(user_id, None) is not None

    async def user_exists(self, user_id: UserId) -> bool:
        return user_id in self.st.users

    async def address(self, address_id: int, user_id: UserId) -> AddressSnapshot | None:
        address = self.st.addresses.get(address_id)
        return address if address is not None and address["user_id"] == user_id else None


# -- setting the scene (committed directly, as other services would) ---------------------------------------
class Scene:
    """Builds the committed state the handlers start from."""

    def __init__(self, store: FakeSettlementStore) -> None:
        self.store = store

    @property
    def st(self) -> State:
        return self.store.state

    def user(self, credit: Fen = 0) -> UserId:
        user_id = self.store.next_id("users")
        self.st.users.add(user_id)
        self.st.balances[user_id] = 0
        if credit:
            self.st.balances[user_id] = credit
            ref = f"admin-credit:{user_id}"
            self.st.ledger[ref] = LedgerEntry(user_id, credit, "admin_credit", ref, credit)
        return user_id

    def session(self, *, ended: bool = True) -> SessionId:
        session_id = self.store.next_id("sessions")
        self.st.sessions[session_id] = {"ended": ended}
        return session_id

    def lot(self, session_id: SessionId, title: str = "Blue vase") -> LotId:
        lot_id = self.store.next_id("lots")
        self.st.lots[lot_id] = {"session_id": session_id, "title": title}
        return lot_id

    def deposit(
        self,
        user_id: UserId,
        session_id: SessionId,
        amount: Fen,
        lot_id: LotId | None = None,
        via: PayWith = "balance",
        out_trade_no: str | None = None,
    ) -> int:
        """A paid deposit; from the balance (debited, with its ledger entry) or through the provider."""
        deposit_id = self.store.next_id("deposits")
        if via == "balance":
            self.st.balances[user_id] -= amount
            assert self.st.balances[user_id] >= 0
            ref = f"deposit:{deposit_id}"
            self.st.ledger[ref] = LedgerEntry(user_id, -amount, "deposit", ref, self.st.balances[user_id])
        self.st.deposits[deposit_id] = Deposit(
            deposit_id, user_id, session_id, lot_id, amount, amount, None, via, out_trade_no
        )
        self.st.deposit_status[deposit_id] = "paid"
        return deposit_id

    def close(self, lot_id: LotId, winner: UserId | None, price: Fen, closed_at_ms: Millis = 0) -> None:
        session_id = int(self.st.lots[lot_id]["session_id"])
        if winner is not None:
            self.st.bids.append(
                {"lot_id": lot_id, "bidder": winner, "price": price, "status": BidStatus.BIDDING}
            )
        result = LotState.SOLD if winner is not None else LotState.UNSOLD
        self.st.outbox[lot_id] = OutboxItem(
            lot_id, session_id, result, winner, price, 1, closed_at_ms, OutboxStatus.PENDING
        )

    def address(self, user_id: UserId) -> int:
        address_id = self.store.next_id("addresses")
        self.st.addresses[address_id] = {
            "_id": address_id,
            "user_id": user_id,
            "name": "Li Lei",
            "phone": "13800000000",
            "detail": "1 Road",
        }
        return address_id

    def coupon(self, user_id: UserId, session_id: SessionId, amount: Fen) -> int:
        coupon_id = self.store.next_id("user_coupons")
        self.st.user_coupons[coupon_id] = UserCoupon(
            coupon_id, 0, user_id, session_id, "gift", amount, UserCouponStatus.UNUSED, 0
        )
        return coupon_id


# -- deposits (engine/settle/deposits.py) -------------------------------------------------------------
LIVE = ("pending", "paid")


class FakeDepositRecords:
    def __init__(self, st: State) -> None:
        self.st = st

    async def get(self, deposit_id: int) -> DepositRecord | None:
        return self.st.deposit_records.get(deposit_id)

    async def by_payment_id(self, payment_id: str) -> DepositRecord | None:
        return next((r for r in self.st.deposit_records.values() if r.payment_id == payment_id), None)

    async def live_session_deposit(self, user_id: UserId, session_id: SessionId) -> bool:
        return any(
            r.user_id == user_id and r.session_id == session_id and r.lot_id is None and r.status in LIVE
            for r in self.st.deposit_records.values()
        )

    async def add(self, record: DepositRecord) -> None:
        # The unique indexes of persistence/mongo.py: one live deposit per user and target, one
        # record per id and per trade number.
        for r in self.st.deposit_records.values():
            if r.id == record.id or (record.payment_id is not None and r.payment_id == record.payment_id):
                raise Duplicate(f"deposit {record.id}")
            same_target = (r.user_id, r.session_id, r.lot_id) == (
                record.user_id,
                record.session_id,
                record.lot_id,
            )
            if same_target and r.status in LIVE and record.status in LIVE:
                raise Duplicate(f"a live deposit for {record.session_id}/{record.lot_id}")
        self.st.deposit_records[record.id] = record

    async def _move(self, deposit_id: int, status: str, now: datetime.datetime) -> DepositRecord | None:
        record = self.st.deposit_records.get(deposit_id)
        if record is None or record.status != "pending":
            return None
        moved = dataclasses.replace(record, status=status, paid_at=now if status == "paid" else None)
        self.st.deposit_records[deposit_id] = moved
        return moved

    async def mark_paid(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        return await self._move(deposit_id, "paid", now)

    async def mark_failed(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        return await self._move(deposit_id, "failed", now)

    async def attach_pay_url(self, deposit_id: int, pay_url: str) -> None:
        record = self.st.deposit_records[deposit_id]
        self.st.deposit_records[deposit_id] = dataclasses.replace(record, pay_url=pay_url)

    async def list_for_user(
        self, user_id: UserId, skip: int, limit: int, session_id: SessionId | None = None
    ) -> tuple[list[DepositRecord], int]:
        mine = sorted(
            (
                r
                for r in self.st.deposit_records.values()
                if r.user_id == user_id and (session_id is None or r.session_id == session_id)
            ),
            key=lambda r: -r.id,
        )
        return mine[skip : skip + limit], len(mine)

    async def paid_in_sessions(self, session_ids: list[SessionId]) -> list[DepositRecord]:
        return [
            r for r in self.st.deposit_records.values() if r.status == "paid" and r.session_id in session_ids
        ]


def deposit_factory(store: FakeSettlementStore) -> Callable[[], DepositUnitOfWork]:
    """Deposits' unit of work is the same fake transaction: records, balances and ledger together."""
    return store.uow


class FakeEngine:
    """A real book; `execute` applies RegisterDeposit at once and remembers every command."""

    def __init__(self) -> None:
        self.book = Book()
        self.commands: list[Command] = []

    def execute(self, command: Command) -> asyncio.Future[Outcome]:
        self.commands.append(command)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        assert isinstance(command, RegisterDeposit)
        try:
            self.book.register_deposit(command.session_id, command.lot_id, command.user_id)
        except GavelError as error:
            future.set_result(Outcome(False, error.code, error.message, 0, None))
        else:
            future.set_result(Outcome(True, None, "", 1, None))
        return future

    @property
    def registrations(self) -> list[Command]:
        return [c for c in self.commands if isinstance(c, RegisterDeposit)]
