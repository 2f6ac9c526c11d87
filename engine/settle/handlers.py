"""Settlement's decisions, each a handler over one unit of work (engine/settle/uow.py).

A handler reads what it needs through the repositories, decides with the pure rules of
`engine.settle.rules`, and writes the outcome with guarded updates; a guarded update that finds
the data changed raises StaleRead and `atomically` runs the handler again from the start. So every
handler is safe to run twice: the second run finds the work done and changes nothing.

Money moves only here: deductions, refunds, balance debits and credits (each with a ledger entry
keyed by a unique ref: `deposit-refund:{deposit_id}`, `order-pay:{order_id}`).
"""

import dataclasses
import logging
from typing import Any

from engine.book.errors import IllegalTransition, NotFound
from engine.book.states import LotState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.settle import rules
from engine.settle.model import (
    MAX_COUPON_QUANTITY,
    NOT_USABLE,
    CouponNotClaimable,
    CouponOffer,
    CouponSoldOut,
    Deduction,
    Deposit,
    DepositStatus,
    InvalidSettlementInput,
    NewOrder,
    Order,
    OrderPayment,
    PayWith,
    PendingCharge,
    ProviderPayment,
    Refund,
    UserCoupon,
    address_snapshot,
)
from engine.settle.rules import DeductionType, OrderStatus, PaymentSplit, UserCouponStatus
from engine.settle.uow import StaleRead, UnitOfWork
from engine.settle.worker import (
    ORDER_PAYMENT_PREFIX,
    AddressRequired,
    CouponNotUsable,
    OrderNotPayable,
    OutboxItem,
    OverdueResult,
    PaymentResult,
    PayRequest,
    ProviderCharge,
    ProviderReceipt,
    RefundTask,
    StrayDeposit,
    parse_order_trade_no,
)

log = logging.getLogger("gavel.settlement")


class Refused(Exception):
    """A provider payment cannot be applied to its order; it is recorded for refunding instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AlreadyRecorded(Exception):
    """The provider notification was recorded by a concurrent call: answer from that record."""


def refund_task(refund: Refund) -> RefundTask:
    return RefundTask(
        refund.id,
        refund.deposit_id,
        refund.user_id,
        refund.amount,
        refund.via,
        refund.pending,
        refund.out_trade_no,
    )


# -- shared steps ---------------------------------------------------------------------------------------
async def applicable_deposit(
    uow: UnitOfWork, user_id: UserId, session_id: SessionId, lot_id: LotId
) -> Deposit | None:
    """The buyer's paid per-lot deposit for the lot, else their paid whole-session deposit."""
    deposit = await uow.deposits.paid_for_lot(user_id, lot_id)
    if deposit is None:
        deposit = await uow.deposits.paid_for_session(user_id, session_id)
    return deposit


async def _session_deposit_needed(uow: UnitOfWork, deposit: Deposit | None, order: Order) -> bool:
    if deposit is None or not deposit.session_wide:
        return False
    return rules.session_deposit_needed(
        session_ended=await uow.auction.session_ended(order.session_id),
        other_unpaid_orders=await uow.orders.count_unpaid(order.user_id, order.session_id, exclude=order.id),
    )


async def _set_deposit(uow: UnitOfWork, deposit: Deposit, remaining: Fen, *, refunded: bool) -> None:
    """Write what a deposit still holds, guarded by the `rev` read; always bumps `rev`, so a payment
    that decided from this deposit conflicts with any other unit of work that decided from it."""
    if refunded:
        assert remaining == 0, "a refund always takes all that a deposit still holds"
    status: DepositStatus = "refunded" if refunded else ("paid" if remaining > 0 else "consumed")
    if not await uow.deposits.set_remaining(deposit, remaining, status):
        raise StaleRead()


async def _new_refund(
    uow: UnitOfWork, deposit: Deposit, amount: Fen, reason: str, now_ms: Millis
) -> RefundTask:
    refund = Refund(
        id=await uow.ids.next("refunds"),
        deposit_id=deposit.id,
        user_id=deposit.user_id,
        session_id=deposit.session_id,
        lot_id=deposit.lot_id,
        amount=amount,
        via=deposit.pay_with,
        reason=reason,
        created_at_ms=now_ms,
        # A provider refund names the payment it gives back (the worker falls back to `dep-{id}`).
        out_trade_no=deposit.out_trade_no,
    )
    await uow.refunds.add(refund)
    return refund_task(refund)


