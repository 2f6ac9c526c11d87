"""Settlement handlers: what happens after a lot closes, when an order is paid, and when it is not.

Storage is reached only through `SettlementStore`, which `engine.settle.service.SettlementService`
implements by running the decisions of `engine.settle.handlers` in units of work (MongoDB in
persistence/settlement/); the engine only through a callable that submits commands; the payment
provider only through the `PaymentProvider` port. Every store call is one idempotent step (one
transaction guarded by unique keys and status conditions), so a worker that dies between any two
steps is simply started again: the next run finds each thing half done and finishes it.
"""

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from engine.book.errors import GavelError
from engine.book.states import LotState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.clock import Clock
from engine.commands import BlockBidder, Command, MarkOverdue, Outcome, UnblockBidder
from engine.settle.ports import PaymentProvider, PaymentRequest, PaymentRouter
from engine.settle.rules import DEFAULT_PAYMENT_WINDOW_MS, OrderStatus, PaymentSplit, order_deadline

log = logging.getLogger("gavel.settlement")

PayWith = Literal["balance", "provider"]
EngineCommands = Callable[[Command], Awaitable[Outcome]]
StepHook = Callable[[str, int], None]
"""Called after every completed step with its name and key (tests inject crashes here)."""

ORDER_PAYMENT_PREFIX = "ord"
# Engine answers that mean "already so": the lot is overdue already, or unknown to this engine.
_SETTLED_ENGINE_CODES = frozenset({"ILLEGAL_STATE", "NOT_FOUND"})


# -- errors -----------------------------------------------------------------------------------------
class OrderNotPayable(GavelError):
    code = "ORDER_NOT_PAYABLE"


class CouponNotUsable(GavelError):
    code = "COUPON_NOT_USABLE"


class AddressRequired(GavelError):
    code = "ADDRESS_REQUIRED"


class PaymentUnavailable(GavelError):
    code = "PAYMENT_UNAVAILABLE"


# -- values crossing the port ---------------------------------------------------------------------
class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # written by the archiver: nothing done yet
    RECORDED = "recorded"  # order / lot / bid record / session totals written
    DONE = "done"  # losers' per-lot deposits have their refunds opened


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxItem:
    """One closed lot waiting for settlement (a `settlement_outbox` document)."""

    lot_id: LotId
    session_id: SessionId
    result: LotState  # SOLD or UNSOLD
    winner_id: UserId | None
    price: Fen
    bid_count: int
    closed_at_ms: Millis
    status: OutboxStatus


@dataclasses.dataclass(frozen=True, slots=True)
class RefundTask:
    """A refund record: one per deposit at most."""

    refund_id: int
    deposit_id: int
    user_id: UserId
    amount: Fen
    via: PayWith  # back the way the deposit was paid
    pending: bool
    # The deposit's provider payment (random, payments/trade_numbers.py); None for older deposits,
    # whose number was `dep-{deposit_id}`.
    out_trade_no: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRelease:
    refunds: list[RefundTask]  # opened now (pending) for whole-session deposits no longer needed
    coupons_expired: int
    settled: bool  # every whole-session deposit of the session is refunded or used up


@dataclasses.dataclass(frozen=True, slots=True)
class OverdueResult:
    order_id: int
    lot_id: LotId
    user_id: UserId
    session_id: SessionId
    forfeited: Fen
    refund: RefundTask | None  # the rest of a per-lot deposit larger than the price
    session_wide: bool  # the forfeit came from a whole-session deposit


@dataclasses.dataclass(frozen=True, slots=True)
class PayRequest:
    order_id: int
    user_id: UserId
    coupon_id: int | None  # a user coupon id
    address_id: int
    pay_with: PayWith
    idempotency_key: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderCharge:
    """A payment through the provider, waiting for its signed notification."""

    out_trade_no: str
    amount: Fen
    subject: str
    pay_url: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentResult:
    order_id: int
    user_id: UserId
    session_id: SessionId
    status: OrderStatus  # AWAITING_DELIVERY once paid; UNPAID while a provider charge is open
    split: PaymentSplit
    pay_with: PayWith
    refund: RefundTask | None  # the deposit's rest, when it is refunded now
    charge: ProviderCharge | None
    replayed: bool  # the same idempotency key was answered before; nothing changed now


