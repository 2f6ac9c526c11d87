"""The settlement worker's orchestration over in-memory fakes of its ports (store, engine, provider).

The store's own behaviour (transactions, unique keys, the money) is tested against the real
MongoDB in tests/persistence/test_settlement.py; here: which steps run, in which order, how a
restart resumes, what the engine and the provider are told.
"""

import asyncio
import dataclasses
from typing import Any

import pytest

from engine.book.errors import GavelError
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import BlockBidder, Command, MarkOverdue, Outcome, UnblockBidder
from engine.settle.ports import PaymentRequest, PaymentRouter
from engine.settle.rules import OrderStatus, PaymentCase, PaymentSplit
from engine.settle.worker import (
    OrderPayments,
    OutboxItem,
    OutboxStatus,
    OverdueResult,
    PaymentResult,
    PayRequest,
    PayWith,
    ProviderCharge,
    ProviderReceipt,
    RefundTask,
    SessionRelease,
    SettlementWorker,
    StrayDeposit,
    order_trade_no,
    parse_order_trade_no,
    register_payment_handlers,
)

T0 = 1_700_000_000_000
OK = Outcome(True, None, "", 1, None)
SPLIT = PaymentSplit(PaymentCase.DEPOSIT_EXCEEDS, 0, 3_000, 2_000, 0, 0)


class Crash(BaseException):
    """A simulated process death."""