async def _new_deduction(
    uow: UnitOfWork, order: Order, deposit: Deposit, amount: Fen, kind: DeductionType, now_ms: Millis
) -> None:
    await uow.deductions.add(
        Deduction(
            id=await uow.ids.next("deductions"),
            order_id=order.id,
            deposit_id=deposit.id,
            user_id=order.user_id,
            session_id=order.session_id,
            amount=amount,
            type=kind,
            at_ms=now_ms,
        )
    )


# -- closed lots ------------------------------------------------------------------------------------------
async def record_close(uow: UnitOfWork, item: OutboxItem, deadline_ms: Millis, order_id: int) -> None:
    """pending -> recorded: the winner's order (`order_id`, allocated by the caller outside the unit
    of work so a retry keeps it), the won bid record, the lot's deal price or unsold mark, the
    session's totals. No-op unless the outbox item is pending."""
    if not await uow.auction.outbox_pending(item.lot_id):
        return
    recorded: int | None = await uow.orders.id_for_lot(item.lot_id)
    if recorded is not None:
        pass  # The outbox row was re-inserted after being done (an archive replay): the work stands.
    elif item.result is LotState.SOLD and item.winner_id is not None:
        recorded = order_id
        await uow.orders.add(
            NewOrder(
                order_id,
                item.lot_id,
                item.session_id,
                item.winner_id,
                item.price,
                item.closed_at_ms,
                deadline_ms,
            )
        )
        if not await uow.auction.mark_bid_won(item.lot_id, item.winner_id, item.price):
            log.warning("no archived bid record for the winner of lot %s", item.lot_id)
        await uow.auction.lot_sold(item.lot_id, item.price, item.winner_id, order_id)
        await uow.auction.session_sold(item.session_id, item.price, item.bid_count)
    else:
        await uow.auction.lot_unsold(item.lot_id)
        await uow.auction.session_unsold(item.session_id, item.bid_count)
    await uow.auction.mark_outbox_recorded(item.lot_id, recorded)


async def deposits_to_refund_at_close(uow: UnitOfWork, item: OutboxItem) -> list[int]:
    """Paid per-lot deposits on the lot that are refunded at close (everyone's but the winner's)."""
    winner = item.winner_id if item.result is LotState.SOLD else None
    return [
        deposit.id
        for deposit in await uow.deposits.paid_on_lot(item.lot_id)
        if rules.refund_at_close(deposit_owner=deposit.user_id, winner=winner)
    ]


async def open_refund(uow: UnitOfWork, deposit_id: int, reason: str, now_ms: Millis) -> RefundTask | None:
    """Record the refund of all that remains of a deposit; the existing one if there is one, None if
    nothing remains."""
    existing = await uow.refunds.for_deposit(deposit_id)
    if existing is not None:
        return refund_task(existing)
    deposit = await uow.deposits.get_paid(deposit_id)
    if deposit is None:
        return None
    if deposit.remaining == 0:
        await _set_deposit(uow, deposit, 0, refunded=False)
        return None
    refund = await _new_refund(uow, deposit, deposit.remaining, reason, now_ms)
    await _set_deposit(uow, deposit, 0, refunded=True)
    return refund


async def existing_refund(uow: UnitOfWork, deposit_id: int) -> RefundTask | None:
    refund = await uow.refunds.for_deposit(deposit_id)
    return None if refund is None else refund_task(refund)


# -- refunds ----------------------------------------------------------------------------------------------
async def refund_to_balance(uow: UnitOfWork, refund_id: int, now_ms: Millis) -> None:
    """pending -> refunded with the balance credit (and its ledger entry) in the same unit of work."""
    refund = await uow.refunds.get(refund_id)
    if refund is None or not refund.pending or refund.via != "balance":
        return
    ref = f"deposit-refund:{refund.deposit_id}"
    await uow.ledger.credit(refund.user_id, refund.amount, "deposit_refund", ref)
    if not await uow.refunds.mark_refunded(refund_id, now_ms, ref):
        raise StaleRead()


# -- sessions ---------------------------------------------------------------------------------------------
async def release_session_deposit(uow: UnitOfWork, deposit_id: int, now_ms: Millis) -> RefundTask | None:
    """Refund what a whole-session deposit still holds once its (ended) session no longer needs it."""
    deposit = await uow.deposits.get_paid(deposit_id)
    if deposit is None:
        return None
    unpaid = await uow.orders.count_unpaid(deposit.user_id, deposit.session_id)
    amount = rules.session_deposit_release(deposit.remaining, session_ended=True, unpaid_orders=unpaid)
    if deposit.remaining == 0:
        await _set_deposit(uow, deposit, 0, refunded=False)
        return None
    if amount == 0:
        return None
    refund = await _new_refund(uow, deposit, amount, "session_released", now_ms)
    await _set_deposit(uow, deposit, deposit.remaining - amount, refunded=True)
    return refund


