"""Deposits' decisions (engine/settle/deposits.py) on the in-memory unit of work: no server.

Which deposit is owed and when it is refused, the pay path (balance: debit + record together, once;
provider: pending until the verified notification), and the engine told of every paid deposit.
"""

from __future__ import annotations

import datetime

import pytest

from engine.book.errors import NotFound, SessionEnded
from engine.book.increments import rule_from_spec
from engine.book.states import LotState, SessionState
from engine.commands import RegisterDeposit
from engine.settle.deposits import (
    DepositExists,
    DepositRecord,
    DepositsClosed,
    DepositService,
    DepositStateConflict,
    NoDepositRequired,
    ledger_ref,
)
from payments.trade_numbers import is_random_trade_no
from tests.engine.settle.fakes import (
    FakeEngine,
    FakeSettlementStore,
    FakeUnitOfWork,
    InsufficientBalance,
    LedgerEntry,
    Scene,
    deposit_factory,
)

SESSION, LOT, FREE_LOT = 1, 10, 11
SESSION_DEPOSIT, LOT_DEPOSIT = 1_000, 300
NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


class World:
    def __init__(self) -> None:
        self.store = FakeSettlementStore()
        self.scene = Scene(self.store)
        self.engine = FakeEngine()
        book = self.engine.book
        book.put_session(
            SESSION, preview_start=0, preview_end=0, bidding_start=1, bidding_end=2, deposit=SESSION_DEPOSIT
        )
        book.put_lot(LOT, SESSION, rule_from_spec(["fixed", 1_000, 100]), deposit=LOT_DEPOSIT)
        book.put_lot(FREE_LOT, SESSION, rule_from_spec(["fixed", 1_000, 100]), deposit=0)
        self.now = NOW
        self.service = DepositService(deposit_factory(self.store), self.engine, clock=lambda: self.now)

    @property
    def records(self) -> dict[int, DepositRecord]:
        return self.store.state.deposit_records

    def balance(self, user_id: int) -> int:
        return self.store.state.balances[user_id]

    def deposit_entries(self) -> list[LedgerEntry]:
        return [e for e in self.store.state.ledger.values() if e.kind == "deposit"]


@pytest.fixture
def world() -> World:
    return World()


def test_amount_due_session_deposit_vs_per_lot(world: World) -> None:
    user = world.scene.user()
    assert world.service.amount_due(user, SESSION, None) == SESSION_DEPOSIT
    assert world.service.amount_due(user, SESSION, LOT) == LOT_DEPOSIT
    with pytest.raises(NoDepositRequired):
        world.service.amount_due(user, SESSION, FREE_LOT)
    with pytest.raises(NotFound):
        world.service.amount_due(user, 99, None)
    with pytest.raises(NotFound):
        world.service.amount_due(user, SESSION, 99)


async def test_refused_when_the_session_ended_or_the_lot_closed(world: World) -> None:
    user = world.scene.user(credit=5_000)
    world.engine.book.lots[LOT].state = LotState.SOLD
    with pytest.raises(DepositsClosed):
        await world.service.create(user, SESSION, LOT, "balance")
    world.engine.book.sessions[SESSION].state = SessionState.ENDED
    with pytest.raises(SessionEnded):
        await world.service.create(user, SESSION, None, "balance")
    with pytest.raises(SessionEnded):
        world.service.amount_due(user, SESSION, LOT)
    assert world.records == {} and world.balance(user) == 5_000 and world.engine.commands == []


async def test_paid_from_balance_debits_once_with_a_ledger_entry(world: World) -> None:
    user = world.scene.user(credit=5_000)
    deposit = await world.service.create(user, SESSION, None, "balance")
    assert (deposit.status, deposit.amount, deposit.pay_with, deposit.payment_id) == (
        "paid",
        SESSION_DEPOSIT,
        "balance",
        None,
    )
    assert deposit.paid_at == NOW and world.records == {deposit.id: deposit}
    assert world.balance(user) == 4_000
    assert world.deposit_entries() == [
        LedgerEntry(user, -SESSION_DEPOSIT, "deposit", ledger_ref(deposit.id), 4_000)
    ]
    assert world.engine.registrations == [RegisterDeposit(SESSION, None, user)]
    assert user in world.engine.book.sessions[SESSION].depositors
    # Asked again: refused, nothing more debited.
    with pytest.raises(DepositExists):
        await world.service.create(user, SESSION, None, "balance")
    assert world.balance(user) == 4_000 and len(world.deposit_entries()) == 1 and len(world.records) == 1


async def test_a_session_deposit_covers_every_lot(world: World) -> None:
    payer, pending = world.scene.user(credit=5_000), world.scene.user(credit=5_000)
    await world.service.create(payer, SESSION, None, "balance")
    await world.service.create(pending, SESSION, None, "provider")  # pending is live: it covers too
    for user in (payer, pending):
        with pytest.raises(DepositExists, match="covers"):
            await world.service.create(user, SESSION, LOT, "balance")
    assert world.balance(payer) == 4_000 and world.balance(pending) == 5_000 and len(world.records) == 2