class FakeStore:
    """Just enough state to follow the worker: outbox items, refunds, overdue orders."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.outbox: dict[int, OutboxItem] = {}
        self.losers: dict[int, list[int]] = {}  # lot id -> deposit ids refunded at close
        self.refunds: dict[int, RefundTask] = {}  # by deposit id
        self.due: list[OverdueResult] = []
        self.overdue_done: set[int] = set()
        self.synced: set[int] = set()
        self.releases: list[SessionRelease] = []
        self.sessions: list[int] = []
        self.pay_result: PaymentResult | None = None
        self.receipt: ProviderReceipt | None = None
        self.receipts_due: list[ProviderReceipt] = []
        self.strays: list[StrayDeposit] = []

    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        return [item for item in self.outbox.values() if item.status is not OutboxStatus.DONE][:limit]

    async def record_close(self, item: OutboxItem, deadline_ms: int) -> None:
        self.calls.append(("record_close", item.lot_id, deadline_ms))
        self.outbox[item.lot_id] = dataclasses.replace(item, status=OutboxStatus.RECORDED)

    async def deposits_to_refund_at_close(self, item: OutboxItem) -> list[int]:
        return [d for d in self.losers.get(item.lot_id, []) if d not in self.refunds]

    async def open_refund(self, deposit_id: int, reason: str, now_ms: int) -> RefundTask | None:
        self.calls.append(("open_refund", deposit_id, reason))
        if deposit_id not in self.refunds:
            via: PayWith = "provider" if deposit_id >= 100 else "balance"
            self.refunds[deposit_id] = RefundTask(deposit_id + 1000, deposit_id, 9, 2_000, via, True)
        return self.refunds[deposit_id]

    async def finish_outbox(self, lot_id: int) -> None:
        self.calls.append(("finish_outbox", lot_id))
        self.outbox[lot_id] = dataclasses.replace(self.outbox[lot_id], status=OutboxStatus.DONE)

    def _refunded(self, refund_id: int) -> None:
        for deposit_id, refund in self.refunds.items():
            if refund.refund_id == refund_id:
                self.refunds[deposit_id] = dataclasses.replace(refund, pending=False)

    async def pending_refunds(self, limit: int) -> list[RefundTask]:
        return [r for r in self.refunds.values() if r.pending][:limit]

    async def refund_to_balance(self, refund_id: int, now_ms: int) -> None:
        self.calls.append(("refund_to_balance", refund_id))
        self._refunded(refund_id)

    async def mark_refunded(self, refund_id: int, now_ms: int) -> None:
        self.calls.append(("mark_refunded", refund_id))
        self._refunded(refund_id)

    async def sessions_to_settle(self, limit: int) -> list[int]:
        return self.sessions

    async def release_session(self, session_id: int, user_id: int | None, now_ms: int) -> SessionRelease:
        self.calls.append(("release_session", session_id, user_id))
        return self.releases.pop(0) if self.releases else SessionRelease([], 0, True)

    async def stray_deposits(self, limit: int) -> list[StrayDeposit]:
        strays, self.strays = self.strays, []
        return strays

    async def due_orders(self, now_ms: int, limit: int) -> list[int]:
        return [r.order_id for r in self.due if r.order_id not in self.overdue_done][:limit]

    async def mark_overdue(self, order_id: int, now_ms: int) -> OverdueResult | None:
        self.calls.append(("mark_overdue", order_id, now_ms))
        if order_id in self.overdue_done:
            return None
        self.overdue_done.add(order_id)
        return next(r for r in self.due if r.order_id == order_id)

    async def unsynced_overdue(self, limit: int) -> list[OverdueResult]:
        return [r for r in self.due if r.order_id in self.overdue_done and r.order_id not in self.synced]

    async def mark_engine_synced(self, order_id: int) -> None:
        self.synced.add(order_id)

    async def pay(self, request: PayRequest, now_ms: int) -> PaymentResult:
        self.calls.append(("pay", request))
        assert self.pay_result is not None
        return self.pay_result

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None:
        self.calls.append(("attach_pay_url", order_id, out_trade_no, pay_url))

    async def receive_provider_payment(self, out_trade_no: str, amount: int, now_ms: int) -> ProviderReceipt:
        self.calls.append(("receive", out_trade_no, amount))
        assert self.receipt is not None
        return self.receipt

    async def provider_refunds_due(self, limit: int) -> list[ProviderReceipt]:
        due, self.receipts_due = self.receipts_due, []
        return due

    async def mark_provider_refunded(self, out_trade_no: str, now_ms: int) -> None:
        self.calls.append(("mark_provider_refunded", out_trade_no))

    async def clear_non_payer(self, user_id: int) -> bool:
        self.calls.append(("clear_non_payer", user_id))
        return True


class FakeEngine:
    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.answers: list[Outcome] = []

    async def __call__(self, command: Command) -> Outcome:
        self.commands.append(command)
        return self.answers.pop(0) if self.answers else OK


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.payments: list[PaymentRequest] = []
        self.refunds: list[tuple[str, int, str]] = []

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments.append(request)
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        self.refunds.append((out_trade_no, amount, refund_ref))


@dataclasses.dataclass
class Rig:
    store: FakeStore
    engine: FakeEngine
    provider: FakeProvider
    clock: FakeClock
    steps: list[tuple[str, int]]

    def worker(self, *, crash_at: str | None = None, provider: bool = True) -> SettlementWorker:
        def hook(step: str, key: int) -> None:
            self.steps.append((step, key))
            if step == crash_at:
                raise Crash(step)

        return SettlementWorker(
            self.store,
            self.engine,
            self.clock,
            60_000,
            provider=self.provider if provider else None,
            hook=hook,
        )


@pytest.fixture
def rig() -> Rig:
    return Rig(FakeStore(), FakeEngine(), FakeProvider(), FakeClock(T0), [])


def closed(lot_id: int, *, winner: int | None = 5, status: OutboxStatus = OutboxStatus.PENDING) -> OutboxItem:
    result = LotState.SOLD if winner is not None else LotState.UNSOLD
    return OutboxItem(lot_id, 1, result, winner, 8_000, 4, T0, status)


# -- closed lots ---------------------------------------------------------------------------------------
async def test_a_closed_lot_is_settled_in_steps(rig: Rig) -> None:
    rig.store.outbox[10] = closed(10)
    rig.store.losers[10] = [7]
    assert await rig.worker().drain_outbox() == 1
    assert rig.store.calls == [
        ("record_close", 10, T0 + 60_000),  # the deadline: close + the configured window
        ("open_refund", 7, "lot_closed"),
        ("refund_to_balance", 1007),
        ("finish_outbox", 10),
    ]
    assert rig.steps == [
        ("close_recorded", 10),
        ("refund_opened", 7),
        ("refund_executed", 7),
        ("outbox_done", 10),
    ]
    assert await rig.worker().drain_outbox() == 0


async def test_a_recorded_item_resumes_after_its_first_step(rig: Rig) -> None:
    rig.store.outbox[10] = closed(10, status=OutboxStatus.RECORDED)
    await rig.worker().drain_outbox()
    assert [call[0] for call in rig.store.calls] == ["finish_outbox"]


@pytest.mark.parametrize("crash_at", ["close_recorded", "refund_opened", "refund_executed", "outbox_done"])
async def test_a_fresh_worker_finishes_what_a_crashed_one_left(rig: Rig, crash_at: str) -> None:
    rig.store.outbox[10] = closed(10)
    rig.store.losers[10] = [7]
    with pytest.raises(Crash):
        await rig.worker(crash_at=crash_at).drain_outbox()
    await rig.worker().run_once()
    calls = [call[0] for call in rig.store.calls]
    assert calls.count("record_close") == 1
    assert calls.count("open_refund") == 1
    assert calls.count("refund_to_balance") in (1, 2)  # a retried execution is a no-op in the store
    assert rig.store.outbox[10].status is OutboxStatus.DONE
    assert not rig.store.refunds[7].pending


async def test_many_items_are_drained_in_batches(rig: Rig) -> None:
    for lot_id in range(1, 8):
        rig.store.outbox[lot_id] = closed(lot_id)
    worker = rig.worker()
    worker.batch_size = 3
    assert await worker.drain_outbox() == 7


async def test_a_store_that_makes_no_progress_does_not_trap_the_worker(rig: Rig) -> None:
    for lot_id in range(1, 4):
        rig.store.outbox[lot_id] = closed(lot_id)

    async def stuck(lot_id: int) -> None:  # a bug: items are never marked done
        rig.store.calls.append(("finish_outbox", lot_id))

    rig.store.finish_outbox = stuck  # type: ignore[method-assign]
    worker = rig.worker()
    worker.batch_size = 3
    assert await asyncio.wait_for(worker.drain_outbox(), 2) == 3


# -- refunds -------------------------------------------------------------------------------------------
async def test_provider_paid_deposits_are_refunded_through_the_provider(rig: Rig) -> None:
    refund = RefundTask(1, 123, 9, 2_000, "provider", True)
    assert await rig.worker().execute_refund(refund)
    assert rig.provider.refunds == [("dep-123", 2_000, "refund-dep-123")]
    assert rig.store.calls == [("mark_refunded", 1)]


async def test_without_a_provider_a_provider_refund_waits(rig: Rig) -> None:
    refund = RefundTask(1, 123, 9, 2_000, "provider", True)
    assert not await rig.worker(provider=False).execute_refund(refund)
    assert rig.store.calls == []


async def test_pending_refunds_are_retried(rig: Rig) -> None:
    rig.store.refunds[7] = RefundTask(1007, 7, 9, 500, "balance", True)
    rig.store.refunds[8] = RefundTask(1008, 8, 9, 500, "balance", False)
    assert await rig.worker().execute_pending_refunds() == 1
    assert rig.store.calls == [("refund_to_balance", 1007)]


# -- sessions ------------------------------------------------------------------------------------------
async def test_ended_sessions_release_their_deposits(rig: Rig) -> None:
    rig.store.sessions = [3]
    refund = RefundTask(1, 4, 9, 5_000, "balance", True)
    rig.store.releases = [SessionRelease([refund], 2, True)]
    assert await rig.worker().settle_ended_sessions() == 1
    assert rig.store.calls == [("release_session", 3, None), ("refund_to_balance", 1)]


# -- overdue -------------------------------------------------------------------------------------------
def overdue(order_id: int = 40, *, refund: RefundTask | None = None) -> OverdueResult:
    return OverdueResult(
        order_id, lot_id=12, user_id=5, session_id=1, forfeited=2_000, refund=refund, session_wide=False
    )


async def test_overdue_orders_are_marked_and_the_engine_told(rig: Rig) -> None:
    rest = RefundTask(2, 6, 5, 300, "balance", True)
    rig.store.due = [overdue(refund=rest)]
    assert await rig.worker().sweep_overdue() == 1
    assert rig.engine.commands == [MarkOverdue(12), BlockBidder(5)]
    assert rig.store.synced == {40}
    assert rig.store.calls == [
        ("mark_overdue", 40, T0),
        ("refund_to_balance", 2),
        ("release_session", 1, 5),  # the order left `unpaid`: the session deposit may be free now
    ]
    assert await rig.worker().sweep_overdue() == 0


async def test_an_engine_that_cannot_answer_is_told_again_later(rig: Rig) -> None:
    rig.store.due = [overdue()]
    unavailable = Outcome(False, "UNAVAILABLE", "stopping", 0, None)
    # The sweep tries twice (right away, then in its resync pass); the engine is down for both.
    rig.engine.answers = [unavailable, OK, unavailable, OK]
    await rig.worker().sweep_overdue()
    assert rig.store.synced == set()
    await rig.worker().sweep_overdue()
    assert rig.store.synced == {40}
    assert rig.engine.commands == [MarkOverdue(12), BlockBidder(5)] * 3
    assert [call[0] for call in rig.store.calls].count("mark_overdue") == 1


async def test_an_engine_that_already_knows_counts_as_told(rig: Rig) -> None:
    rig.store.due = [overdue()]
    rig.engine.answers = [Outcome(False, "ILLEGAL_STATE", "already overdue", 0, None), OK]
    await rig.worker().sweep_overdue()
    assert rig.store.synced == {40}


async def test_clear_non_payer_unblocks_in_the_engine(rig: Rig) -> None:
    assert await rig.worker().clear_non_payer(5)
    assert rig.engine.commands == [UnblockBidder(5)]
    rig.engine.answers = [Outcome(False, "UNAVAILABLE", "stopping", 0, None)]
    with pytest.raises(GavelError) as caught:
        await rig.worker().clear_non_payer(5)
    assert caught.value.code == "UNAVAILABLE"


async def test_reconcile_refunds_stray_deposits(rig: Rig) -> None:
    rig.store.strays = [StrayDeposit(7, 9, 1, False), StrayDeposit(8, 9, 1, True)]
    assert await rig.worker().reconcile() == 2
    assert rig.store.calls == [
        ("open_refund", 7, "late_deposit"),
        ("refund_to_balance", 1007),
        ("release_session", 1, 9),
    ]


# -- paying --------------------------------------------------------------------------------------------
def paid_result(**changes: Any) -> PaymentResult:
    base = PaymentResult(40, 5, 1, OrderStatus.AWAITING_DELIVERY, SPLIT, "balance", None, None, False)
    return dataclasses.replace(base, **changes)


REQUEST = PayRequest(40, 5, None, 3, "provider", "key-1")


async def test_a_provider_charge_gets_its_pay_url(rig: Rig) -> None:
    charge = ProviderCharge("ord-40-1", 6_000, "Gavel order 40: Vase", None)
    rig.store.pay_result = paid_result(status=OrderStatus.UNPAID, pay_with="provider", charge=charge)
    payments = OrderPayments(rig.store, rig.worker(), rig.provider)
    result = await payments.pay(REQUEST)
    assert rig.provider.payments == [PaymentRequest("ord-40-1", 6_000, "Gavel order 40: Vase", 5)]
    assert result.charge is not None and result.charge.pay_url == "https://pay.example/ord-40-1"
    assert ("attach_pay_url", 40, "ord-40-1", "https://pay.example/ord-40-1") in rig.store.calls
    # A replayed request whose charge already has its URL asks the provider nothing.
    rig.store.pay_result = paid_result(status=OrderStatus.UNPAID, charge=result.charge, replayed=True)
    await payments.pay(REQUEST)
    assert len(rig.provider.payments) == 1


async def test_provider_payments_need_a_provider(rig: Rig) -> None:
    payments = OrderPayments(rig.store, rig.worker(provider=False), None)
    with pytest.raises(GavelError) as caught:
        await payments.pay(REQUEST)
    assert caught.value.code == "PAYMENT_UNAVAILABLE"
    assert rig.store.calls == []


async def test_a_paid_order_refunds_the_deposit_rest_and_frees_the_session(rig: Rig) -> None:
    rest = RefundTask(3, 7, 5, 2_000, "balance", True)
    rig.store.pay_result = paid_result(refund=rest)
    await OrderPayments(rig.store, rig.worker(), rig.provider).pay(
        dataclasses.replace(REQUEST, pay_with="balance")
    )
    assert [call[0] for call in rig.store.calls] == ["pay", "refund_to_balance", "release_session"]


async def test_a_notification_that_cannot_be_applied_is_refunded(rig: Rig) -> None:
    rig.store.receipt = ProviderReceipt("ord-40-1", 40, 6_000, "refund_pending", "the order is overdue", None)
    await OrderPayments(rig.store, rig.worker(), rig.provider).on_provider_paid("ord-40-1", 6_000)
    assert rig.provider.refunds == [("ord-40-1", 6_000, "refund-ord-40-1")]
    assert rig.store.calls[-1] == ("mark_provider_refunded", "ord-40-1")


async def test_an_applied_notification_follows_up(rig: Rig) -> None:
    rig.store.receipt = ProviderReceipt(
        "ord-40-1", 40, 6_000, "applied", "", paid_result(pay_with="provider")
    )
    await OrderPayments(rig.store, rig.worker(), rig.provider).on_provider_paid("ord-40-1", 6_000)
    assert rig.provider.refunds == []
    assert rig.store.calls[-1] == ("release_session", 1, 5)


async def test_provider_refunds_left_pending_are_retried(rig: Rig) -> None:
    rig.store.receipts_due = [ProviderReceipt("ord-9-2", 9, 100, "refund_pending", "stale", None)]
    assert await rig.worker().retry_provider_refunds() == 1
    assert rig.provider.refunds == [("ord-9-2", 100, "refund-ord-9-2")]


async def test_the_router_sends_ord_payments_here(rig: Rig) -> None:
    router = PaymentRouter()
    payments = OrderPayments(rig.store, rig.worker(), rig.provider)
    register_payment_handlers(router, payments)
    assert router.handler_for("ord-40-1") == payments.on_provider_paid
    assert router.handler_for("dep-3") is None


def test_order_trade_numbers() -> None:
    assert order_trade_no(40, 2) == "ord-40-2"
    assert parse_order_trade_no("ord-40-2") == (40, 2)
    for bad in ("ord-40", "dep-40-1", "ord-x-1", "ord-40-", "ord--1", ""):
        assert parse_order_trade_no(bad) is None


# -- the loop ------------------------------------------------------------------------------------------
async def test_the_loop_runs_rounds_until_stopped(rig: Rig) -> None:
    rig.store.outbox[10] = closed(10)
    worker = rig.worker()
    worker.interval_s = 0.01
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if rig.store.outbox[10].status is OutboxStatus.DONE:
            break
        await asyncio.sleep(0.01)
    rig.store.outbox[11] = closed(11)
    worker.poke()
    for _ in range(200):
        if rig.store.outbox[11].status is OutboxStatus.DONE:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert rig.store.outbox[10].status is rig.store.outbox[11].status is OutboxStatus.DONE


async def test_a_failing_phase_does_not_stop_the_others(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(limit: int) -> list[OutboxItem]:
        raise RuntimeError("outbox unreadable")

    rig.store.outbox_batch = broken  # type: ignore[method-assign]
    rig.store.due = [overdue()]
    with pytest.raises(RuntimeError):
        await rig.worker().run_once()
    assert rig.store.synced == {40}  # the overdue sweep still ran
    assert "settlement phase outbox failed" in caplog.text


def test_the_deadline_must_be_positive(rig: Rig) -> None:
    with pytest.raises(ValueError):
        SettlementWorker(rig.store, rig.engine, rig.clock, 0)