async def expire_coupons(
    uow: UnitOfWork, session_id: SessionId, user_id: UserId | None, now_ms: Millis
) -> int:
    """Unused coupons of a session can only pay orders of that session: once it has ended and their
    owner has no unpaid order in it, they never can."""
    still_paying = await uow.orders.users_with_unpaid(session_id)
    if user_id is not None and user_id in still_paying:
        return 0
    return await uow.coupons.expire_unused(session_id, user_id, still_paying, now_ms)


async def stray_deposits(uow: UnitOfWork, limit: int) -> list[StrayDeposit]:
    """Paid deposits whose target was settled before they were paid (late provider payments)."""
    strays: list[StrayDeposit] = []
    lot_deposits = await uow.deposits.paid_lot_deposits(limit * 10)
    closes = await uow.auction.done_closes(sorted({d.lot_id for d in lot_deposits if d.lot_id is not None}))
    for deposit in lot_deposits:
        assert deposit.lot_id is not None
        closed = closes.get(deposit.lot_id)
        if closed is None:
            continue
        winner = closed.winner_id if closed.result is LotState.SOLD else None
        if rules.refund_at_close(deposit_owner=deposit.user_id, winner=winner):
            strays.append(StrayDeposit(deposit.id, deposit.user_id, deposit.session_id, False))
    settled = await uow.auction.settled_sessions()
    if settled:
        for deposit in await uow.deposits.paid_session_wide_in(settled, limit):
            strays.append(StrayDeposit(deposit.id, deposit.user_id, deposit.session_id, True))
    return strays[:limit]


# -- overdue ----------------------------------------------------------------------------------------------
async def mark_overdue(uow: UnitOfWork, order_id: int, now_ms: Millis) -> OverdueResult | None:
    """unpaid -> overdue: forfeit the applicable deposit (never more than the price), refund or keep
    its rest, mark the lot and bid record overdue, flag the buyer a non-payer."""
    order = await uow.orders.get(order_id)
    if order is None or order.status is not OrderStatus.UNPAID or not rules.is_due(order.deadline_ms, now_ms):
        return None
    deposit = await applicable_deposit(uow, order.user_id, order.session_id, order.lot_id)
    forfeited, refund, session_wide = 0, None, False
    if deposit is not None:
        session_wide = deposit.session_wide
        split = rules.forfeit(
            order.price,
            deposit.remaining,
            deposit_is_session_wide=session_wide,
            session_deposit_needed=await _session_deposit_needed(uow, deposit, order),
        )
        forfeited = split.deducted
        if split.deducted:
            await _new_deduction(uow, order, deposit, split.deducted, DeductionType.OVERDUE, now_ms)
        if split.refunded:
            refund = await _new_refund(uow, deposit, split.refunded, "forfeit_rest", now_ms)
        await _set_deposit(uow, deposit, split.kept, refunded=split.refunded > 0)
    rules.check_order_transition(OrderStatus.UNPAID, OrderStatus.OVERDUE)
    if not await uow.orders.mark_overdue(
        order_id, forfeited, None if deposit is None else deposit.id, now_ms
    ):
        raise StaleRead()
    await uow.auction.mark_bids_overdue(order.lot_id, order.user_id)
    await uow.auction.lot_overdue(order.lot_id)
    await uow.auction.flag_non_payer(order.user_id, order_id)
    return OverdueResult(
        order_id, order.lot_id, order.user_id, order.session_id, forfeited, refund, session_wide
    )


# -- paying -----------------------------------------------------------------------------------------------
async def _usable_coupon(uow: UnitOfWork, order: Order, coupon_id: int | None) -> UserCoupon | None:
    if coupon_id is None:
        return None
    coupon = await uow.coupons.unused(coupon_id, order.user_id, order.session_id)
    if coupon is None:
        raise CouponNotUsable(NOT_USABLE)
    return coupon