async def test_a_retried_unit_of_work_debits_once(world: World) -> None:
    """The first commit meets a concurrent one (Transient): its debit is dropped with it, and the
    rerun (same deposit id, so the same ledger ref) moves the money once."""
    user = world.scene.user(credit=5_000)
    conflicts: list[int] = []

    class ConflictingOnce(FakeUnitOfWork):
        async def commit(self) -> None:
            if not conflicts and self.state.deposit_records:
                conflicts.append(1)
                self.store.version += 1  # another unit of work committed meanwhile
            await super().commit()

    world.service.new_uow = lambda: ConflictingOnce(world.store)
    deposit = await world.service.create(user, SESSION, LOT, "balance")
    assert conflicts == [1]
    assert world.balance(user) == 5_000 - LOT_DEPOSIT
    assert [e.ref for e in world.deposit_entries()] == [ledger_ref(deposit.id)]
    assert list(world.records) == [deposit.id]
    assert world.engine.registrations == [RegisterDeposit(SESSION, LOT, user)]


async def test_insufficient_balance_is_refused_and_nothing_written(world: World) -> None:
    user = world.scene.user(credit=SESSION_DEPOSIT - 1)
    with pytest.raises(InsufficientBalance):
        await world.service.create(user, SESSION, None, "balance")
    assert world.records == {} and world.deposit_entries() == []
    assert world.balance(user) == SESSION_DEPOSIT - 1 and world.engine.commands == []


async def test_provider_path_pending_then_paid_once(world: World) -> None:
    user = world.scene.user(credit=5_000)
    pending = await world.service.create(user, SESSION, LOT, "provider")
    assert pending.status == "pending" and pending.paid_at is None and pending.pay_with == "provider"
    assert pending.payment_id is not None and pending.payment_id.startswith("dep-")
    assert is_random_trade_no(pending.payment_id)
    assert world.engine.commands == [] and world.balance(user) == 5_000
    assert (await world.service.by_payment_id(pending.payment_id)).id == pending.id
    await world.service.attach_pay_url(pending.id, "https://pay.example/x")
    assert (await world.service.get(pending.id)).pay_url == "https://pay.example/x"

    world.now = LATER
    paid = await world.service.mark_paid(pending.id)
    assert paid.status == "paid" and paid.paid_at == LATER
    assert user in world.engine.book.lots[LOT].depositors
    state_after = dict(world.records)

    world.now = LATER + datetime.timedelta(minutes=1)
    again = await world.service.mark_paid(pending.id)  # the provider notifies again
    assert again == paid and world.records == state_after
    assert world.balance(user) == 5_000 and world.deposit_entries() == []
    assert world.engine.book.lots[LOT].depositors == {user}  # registering again is idempotent
    with pytest.raises(DepositStateConflict):
        await world.service.mark_failed(pending.id)
    with pytest.raises(NotFound):
        await world.service.mark_paid(424242)
    with pytest.raises(NotFound):
        await world.service.by_payment_id("dep-unknown")
    listed, total = await world.service.list_for_user(user, 0, 10)
    assert total == 1 and listed == [paid]


async def test_failed_path(world: World) -> None:
    user = world.scene.user()
    pending = await world.service.create(user, SESSION, None, "provider")
    failed = await world.service.mark_failed(pending.id)
    assert failed.status == "failed" and failed.paid_at is None
    assert await world.service.mark_failed(pending.id) == failed  # repeated: unchanged
    with pytest.raises(DepositStateConflict):
        await world.service.mark_paid(pending.id)
    assert world.engine.commands == [] and user not in world.engine.book.sessions[SESSION].depositors
    # A failed deposit is not live: the payer may open a new one.
    again = await world.service.create(user, SESSION, None, "provider")
    assert again.id != pending.id and again.status == "pending"


async def test_reregister_paid_registers_what_the_engine_lost(world: World) -> None:
    user, other = world.scene.user(credit=5_000), world.scene.user()
    paid = await world.service.create(user, SESSION, None, "balance")
    pending = await world.service.create(other, SESSION, LOT, "provider")
    world.engine.book.sessions[SESSION].depositors.clear()  # the process died before the engine heard
    assert await world.service.reregister_paid() == 1
    assert world.engine.book.sessions[SESSION].depositors == {paid.user_id}
    assert other not in world.engine.book.lots[LOT].depositors  # pending: not registered
    assert pending.status == "pending"
    assert await world.service.reregister_paid() == 0  # already held: nothing resubmitted
    world.engine.book.sessions[SESSION].state = SessionState.ENDED
    world.engine.book.sessions[SESSION].depositors.clear()
    assert await world.service.reregister_paid() == 0  # ended sessions are left alone
