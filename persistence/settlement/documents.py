"""Settlement's MongoDB documents <-> the domain records of engine/settle/model.py (formats only)."""

from typing import Any

from engine.book.states import LotState
from engine.settle.model import (
    CouponOffer,
    Deduction,
    Deposit,
    NewOrder,
    Order,
    OrderPayment,
    PayWith,
    PendingCharge,
    ProviderOutcome,
    ProviderPayment,
    Refund,
    UserCoupon,
)
from engine.settle.rules import OrderStatus, PaymentCase, PaymentSplit, RefundStatus, UserCouponStatus
from engine.settle.worker import OutboxItem, OutboxStatus
from persistence.mongo import Document, utc_now


def pay_with(value: Any) -> PayWith:
    return "provider" if value == "provider" else "balance"


def split_document(split: PaymentSplit) -> Document:
    return {
        "case": split.case.value,
        "coupon_used": split.coupon_used,
        "deposit_deducted": split.deposit_deducted,
        "deposit_refunded": split.deposit_refunded,
        "deposit_kept": split.deposit_kept,
        "to_pay": split.to_pay,
    }


def split_from(doc: Document) -> PaymentSplit:
    return PaymentSplit(
        case=PaymentCase(doc["case"]),
        coupon_used=int(doc["coupon_used"]),
        deposit_deducted=int(doc["deposit_deducted"]),
        deposit_refunded=int(doc["deposit_refunded"]),
        deposit_kept=int(doc["deposit_kept"]),
        to_pay=int(doc["to_pay"]),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# -- orders -------------------------------------------------------------------------------------------
def new_order_document(order: NewOrder) -> Document:
    return {
        "_id": order.id,
        "lot_id": order.lot_id,
        "session_id": order.session_id,
        "user_id": order.user_id,
        "price": order.price,
        "status": int(OrderStatus.UNPAID),
        "closed_at_ms": order.closed_at_ms,
        "deadline_ms": order.deadline_ms,
        "created_at": utc_now(),
        "attempts": 0,
        "pending_payment": None,
        "payment": None,
        "address": None,
        "paid_at_ms": None,
        "shipped_at_ms": None,
        "tracking_no": None,
        "completed_at_ms": None,
        "overdue_at_ms": None,
        "forfeit": None,
    }


def charge_document(charge: PendingCharge) -> Document:
    return {
        "out_trade_no": charge.out_trade_no,
        "amount": charge.amount,
        "subject": charge.subject,
        "idempotency_key": charge.idempotency_key,
        "coupon_id": charge.coupon_id,
        "address": charge.address,
        "deposit_id": charge.deposit_id,
        "split": split_document(charge.split),
        "pay_url": charge.pay_url,
        "created_at_ms": charge.created_at_ms,
    }


def charge_from(doc: Document) -> PendingCharge:
    return PendingCharge(
        out_trade_no=doc["out_trade_no"],
        amount=int(doc["amount"]),
        subject=doc["subject"],
        idempotency_key=doc["idempotency_key"],
        coupon_id=_optional_int(doc.get("coupon_id")),
        address=doc.get("address") or {},
        deposit_id=_optional_int(doc.get("deposit_id")),
        split=split_from(doc["split"]),
        pay_url=doc.get("pay_url"),
        created_at_ms=int(doc.get("created_at_ms") or 0),
    )


def payment_document(payment: OrderPayment) -> Document:
    return {
        **split_document(payment.split),
        "pay_with": payment.pay_with,
        "idempotency_key": payment.idempotency_key,
        "coupon_id": payment.coupon_id,
        "deposit_id": payment.deposit_id,
        "deposit_session_wide": payment.deposit_session_wide,
        "cash_source": payment.cash_source,
        "cash_amount": payment.cash_amount,
        "out_trade_no": payment.out_trade_no,
        "paid_amount": payment.split.paid_amount,
    }


def payment_from(doc: Document) -> OrderPayment:
    cash = doc.get("cash_source")
    return OrderPayment(
        split=split_from(doc),
        pay_with=pay_with(doc.get("pay_with")),
        idempotency_key=doc.get("idempotency_key", ""),
        coupon_id=_optional_int(doc.get("coupon_id")),
        deposit_id=_optional_int(doc.get("deposit_id")),
        deposit_session_wide=bool(doc.get("deposit_session_wide")),
        cash_source=None if cash is None else pay_with(cash),
        out_trade_no=doc.get("out_trade_no"),
    )


def order_from(doc: Document) -> Order:
    pending = doc.get("pending_payment")
    payment = doc.get("payment")
    return Order(
        id=int(doc["_id"]),
        lot_id=int(doc["lot_id"]),
        session_id=int(doc["session_id"]),
        user_id=int(doc["user_id"]),
        price=int(doc["price"]),
        status=OrderStatus(doc["status"]),
        deadline_ms=int(doc["deadline_ms"]),
        attempts=int(doc.get("attempts", 0)),
        pending=None if pending is None else charge_from(pending),
        payment=None if payment is None else payment_from(payment),
        shipped=doc.get("shipped_at_ms") is not None,
        forfeit=int(doc.get("forfeit") or 0),
    )


# -- deposits, refunds, deductions ------------------------------------------------------------------------
def deposit_from(doc: Document) -> Deposit:
    """Documents settlement has not touched yet have no `remaining`: they hold all of it."""
    remaining = doc.get("remaining")
    return Deposit(
        id=int(doc["_id"]),
        user_id=int(doc["user_id"]),
        session_id=int(doc["session_id"]),
        lot_id=_optional_int(doc.get("lot_id")),
        amount=int(doc["amount"]),
        remaining=int(doc["amount"] if remaining is None else remaining),
        rev=_optional_int(doc.get("rev")),
        pay_with=pay_with(doc.get("pay_with")),
        out_trade_no=deposit_trade_no(doc),
    )


def deposit_trade_no(doc: Document) -> str | None:
    """The deposit's `payment_id` when it is a trade number (engine/settle/deposits.py makes them
    `dep-…`); an older installation's `payment_id` was a token, not the number its provider saw."""
    payment_id = doc.get("payment_id")
    return payment_id if isinstance(payment_id, str) and payment_id.startswith("dep-") else None


def refund_document(refund: Refund) -> Document:
    return {
        "_id": refund.id,
        "deposit_id": refund.deposit_id,
        "user_id": refund.user_id,
        "session_id": refund.session_id,
        "lot_id": refund.lot_id,
        "amount": refund.amount,
        "via": refund.via,
        "out_trade_no": refund.out_trade_no,
        "status": str(RefundStatus.PENDING if refund.pending else RefundStatus.REFUNDED),
        "reason": refund.reason,
        "created_at_ms": refund.created_at_ms,
        "refunded_at_ms": None,
    }


def refund_from(doc: Document) -> Refund:
    return Refund(
        id=int(doc["_id"]),
        deposit_id=int(doc["deposit_id"]),
        user_id=int(doc["user_id"]),
        session_id=int(doc.get("session_id") or 0),
        lot_id=_optional_int(doc.get("lot_id")),
        amount=int(doc["amount"]),
        via=pay_with(doc.get("via")),
        reason=doc.get("reason", ""),
        created_at_ms=int(doc.get("created_at_ms") or 0),
        pending=doc["status"] == RefundStatus.PENDING,
        out_trade_no=doc.get("out_trade_no"),
    )


def deduction_document(deduction: Deduction) -> Document:
    return {
        "_id": deduction.id,
        "order_id": deduction.order_id,
        "deposit_id": deduction.deposit_id,
        "user_id": deduction.user_id,
        "session_id": deduction.session_id,
        "amount": deduction.amount,
        "type": str(deduction.type),
        "at_ms": deduction.at_ms,
    }


# -- coupons ----------------------------------------------------------------------------------------------
def offer_document(offer: CouponOffer) -> Document:
    return {
        "_id": offer.id,
        "session_id": offer.session_id,
        "title": offer.title,
        "amount": offer.amount,
        "quantity": offer.quantity,
        "claimed": offer.quantity - offer.left,
        "left": offer.left,
        "claim_start_ms": offer.claim_start_ms,
        "claim_end_ms": offer.claim_end_ms,
        "created_at": utc_now(),
    }


def offer_from(doc: Document) -> CouponOffer:
    return CouponOffer(
        id=int(doc["_id"]),
        session_id=int(doc["session_id"]),
        title=doc.get("title", ""),
        amount=int(doc["amount"]),
        quantity=int(doc["quantity"]),
        left=int(doc["left"]),
        claim_start_ms=int(doc["claim_start_ms"]),
        claim_end_ms=int(doc["claim_end_ms"]),
    )


def user_coupon_document(coupon: UserCoupon) -> Document:
    return {
        "_id": coupon.id,
        "coupon_id": coupon.coupon_id,
        "user_id": coupon.user_id,
        "session_id": coupon.session_id,
        "title": coupon.title,
        "amount": coupon.amount,
        "status": int(coupon.status),
        "order_id": None,
        "claimed_at_ms": coupon.claimed_at_ms,
    }


def user_coupon_from(doc: Document) -> UserCoupon:
    return UserCoupon(
        id=int(doc["_id"]),
        coupon_id=int(doc.get("coupon_id") or 0),
        user_id=int(doc["user_id"]),
        session_id=int(doc["session_id"]),
        title=doc.get("title", ""),
        amount=int(doc["amount"]),
        status=UserCouponStatus(doc["status"]),
        claimed_at_ms=int(doc.get("claimed_at_ms") or 0),
    )


# -- provider payments and the outbox ------------------------------------------------------------------------
def provider_payment_document(payment: ProviderPayment) -> Document:
    return {
        "_id": payment.out_trade_no,
        "order_id": payment.order_id,
        "amount": payment.amount,
        "outcome": payment.outcome,
        "reason": payment.reason,
        "received_at_ms": payment.received_at_ms,
    }


def provider_payment_from(doc: Document) -> ProviderPayment:
    outcome: ProviderOutcome = doc["outcome"]
    return ProviderPayment(
        out_trade_no=doc["_id"],
        order_id=_optional_int(doc.get("order_id")),
        amount=int(doc["amount"]),
        outcome=outcome,
        reason=doc.get("reason", ""),
        received_at_ms=int(doc.get("received_at_ms") or 0),
    )


def outbox_item_from(doc: Document) -> OutboxItem:
    return OutboxItem(
        lot_id=int(doc["_id"]),
        session_id=int(doc["session_id"]),
        result=LotState(int(doc["result"])),
        winner_id=_optional_int(doc.get("winner_id")),
        price=int(doc["price"]),
        bid_count=int(doc.get("bid_count", 0)),
        closed_at_ms=int(doc["closed_at_ms"]),
        status=OutboxStatus(doc["status"]),
    )