async def quote(
    uow: UnitOfWork, order: Order, coupon: UserCoupon | None
) -> tuple[PaymentSplit, Deposit | None]:
    """How paying `order` with `coupon` would split, and the deposit that applies."""
    deposit = await applicable_deposit(uow, order.user_id, order.session_id, order.lot_id)
    split = rules.split_payment(
        order.price,
        0 if coupon is None else coupon.amount,
        0 if deposit is None else deposit.remaining,
        deposit_is_session_wide=deposit is not None and deposit.session_wide,
        session_deposit_needed=await _session_deposit_needed(uow, deposit, order),
    )
    return split, deposit


@dataclasses.dataclass(frozen=True, slots=True)
class CheckoutQuote:
    order: Order
    coupons: list[UserCoupon]  # usable, largest first
    deposit: Deposit | None
    split: PaymentSplit


async def checkout_quote(
    uow: UnitOfWork, order_id: int, user_id: UserId, coupon_id: int | None
) -> CheckoutQuote:
    """What the pay page shows: the usable coupons, the deposit that applies and a quote."""
    order = await uow.orders.get_for_user(order_id, user_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    coupons = await uow.coupons.unused_of(user_id, order.session_id)
    chosen = None
    if coupon_id is not None:
        chosen = next((c for c in coupons if c.id == coupon_id), None)
        if chosen is None:
            raise CouponNotUsable(NOT_USABLE)
    split, deposit = await quote(uow, order, chosen)
    return CheckoutQuote(order, coupons, deposit, split)


def _paid_result(order: Order, *, replayed: bool) -> PaymentResult:
    assert order.payment is not None
    return PaymentResult(
        order.id,
        order.user_id,
        order.session_id,
        order.status,
        order.payment.split,
        order.payment.pay_with,
        None,
        None,
        replayed,
    )


def _pending_result(order: Order, charge: PendingCharge, *, replayed: bool) -> PaymentResult:
    return PaymentResult(
        order.id,
        order.user_id,
        order.session_id,
        OrderStatus.UNPAID,
        charge.split,
        "provider",
        None,
        ProviderCharge(charge.out_trade_no, charge.amount, charge.subject, charge.pay_url),
        replayed,
    )


async def pay(uow: UnitOfWork, request: PayRequest, now_ms: Millis) -> PaymentResult:
    """Pay an order from its coupon, deposit and balance at once, or open a provider charge for the
    cash part (nothing moves until its notification). The same idempotency key answers the same."""
    order = await uow.orders.get_for_user(request.order_id, request.user_id)
    if order is None:
        raise NotFound(f"no order {request.order_id}")
    if order.status is not OrderStatus.UNPAID:
        if order.payment is not None and order.payment.idempotency_key == request.idempotency_key:
            return _paid_result(order, replayed=True)
        raise OrderNotPayable(f"order {request.order_id} is {order.status.key}")
    if order.pending is not None and order.pending.idempotency_key == request.idempotency_key:
        return _pending_result(order, order.pending, replayed=True)
    if rules.is_due(order.deadline_ms, now_ms):
        raise OrderNotPayable(f"the payment deadline of order {request.order_id} has passed")
    address = await uow.auction.address(request.address_id, request.user_id)
    if address is None:
        raise AddressRequired("choose one of your delivery addresses")
    coupon = await _usable_coupon(uow, order, request.coupon_id)
    split, deposit = await quote(uow, order, coupon)
    if request.pay_with == "provider" and split.to_pay > 0:
        return await _open_charge(
            uow, order, request, split, coupon, address_snapshot(address), deposit, now_ms
        )
    refund = await _apply_payment(
        uow,
        order,
        split,
        coupon,
        deposit,
        address_snapshot(address),
        request.pay_with,
        request.idempotency_key,
        cash_source="balance",
        out_trade_no=None,
        now_ms=now_ms,
    )
    return PaymentResult(
        order.id,
        order.user_id,
        order.session_id,
        OrderStatus.AWAITING_DELIVERY,
        split,
        request.pay_with,
        refund,
        None,
        replayed=False,
    )


async def _open_charge(
    uow: UnitOfWork,
    order: Order,
    request: PayRequest,
    split: PaymentSplit,
    coupon: UserCoupon | None,
    address: dict[str, Any],
    deposit: Deposit | None,
    now_ms: Millis,
) -> PaymentResult:
    """Remember what the provider payment is for. A new idempotency key opens a new attempt with a
    new random out_trade_no (kept on the order with every earlier one): a late notification of an
    earlier attempt then finds its order and is refunded, not applied twice."""
    title = await uow.auction.lot_title(order.lot_id)
    charge = PendingCharge(
        out_trade_no=uow.ids.trade_no(ORDER_PAYMENT_PREFIX),
        amount=split.to_pay,
        subject=f"Gavel order {order.id}" + (f": {title}"[:80] if title else ""),
        idempotency_key=request.idempotency_key,
        coupon_id=None if coupon is None else coupon.id,
        address=address,
        deposit_id=None if deposit is None else deposit.id,
        split=split,
        pay_url=None,
        created_at_ms=now_ms,
    )
    if not await uow.orders.open_charge(order.id, order.attempts, charge):
        raise StaleRead()
    return _pending_result(order, charge, replayed=False)


async def _apply_payment(
    uow: UnitOfWork,
    order: Order,
    split: PaymentSplit,
    coupon: UserCoupon | None,
    deposit: Deposit | None,
    address: dict[str, Any],
    pay_with: PayWith,
    idempotency_key: str,
    *,
    cash_source: PayWith,
    out_trade_no: str | None,
    now_ms: Millis,
) -> RefundTask | None:
    """Carry out a payment split: deduction, deposit rest, balance debit, coupon, order paid."""
    refund = None
    if deposit is not None:
        if split.deposit_deducted:
            await _new_deduction(uow, order, deposit, split.deposit_deducted, DeductionType.PAYMENT, now_ms)
        if split.deposit_refunded:
            refund = await _new_refund(uow, deposit, split.deposit_refunded, "payment_rest", now_ms)
        await _set_deposit(uow, deposit, split.deposit_kept, refunded=split.deposit_refunded > 0)
    if split.to_pay and cash_source == "balance":
        await uow.ledger.debit(order.user_id, split.to_pay, "order_payment", f"order-pay:{order.id}")
    if coupon is not None and not await uow.coupons.mark_used(coupon.id, order.id, now_ms):
        raise StaleRead()
    payment = OrderPayment(
        split=split,
        pay_with=pay_with,
        idempotency_key=idempotency_key,
        coupon_id=None if coupon is None else coupon.id,
        deposit_id=None if deposit is None else deposit.id,
        deposit_session_wide=deposit is not None and deposit.session_wide,
        cash_source=cash_source if split.to_pay else None,
        out_trade_no=out_trade_no,
    )
    rules.check_order_transition(OrderStatus.UNPAID, OrderStatus.AWAITING_DELIVERY)
    if not await uow.orders.mark_paid(order.id, payment, address, now_ms):
        raise StaleRead()
    return refund


async def order_of_trade_no(uow: UnitOfWork, out_trade_no: str) -> int | None:
    """The order a provider payment is for: the one that stored the (random) number with one of its
    attempts; an older installation's `ord-{order}-{attempt}` names its order itself."""
    legacy = parse_order_trade_no(out_trade_no)
    if legacy is not None:
        return legacy[0]
    return await uow.orders.id_for_trade_no(out_trade_no)


async def apply_provider_payment(
    uow: UnitOfWork, out_trade_no: str, order_id: int | None, amount: Fen, now_ms: Millis
) -> ProviderReceipt:
    """Apply a verified provider payment to the order its pending charge was opened for; Refused
    (the caller records it for refunding) when late, stale, of the wrong amount, or when the coupon
    or deposit changed meanwhile. AlreadyRecorded if the trade number was applied before."""
    if await uow.provider_payments.get(out_trade_no) is not None:
        raise AlreadyRecorded()
    order = None if order_id is None else await uow.orders.get(order_id)
    if order is None:
        raise Refused("no such order")
    if order.status is not OrderStatus.UNPAID:
        raise Refused(f"the order is {order.status.key}")
    pending = order.pending
    if pending is None or pending.out_trade_no != out_trade_no:
        raise Refused("a stale payment attempt")
    if pending.amount != amount:
        raise Refused(f"paid {amount} fen where {pending.amount} fen was asked")
    try:
        coupon = await _usable_coupon(uow, order, pending.coupon_id)
    except CouponNotUsable:
        raise Refused("the coupon was used elsewhere meanwhile") from None
    split, deposit = await quote(uow, order, coupon)
    if split.to_pay != amount:
        raise Refused("the deposit changed since the payment was started")
    refund = await _apply_payment(
        uow,
        order,
        split,
        coupon,
        deposit,
        pending.address,
        "provider",
        pending.idempotency_key,
        cash_source="provider",
        out_trade_no=out_trade_no,
        now_ms=now_ms,
    )
    record = ProviderPayment(out_trade_no, order.id, amount, "applied", "", now_ms)
    await uow.provider_payments.add(record)
    payment = PaymentResult(
        order.id,
        order.user_id,
        order.session_id,
        OrderStatus.AWAITING_DELIVERY,
        split,
        "provider",
        refund,
        None,
        replayed=False,
    )
    return receipt(record, payment)


async def record_refused_payment(
    uow: UnitOfWork, out_trade_no: str, order_id: int | None, amount: Fen, reason: str, now_ms: Millis
) -> None:
    """A provider payment that paid nothing: keep it as owed back (refunded by the worker)."""
    await uow.provider_payments.add(
        ProviderPayment(out_trade_no, order_id, amount, "refund_pending", reason, now_ms)
    )


def receipt(record: ProviderPayment, payment: PaymentResult | None = None) -> ProviderReceipt:
    return ProviderReceipt(
        record.out_trade_no, record.order_id, record.amount, record.outcome, record.reason, payment
    )


# -- shipping --------------------------------------------------------------------------------------------
async def ship(uow: UnitOfWork, order_id: int, tracking_no: str | None, now_ms: Millis) -> None:
    """Mark a paid order shipped; shipping it again changes nothing (idempotent)."""
    if await uow.orders.mark_shipped(order_id, tracking_no, now_ms):
        return
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    if order.status is not OrderStatus.AWAITING_DELIVERY:
        raise IllegalTransition(f"order {order_id} is {order.status.key}; it cannot be shipped")


async def complete(uow: UnitOfWork, order_id: int, now_ms: Millis) -> None:
    """A shipped order is completed; completing it again changes nothing."""
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    if order.status is OrderStatus.COMPLETED:
        return
    if order.status is OrderStatus.AWAITING_DELIVERY and not order.shipped:
        raise IllegalTransition(f"order {order_id} has not been shipped yet")
    rules.check_order_transition(order.status, OrderStatus.COMPLETED)
    if not await uow.orders.mark_completed(order_id, now_ms):
        raise StaleRead()


# -- coupons ---------------------------------------------------------------------------------------------
async def create_coupon(
    uow: UnitOfWork,
    session_id: SessionId,
    title: str,
    amount: Fen,
    quantity: int,
    claim_start_ms: Millis,
    claim_end_ms: Millis,
) -> CouponOffer:
    if not 1 <= quantity <= MAX_COUPON_QUANTITY or amount < 1 or claim_start_ms >= claim_end_ms:
        raise InvalidSettlementInput(
            f"a coupon needs amount >= 1, quantity 1-{MAX_COUPON_QUANTITY} and claim_start < claim_end"
        )
    if not await uow.auction.session_exists(session_id):
        raise NotFound(f"no session {session_id}")
    offer = CouponOffer(
        await uow.ids.next("coupons"),
        session_id,
        title,
        amount,
        quantity,
        quantity,
        claim_start_ms,
        claim_end_ms,
    )
    await uow.coupons.add_offer(offer)
    return offer


async def claim_coupon(
    uow: UnitOfWork, coupon_id: int, user_id: UserId, now_ms: Millis, user_coupon_id: int
) -> UserCoupon:
    """One coupon per user (Duplicate from the repository), never more than the quantity: the
    decrement and the user's coupon are written in one unit of work."""
    offer = await uow.coupons.offer(coupon_id)
    if offer is None:
        raise NotFound(f"no coupon {coupon_id}")
    state = rules.coupon_state(now_ms, offer.claim_start_ms, offer.claim_end_ms)
    if state is not rules.CouponState.CLAIMING:
        raise CouponNotClaimable(f"coupon {coupon_id} is {state.name.lower()}")
    if offer.left <= 0 or not await uow.coupons.take_one(coupon_id):
        raise CouponSoldOut(f"coupon {coupon_id} has been claimed {offer.quantity} times")
    # A coupon pays only orders of its session: once the session is over, only a winner with an
    # unpaid order there could still use one.
    if await uow.auction.session_ended(offer.session_id) and not await uow.orders.count_unpaid(
        user_id, offer.session_id
    ):
        raise CouponNotClaimable(f"coupon {coupon_id}'s session has ended and you have nothing to pay there")
    coupon = UserCoupon(
        user_coupon_id,
        coupon_id,
        user_id,
        offer.session_id,
        offer.title,
        offer.amount,
        UserCouponStatus.UNUSED,
        now_ms,
    )
    await uow.coupons.add_user_coupon(coupon)
    return coupon
