"""The settlement service: every handler of engine/settle/handlers.py, each run in its own unit of
work with `atomically` (retried on stale reads and transient conflicts).

It is the `SettlementStore` the worker and `OrderPayments` (engine/settle/worker.py) call, and the
typed object the REST and admin layers call for decisions (pay, check out, claim a coupon, ship,
complete, clear a non-payer). Storage comes in as a unit-of-work factory: MongoDB in production
(persistence/settlement/), memory in unit tests (tests/engine/settle/fakes.py).
"""

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.book.errors import NotFound
from engine.book.states import LotState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.settle import handlers
from engine.settle.handlers import AlreadyRecorded, CheckoutQuote, Refused
from engine.settle.model import Conflict, CouponAlreadyClaimed, CouponOffer, UserCoupon
from engine.settle.uow import STALE_RETRIES, Duplicate, UnitOfWork, UnitOfWorkFactory, atomically
from engine.settle.worker import (
    OutboxItem,
    OverdueResult,
    PaymentResult,
    PayRequest,
    ProviderReceipt,
    RefundTask,
    SessionRelease,
    StrayDeposit,
)

T = TypeVar("T")


class SettlementService:
    """Implements `engine.settle.worker.SettlementStore` over a unit of work."""

    def __init__(self, new_uow: UnitOfWorkFactory, *, stale_retries: int = STALE_RETRIES) -> None:
        self.new_uow = new_uow
        self.stale_retries = stale_retries

    async def _run(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await atomically(self.new_uow, work, stale_retries=self.stale_retries)

    async def _next_id(self, name: str) -> int:
        """An id allocated before the unit of work, so that its retries reuse it."""
        return await self._run(lambda uow: uow.ids.next(name))

    # -- closed lots (the outbox) ------------------------------------------------------------------
    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        return await self._run(lambda uow: uow.auction.outbox_batch(limit))

    async def record_close(self, item: OutboxItem, deadline_ms: Millis) -> None:
        sold = item.result is LotState.SOLD and item.winner_id is not None
        order_id = await self._next_id("orders") if sold else 0
        await self._run(lambda uow: handlers.record_close(uow, item, deadline_ms, order_id))

    async def deposits_to_refund_at_close(self, item: OutboxItem) -> list[int]:
        return await self._run(lambda uow: handlers.deposits_to_refund_at_close(uow, item))

    async def open_refund(self, deposit_id: int, reason: str, now_ms: Millis) -> RefundTask | None:
        try:
            return await self._run(lambda uow: handlers.open_refund(uow, deposit_id, reason, now_ms))
        except Duplicate:  # a concurrent unit of work opened it first
            return await self._run(lambda uow: handlers.existing_refund(uow, deposit_id))

    async def finish_outbox(self, lot_id: LotId) -> None:
        await self._run(lambda uow: uow.auction.mark_outbox_done(lot_id))

    # -- refunds ---------------------------------------------------------------------------------------
    async def pending_refunds(self, limit: int) -> list[RefundTask]:
        refunds = await self._run(lambda uow: uow.refunds.pending(limit))
        return [handlers.refund_task(refund) for refund in refunds]

    async def refund_to_balance(self, refund_id: int, now_ms: Millis) -> None:
        await self._run(lambda uow: handlers.refund_to_balance(uow, refund_id, now_ms))

    async def mark_refunded(self, refund_id: int, now_ms: Millis) -> None:
        await self._run(lambda uow: uow.refunds.mark_refunded(refund_id, now_ms, None))

    # -- sessions --------------------------------------------------------------------------------------
    async def sessions_to_settle(self, limit: int) -> list[SessionId]:
        return await self._run(lambda uow: uow.auction.sessions_to_settle(limit))

    async def release_session(
        self, session_id: SessionId, user_id: UserId | None, now_ms: Millis
    ) -> SessionRelease:
        not_yet = SessionRelease([], 0, False)
        if not await self._run(lambda uow: uow.auction.session_ended(session_id)):
            return not_yet
        # Orders come from the outbox: until every close of the session is recorded, "won nothing"
        # cannot be told apart from "not recorded yet".
        if await self._run(lambda uow: uow.auction.session_has_pending_closes(session_id)):
            return not_yet
        refunds: list[RefundTask] = []
        for deposit_id in await self._run(lambda uow: uow.deposits.paid_session_wide(session_id, user_id)):
            refund = await self._release_session_deposit(deposit_id, now_ms)
            if refund is not None:
                refunds.append(refund)
        expired = await self._run(lambda uow: handlers.expire_coupons(uow, session_id, user_id, now_ms))
        settled = not await self._run(lambda uow: uow.deposits.paid_session_wide(session_id, None))
        if settled:
            await self._run(lambda uow: uow.auction.mark_deposits_settled(session_id))
        return SessionRelease(refunds, expired, settled)

    async def _release_session_deposit(self, deposit_id: int, now_ms: Millis) -> RefundTask | None:
        try:
            return await self._run(lambda uow: handlers.release_session_deposit(uow, deposit_id, now_ms))
        except Duplicate:
            return await self._run(lambda uow: handlers.existing_refund(uow, deposit_id))

    async def stray_deposits(self, limit: int) -> list[StrayDeposit]:
        return await self._run(lambda uow: handlers.stray_deposits(uow, limit))

    # -- overdue ---------------------------------------------------------------------------------------
    async def due_orders(self, now_ms: Millis, limit: int) -> list[int]:
        return await self._run(lambda uow: uow.orders.due(now_ms, limit))

    async def mark_overdue(self, order_id: int, now_ms: Millis) -> OverdueResult | None:
        return await self._run(lambda uow: handlers.mark_overdue(uow, order_id, now_ms))

    async def unsynced_overdue(self, limit: int) -> list[OverdueResult]:
        orders = await self._run(lambda uow: uow.orders.unsynced_overdue(limit))
        return [
            OverdueResult(o.id, o.lot_id, o.user_id, o.session_id, o.forfeit, None, False) for o in orders
        ]

    async def mark_engine_synced(self, order_id: int) -> None:
        await self._run(lambda uow: uow.orders.mark_engine_synced(order_id))

    # -- paying ----------------------------------------------------------------------------------------
    async def pay(self, request: PayRequest, now_ms: Millis) -> PaymentResult:
        return await self._run(lambda uow: handlers.pay(uow, request, now_ms))

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None:
        await self._run(lambda uow: uow.orders.attach_pay_url(order_id, out_trade_no, pay_url))

    async def receive_provider_payment(
        self, out_trade_no: str, amount: Fen, now_ms: Millis
    ) -> ProviderReceipt:
        known = await self._run(lambda uow: uow.provider_payments.get(out_trade_no))
        if known is not None:
            return handlers.receipt(known)
        order_id = await self._run(lambda uow: handlers.order_of_trade_no(uow, out_trade_no))
        try:
            return await self._run(
                lambda uow: handlers.apply_provider_payment(uow, out_trade_no, order_id, amount, now_ms)
            )
        except Refused as refusal:
            reason = refusal.reason
            with contextlib.suppress(Duplicate):
                await self._run(
                    lambda uow: handlers.record_refused_payment(
                        uow, out_trade_no, order_id, amount, reason, now_ms
                    )
                )
        except (AlreadyRecorded, Duplicate, Conflict):
            pass
        known = await self._run(lambda uow: uow.provider_payments.get(out_trade_no))
        if known is None:
            raise Conflict("the payment notification could not be recorded; it will be retried")
        return handlers.receipt(known)

    async def provider_refunds_due(self, limit: int) -> list[ProviderReceipt]:
        return [
            handlers.receipt(p) for p in await self._run(lambda uow: uow.provider_payments.refunds_due(limit))
        ]

    async def mark_provider_refunded(self, out_trade_no: str, now_ms: Millis) -> None:
        await self._run(lambda uow: uow.provider_payments.mark_refunded(out_trade_no, now_ms))

    # -- non-payers ------------------------------------------------------------------------------------
    async def clear_non_payer(self, user_id: UserId) -> bool:
        async def clear(uow: UnitOfWork) -> bool:
            if await uow.auction.clear_non_payer(user_id):
                return True
            if not await uow.auction.user_exists(user_id):
                raise NotFound(f"no user {user_id}")
            return False

        return await self._run(clear)

    # -- the request side's decisions ------------------------------------------------------------------
    async def checkout_quote(self, order_id: int, user_id: UserId, coupon_id: int | None) -> CheckoutQuote:
        return await self._run(lambda uow: handlers.checkout_quote(uow, order_id, user_id, coupon_id))

    async def ship_order(self, order_id: int, tracking_no: str | None, now_ms: Millis) -> None:
        await self._run(lambda uow: handlers.ship(uow, order_id, tracking_no, now_ms))

    async def complete_order(self, order_id: int, now_ms: Millis) -> None:
        await self._run(lambda uow: handlers.complete(uow, order_id, now_ms))

    async def add_coupon_offer(
        self,
        session_id: SessionId,
        title: str,
        amount: Fen,
        quantity: int,
        claim_start_ms: Millis,
        claim_end_ms: Millis,
    ) -> CouponOffer:
        return await self._run(
            lambda uow: handlers.create_coupon(
                uow, session_id, title, amount, quantity, claim_start_ms, claim_end_ms
            )
        )

    async def claim_user_coupon(self, coupon_id: int, user_id: UserId, now_ms: Millis) -> UserCoupon:
        user_coupon_id = await self._next_id("user_coupons")
        try:
            return await self._run(
                lambda uow: handlers.claim_coupon(uow, coupon_id, user_id, now_ms, user_coupon_id)
            )
        except Duplicate:
            raise CouponAlreadyClaimed(f"you already have coupon {coupon_id}") from None