ReceiptOutcome = Literal["applied", "refund_pending", "refunded"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderReceipt:
    """A verified provider notification for an order, recorded once per out_trade_no."""

    out_trade_no: str
    order_id: int | None
    amount: Fen
    outcome: ReceiptOutcome  # applied to the order, or to be refunded (late, stale or wrong)
    reason: str
    payment: PaymentResult | None  # when applied just now


@dataclasses.dataclass(frozen=True, slots=True)
class StrayDeposit:
    """A paid deposit whose target was settled before it was paid (a late provider payment)."""

    deposit_id: int
    user_id: UserId
    session_id: SessionId
    session_wide: bool


class SettlementStore(Protocol):
    """Storage of settlement. Every method is one idempotent, transactional step."""

    # -- closed lots (the outbox) ------------------------------------------------------------------
    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        """Outbox items not yet done, in close order."""
        ...

    async def record_close(self, item: OutboxItem, deadline_ms: Millis) -> None:
        """pending -> recorded: the winner's order (at most one per lot), the won bid record, the
        lot's deal price or unsold mark, the session's totals. No-op unless pending."""
        ...

    async def deposits_to_refund_at_close(self, item: OutboxItem) -> list[int]:
        """Paid per-lot deposits on the lot that are refunded at close (everyone's but the winner's)."""
        ...

    async def open_refund(self, deposit_id: int, reason: str, now_ms: Millis) -> RefundTask | None:
        """Record the refund of all that remains of a deposit (pending). At most one per deposit:
        returns the existing one if any, None if nothing remains to refund."""
        ...

    async def finish_outbox(self, lot_id: LotId) -> None:
        """recorded -> done."""
        ...

    # -- refunds ---------------------------------------------------------------------------------------
    async def pending_refunds(self, limit: int) -> list[RefundTask]: ...

    async def refund_to_balance(self, refund_id: int, now_ms: Millis) -> None:
        """pending -> refunded with the balance credit and its ledger entry, in one transaction."""
        ...

    async def mark_refunded(self, refund_id: int, now_ms: Millis) -> None:
        """pending -> refunded after the provider confirmed the refund."""
        ...

    # -- sessions --------------------------------------------------------------------------------------
    async def sessions_to_settle(self, limit: int) -> list[SessionId]:
        """Ended sessions whose whole-session deposits are not all released yet."""
        ...

    async def release_session(
        self, session_id: SessionId, user_id: UserId | None, now_ms: Millis
    ) -> SessionRelease:
        """Open refunds for the whole-session deposits (of one user, or all) that are no longer
        needed and expire coupons that can no longer be used; marks the session settled once no
        deposit is held. Does nothing before the session has ended and its closes are recorded."""
        ...

    async def stray_deposits(self, limit: int) -> list[StrayDeposit]: ...

    # -- overdue ---------------------------------------------------------------------------------------
    async def due_orders(self, now_ms: Millis, limit: int) -> list[int]: ...

    async def mark_overdue(self, order_id: int, now_ms: Millis) -> OverdueResult | None:
        """unpaid -> overdue with the forfeit deduction, lot and bid record overdue and the user
        flagged as a non-payer. None if the order is not (or no longer) unpaid and due."""
        ...

    async def unsynced_overdue(self, limit: int) -> list[OverdueResult]:
        """Overdue orders whose MarkOverdue / BlockBidder may not have reached the engine."""
        ...

    async def mark_engine_synced(self, order_id: int) -> None: ...

    # -- paying ----------------------------------------------------------------------------------------
    async def pay(self, request: PayRequest, now_ms: Millis) -> PaymentResult:
        """Pay from the deposit and the balance at once, or open a provider charge for the rest."""
        ...

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None: ...

    async def receive_provider_payment(
        self, out_trade_no: str, amount: Fen, now_ms: Millis
    ) -> ProviderReceipt:
        """Apply a verified provider payment to its order, or record it for refunding."""
        ...

    async def provider_refunds_due(self, limit: int) -> list[ProviderReceipt]: ...

    async def mark_provider_refunded(self, out_trade_no: str, now_ms: Millis) -> None: ...

    # -- non-payers ------------------------------------------------------------------------------------
    async def clear_non_payer(self, user_id: UserId) -> bool:
        """Clear the flag; False if the user was not flagged. NotFound for unknown users."""
        ...


def order_trade_no(order_id: int, attempt: int) -> str:
    """`ord-{order_id}-{attempt}`: the numbers of older installations (new ones are random, see
    engine/settle/handlers.py `_open_charge`); still parsed so their late notifications find their
    order (`handlers.order_of_trade_no`)."""
    return f"{ORDER_PAYMENT_PREFIX}-{order_id}-{attempt}"


def parse_order_trade_no(out_trade_no: str) -> tuple[int, int] | None:
    prefix, _, rest = out_trade_no.partition("-")
    order_part, _, attempt_part = rest.partition("-")
    if prefix != ORDER_PAYMENT_PREFIX or not order_part.isdigit() or not attempt_part.isdigit():
        return None
    return int(order_part), int(attempt_part)


def deposit_trade_no(deposit_id: int) -> str:
    return f"dep-{deposit_id}"


# -- the worker -------------------------------------------------------------------------------------
class SettlementWorker:
    """Drains the outbox, settles ended sessions, sweeps overdue orders, executes refunds.

    `run(stop)` does it all periodically; each method can also be called on its own (tests,
    admin tools). Methods raise on failure; `run` logs and retries.
    """

    def __init__(
        self,
        store: SettlementStore,
        engine_commands: EngineCommands,
        clock: Clock,
        deadline_ms: Millis = DEFAULT_PAYMENT_WINDOW_MS,
        *,
        provider: PaymentProvider | None = None,
        hook: StepHook | None = None,
        batch_size: int = 100,
        interval_s: float = 1.0,
        reconcile_every_s: float = 60.0,
    ) -> None:
        if deadline_ms <= 0:
            raise ValueError("deadline_ms must be positive")
        self.store = store
        self.engine_commands = engine_commands
        self.clock = clock
        self.deadline_ms = deadline_ms
        self.provider = provider
        self.hook = hook
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.reconcile_every_s = reconcile_every_s
        self._wake = asyncio.Event()

    def _step(self, name: str, key: int) -> None:
        if self.hook is not None:
            self.hook(name, key)

    def poke(self) -> None:
        """Run the next round now instead of after the interval."""
        self._wake.set()

    # -- closed lots ------------------------------------------------------------------------------
    async def drain_outbox(self) -> int:
        """Settle every closed lot in the outbox; returns how many items were processed."""
        processed: set[LotId] = set()
        while True:
            items = [
                item
                for item in await self.store.outbox_batch(self.batch_size)
                if item.lot_id not in processed
            ]
            for item in items:
                await self.settle_lot(item)
                processed.add(item.lot_id)
            # A short batch is the last; a batch of nothing new means the store is not moving (a
            # bug or a stuck item): leave it to the next round rather than spin.
            if not items or len(items) < self.batch_size:
                return len(processed)

    async def settle_lot(self, item: OutboxItem) -> None:
        if item.status is OutboxStatus.PENDING:
            await self.store.record_close(item, order_deadline(item.closed_at_ms, self.deadline_ms))
            self._step("close_recorded", item.lot_id)
        for deposit_id in await self.store.deposits_to_refund_at_close(item):
            refund = await self.store.open_refund(deposit_id, "lot_closed", self.clock.now_ms())
            self._step("refund_opened", deposit_id)
            if refund is not None and refund.pending:
                await self.execute_refund(refund)
        await self.store.finish_outbox(item.lot_id)
        self._step("outbox_done", item.lot_id)

    # -- refunds -----------------------------------------------------------------------------------
    async def execute_refund(self, refund: RefundTask) -> bool:
        """Move a pending refund's money: to the balance, or back through the provider."""
        if refund.via == "balance":
            await self.store.refund_to_balance(refund.refund_id, self.clock.now_ms())
        else:
            if self.provider is None:
                log.warning("refund %s waits: no payment provider is configured", refund.refund_id)
                return False
            trade_no = refund.out_trade_no or deposit_trade_no(refund.deposit_id)
            # Idempotent per refund_ref: repeating it after a crash refunds once.
            await self.provider.refund(trade_no, refund.amount, f"refund-{trade_no}")
            self._step("provider_refund_sent", refund.deposit_id)
            await self.store.mark_refunded(refund.refund_id, self.clock.now_ms())
        self._step("refund_executed", refund.deposit_id)
        return True

    async def execute_pending_refunds(self) -> int:
        done = 0
        for refund in await self.store.pending_refunds(self.batch_size):
            done += await self.execute_refund(refund)
        return done

    async def refund_provider_payment(self, receipt: ProviderReceipt) -> bool:
        """Give back a provider payment that paid nothing (late, stale attempt, wrong amount)."""
        if self.provider is None:
            log.error(
                "provider payment %s must be refunded but no provider is configured", receipt.out_trade_no
            )
            return False
        await self.provider.refund(receipt.out_trade_no, receipt.amount, f"refund-{receipt.out_trade_no}")
        self._step("provider_payment_refunded", receipt.order_id or 0)
        await self.store.mark_provider_refunded(receipt.out_trade_no, self.clock.now_ms())
        return True

    async def retry_provider_refunds(self) -> int:
        done = 0
        for receipt in await self.store.provider_refunds_due(self.batch_size):
            done += await self.refund_provider_payment(receipt)
        return done

    # -- sessions ---------------------------------------------------------------------------------
    async def settle_session_end(self, session_id: SessionId) -> bool:
        """Release the whole-session deposits of an ended session that are no longer needed;
        True once none is held any more."""
        release = await self.store.release_session(session_id, None, self.clock.now_ms())
        self._step("session_released", session_id)
        for refund in release.refunds:
            await self.execute_refund(refund)
        return release.settled

    async def settle_ended_sessions(self) -> int:
        settled = 0
        for session_id in await self.store.sessions_to_settle(self.batch_size):
            settled += await self.settle_session_end(session_id)
        return settled

    async def after_order_resolved(self, session_id: SessionId, user_id: UserId) -> None:
        """An order left `unpaid`: the owner's session deposit may be free and coupons useless."""
        release = await self.store.release_session(session_id, user_id, self.clock.now_ms())
        for refund in release.refunds:
            await self.execute_refund(refund)

    # -- overdue ------------------------------------------------------------------------------------
    async def sweep_overdue(self, now: Millis | None = None) -> int:
        """Mark every unpaid order past its deadline overdue; returns how many."""
        now = self.clock.now_ms() if now is None else now
        marked = 0
        seen: set[int] = set()
        while True:
            due = [
                order_id
                for order_id in await self.store.due_orders(now, self.batch_size)
                if order_id not in seen
            ]
            seen.update(due)
            for order_id in due:
                result = await self.store.mark_overdue(order_id, now)
                if result is None:
                    continue
                marked += 1
                self._step("order_overdue", order_id)
                await self._sync_engine(result)
                if result.refund is not None and result.refund.pending:
                    await self.execute_refund(result.refund)
                await self.after_order_resolved(result.session_id, result.user_id)
            if not due or len(due) < self.batch_size:
                break
        for result in await self.store.unsynced_overdue(self.batch_size):
            await self._sync_engine(result)
        return marked

    async def _sync_engine(self, result: OverdueResult) -> None:
        """Tell the engine: the lot is overdue, the bidder may not bid. Both are idempotent."""
        marked = await self.engine_commands(MarkOverdue(result.lot_id))
        blocked = await self.engine_commands(BlockBidder(result.user_id))
        for outcome in (marked, blocked):
            if not outcome.ok and outcome.code not in _SETTLED_ENGINE_CODES:
                # Not durable in the engine (stopping, say): `unsynced_overdue` brings it back.
                log.warning("engine refused overdue sync of order %s: %s", result.order_id, outcome.code)
                return
        await self.store.mark_engine_synced(result.order_id)
        self._step("engine_synced", result.order_id)

    async def clear_non_payer(self, user_id: UserId) -> bool:
        """Admin: let a flagged non-payer bid again. Unblocks in the engine even when the flag was
        already clear, which heals an unblock lost to a crash."""
        changed = await self.store.clear_non_payer(user_id)
        outcome = await self.engine_commands(UnblockBidder(user_id))
        if not outcome.ok:
            raise GavelError(
                outcome.message or "the engine is unavailable", code=outcome.code or "UNAVAILABLE"
            )
        return changed

    # -- reconciling ----------------------------------------------------------------------------------
    async def reconcile(self) -> int:
        """Refund deposits paid (through the provider) after their lot or session was settled."""
        handled = 0
        for stray in await self.store.stray_deposits(self.batch_size):
            if stray.session_wide:
                await self.after_order_resolved(stray.session_id, stray.user_id)
            else:
                refund = await self.store.open_refund(stray.deposit_id, "late_deposit", self.clock.now_ms())
                if refund is not None and refund.pending:
                    await self.execute_refund(refund)
            handled += 1
        return handled

    # -- the loop ----------------------------------------------------------------------------------------
    async def run_once(self, *, reconcile: bool = False) -> None:
        """One round of everything, each phase independent of the others' failures."""
        phases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("outbox", self.drain_outbox),
            ("sessions", self.settle_ended_sessions),
            ("overdue", self.sweep_overdue),
            ("refunds", self.execute_pending_refunds),
            ("provider refunds", self.retry_provider_refunds),
        ]
        if reconcile:
            phases.append(("reconcile", self.reconcile))
        failed: Exception | None = None
        for name, phase in phases:
            try:
                await phase()
            except Exception as error:
                log.exception("settlement phase %s failed; retried next round", name)
                failed = error
        if failed is not None:
            raise failed

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: a round every `interval_s` (sooner after `poke`), backing off on errors."""
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time()
        delay = self.interval_s
        while not stop.is_set():
            reconcile = loop.time() >= next_reconcile
            try:
                await self.run_once(reconcile=reconcile)
                delay = self.interval_s
                if reconcile:
                    next_reconcile = loop.time() + self.reconcile_every_s
            except Exception:
                delay = min(max(delay * 2, self.interval_s), 30.0)
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter


# -- paying orders (the request side) -----------------------------------------------------------------
class OrderPayments:
    """`POST /orders/{id}/pay` and the provider's notifications for `ord-` payments."""

    def __init__(
        self, store: SettlementStore, worker: SettlementWorker, provider: PaymentProvider | None = None
    ) -> None:
        self.store = store
        self.worker = worker
        self.provider = provider

    async def pay(self, request: PayRequest) -> PaymentResult:
        if request.pay_with == "provider" and self.provider is None:
            raise PaymentUnavailable("paying through the provider is not available; pay from the balance")
        result = await self.store.pay(request, self.worker.clock.now_ms())
        charge = result.charge
        if charge is not None and charge.pay_url is None:
            assert self.provider is not None  # a charge is only opened for pay_with "provider"
            url = await self.provider.create_payment(
                PaymentRequest(charge.out_trade_no, charge.amount, charge.subject, result.user_id)
            )
            await self.store.attach_pay_url(result.order_id, charge.out_trade_no, url)
            result = dataclasses.replace(result, charge=dataclasses.replace(charge, pay_url=url))
        if result.status is OrderStatus.AWAITING_DELIVERY:
            # Repeated for a replayed request too: finishing follow-ups a crash cut short is harmless.
            await self._follow_up(result)
        return result

    async def on_provider_paid(self, out_trade_no: str, amount: Fen) -> None:
        """PaymentRouter handler for `ord-`: apply the payment, or refund it, never keep it silently."""
        receipt = await self.store.receive_provider_payment(out_trade_no, amount, self.worker.clock.now_ms())
        if receipt.outcome == "applied":
            if receipt.payment is not None:
                await self._follow_up(receipt.payment)
        elif receipt.outcome == "refund_pending":
            log.warning("refunding provider payment %s (%d fen): %s", out_trade_no, amount, receipt.reason)
            await self.worker.refund_provider_payment(receipt)

    async def _follow_up(self, result: PaymentResult) -> None:
        if result.refund is not None and result.refund.pending:
            await self.worker.execute_refund(result.refund)
        await self.worker.after_order_resolved(result.session_id, result.user_id)


def register_payment_handlers(router: PaymentRouter, payments: OrderPayments) -> None:
    """Composition root: route verified `ord-…` notifications to the order payments."""
    router.register(ORDER_PAYMENT_PREFIX, payments.on_provider_paid)
