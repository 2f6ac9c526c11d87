"""The verification path every provider shares, and the port to our payment records.

`SignedProvider.handle_notification` checks, in order:

1. the signature (RSA2, see payments/signing.py), with the provider's public key;
2. `app_id` is ours (and `seller_id`, when configured);
3. `out_trade_no` is a payment we created with this provider;
4. `total_amount` (yuan, "12.34") equals the stored amount in fen exactly (no float anywhere);
5. only `TRADE_SUCCESS` / `TRADE_FINISHED` mean paid; the payment goes `pending|closed -> paid` once
   (3-5 in one conditional write when they all hold, the common case; the checks one by one else),
   and the `PaymentRouter` handler for the prefix (`shop-`, `dep-`, `ord-`) runs until it succeeds,
   then the payment is marked handled (by the shop's handler itself, in its own transaction);
   a repeated notification for a handled payment answers `success` and does nothing.
   A prefix with a settling handler (`shop-`) tries it first: 3-5 and the handler's work in one
   transaction of its own (`PaidNotice`); when it does not apply, nothing was written and the path
   above runs.

MongoDB: `payments` (ours: `_id` = out_trade_no, user_id, amount, status pending|paid|closed,
handled, refunded), `payment_refunds` (`_id` = refund_ref), and for the sandbox's own
(provider-side) state `sandbox_trades`.
"""

import abc
import logging
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from engine.book.errors import GavelError
from engine.settle.ports import PaidNotice, PaymentRequest, PaymentRouter
from payments.signing import SIGN_TYPE, rsa2_verify, signing_string
from shop.pricing import PricingError, parse_yuan

log = logging.getLogger("gavel.payments")

PAID_STATES: Final = ("TRADE_SUCCESS", "TRADE_FINISHED")
CLOSED_STATE: Final = "TRADE_CLOSED"
WAITING_STATE: Final = "WAIT_BUYER_PAY"


class PaymentRefused(GavelError):
    """A notification that fails verification; answered `failure` with 400."""

    code = "PAYMENT_REFUSED"


class RefundRefused(GavelError):
    code = "ILLEGAL_STATE"


# -- the port to our payment records (payments/records.py stores them in MongoDB) -------------------
Record = dict[str, Any]  # one stored payment or refund, as the store answers it


class PaymentRecordStore(Protocol):
    """Our payment records: what we asked a provider to collect, and what it told us."""

    async def create(self, request: PaymentRequest, provider: str) -> Record: ...

    async def get(self, out_trade_no: str) -> Record | None: ...

    async def mark_paid_if(
        self, out_trade_no: str, provider: str, amount: int, trade_no: str, notify_id: str
    ) -> Record | None:
        """`mark_paid` only if it is `provider`'s payment of exactly `amount` still unpaid; else
        None. The record answered holds what the update's filter and changes guarantee (not
        handled yet: a payment is handled only once paid), without reading it back."""
        ...

    async def mark_paid(self, out_trade_no: str, trade_no: str, notify_id: str) -> Record: ...

    async def mark_closed(self, out_trade_no: str) -> None: ...

    async def mark_handled(self, out_trade_no: str) -> None: ...

    async def record_refund(
        self, out_trade_no: str, amount: int, refund_ref: str, status: str
    ) -> Record | None: ...

    async def get_refund(self, refund_ref: str) -> Record | None: ...

    async def set_refund_status(self, refund_ref: str, status: str) -> None: ...


class NotifyResult(NamedTuple):
    ok: bool
    status: int  # HTTP status of the answer
    detail: str


# -- the shared verification path ---------------------------------------------------------------------
class SignedProvider(abc.ABC):
    """What the sandbox and Alipay share: records and the verification of asynchronous notifications."""

    name: str = "signed"

    def __init__(
        self,
        *,
        app_id: str,
        notifier_public_key: rsa.RSAPublicKey,
        router: PaymentRouter,
        records: PaymentRecordStore,
        seller_id: str | None = None,
    ) -> None:
        self.app_id = app_id
        self.notifier_public_key = notifier_public_key
        self.router = router
        self.records = records
        self.seller_id = seller_id

    @abc.abstractmethod
    async def create_payment(self, request: PaymentRequest) -> str:
        """Register the payment; returns the URL the payer is sent to."""

    @abc.abstractmethod
    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        """Refund (part of) a paid payment; idempotent per `refund_ref`."""

    async def aclose(self) -> None:  # noqa: B027  (a no-op default, not an abstract method)
        """Stop background work (the sandbox's deliveries); nothing for a remote provider."""

    def to_provider_trade_no(self, out_trade_no: str) -> str:
        return out_trade_no

    def from_provider_trade_no(self, provider_trade_no: str) -> str:
        return provider_trade_no

    def verify(self, params: Mapping[str, str]) -> None:
        """Signature, app and seller; raises PaymentRefused."""
        signature = params.get("sign", "")
        if params.get("sign_type") != SIGN_TYPE or not signature:
            raise PaymentRefused("the notification is not signed with RSA2")
        if not rsa2_verify(signing_string(params), signature, self.notifier_public_key):
            raise PaymentRefused("the signature does not verify")
        if params.get("app_id") != self.app_id:
            raise PaymentRefused("the notification is for another app_id")
        if self.seller_id is not None and params.get("seller_id") != self.seller_id:
            raise PaymentRefused("the notification is for another seller")

    async def handle_notification(self, params: Mapping[str, str]) -> NotifyResult:
        """Verify and apply one asynchronous notification (see the module docstring)."""
        try:
            self.verify(params)
            out_trade_no = self.from_provider_trade_no(params.get("out_trade_no", ""))
            if await self._settle_at_once(out_trade_no, params):
                return NotifyResult(True, 200, "paid")
            paid_now = await self._pay_at_once(out_trade_no, params)
            if paid_now is not None:
                return await self._handle_paid(out_trade_no, paid_now, int(paid_now["amount"]))
            payment = await self.records.get(out_trade_no) if out_trade_no else None
            if payment is None or payment["provider"] != self.name:
                raise PaymentRefused("unknown out_trade_no")
            try:
                amount = parse_yuan(params.get("total_amount", ""))
            except PricingError:
                raise PaymentRefused("total_amount is not an amount") from None
            if amount != payment["amount"]:
                raise PaymentRefused(
                    f"total_amount {amount} fen differs from the {payment['amount']} fen asked"
                )
            trade_status = params.get("trade_status", "")
            if trade_status == CLOSED_STATE:
                await self.records.mark_closed(out_trade_no)
                payment = await self.records.get(out_trade_no)
                on_closed = self.router.closed_handler_for(out_trade_no)
                if on_closed is not None and payment is not None and payment["status"] == "closed":
                    await on_closed(out_trade_no)
                return NotifyResult(True, 200, "closed")
            if trade_status == WAITING_STATE:
                return NotifyResult(True, 200, "waiting")
            if trade_status not in PAID_STATES:
                raise PaymentRefused(f"unknown trade_status {trade_status[:40]!r}")
        except PaymentRefused as refused:
            log.warning("refused payment notification: %s", refused.message)
            return NotifyResult(False, 400, refused.message)
        payment = await self.records.mark_paid(
            out_trade_no, params.get("trade_no", ""), params.get("notify_id", "")
        )
        return await self._handle_paid(out_trade_no, payment, amount)

    async def _settle_at_once(self, out_trade_no: str, params: Mapping[str, str]) -> bool:
        """The common case of a prefix with a settling handler: our record's pending -> paid and
        handled, with the handler's writes, in one transaction. False (nothing written) when it does
        not apply or fails: the path below then checks and applies it as for any prefix."""
        settle = self.router.settling_handler_for(out_trade_no) if out_trade_no else None
        if settle is None or params.get("trade_status", "") not in PAID_STATES:
            return False
        try:
            amount = parse_yuan(params.get("total_amount", ""))
        except PricingError:
            return False
        notice = PaidNotice(
            out_trade_no, self.name, amount, params.get("trade_no", ""), params.get("notify_id", "")
        )
        try:
            return await settle(notice)
        except Exception:
            # Rolled back: the path below (a handler that runs until it succeeds) takes it over.
            log.exception("settling payment %s at once failed; checking it step by step", out_trade_no)
            return False

    async def _pay_at_once(self, out_trade_no: str, params: Mapping[str, str]) -> Record | None:
        """The common case in one write instead of a read and a write: a success for an unpaid
        payment of ours with this very amount. None for anything else, which the checks below
        then refuse or answer (already paid) exactly as before."""
        if not out_trade_no or params.get("trade_status", "") not in PAID_STATES:
            return None
        try:
            amount = parse_yuan(params.get("total_amount", ""))
        except PricingError:
            return None
        return await self.records.mark_paid_if(
            out_trade_no, self.name, amount, params.get("trade_no", ""), params.get("notify_id", "")
        )

    async def _handle_paid(self, out_trade_no: str, payment: Record, amount: int) -> NotifyResult:
        """Run the payment's handler once (until it succeeds); a handled payment answers success."""
        if payment.get("handled"):
            return NotifyResult(True, 200, "already handled")
        handler = self.router.handler_for(out_trade_no)
        if handler is None:
            log.error("no payment handler for %s; the provider will retry", out_trade_no)
            return NotifyResult(False, 503, "no handler")
        try:
            await handler(out_trade_no, amount)
        except Exception:
            # Handlers are idempotent: the provider's retry (or a duplicate) runs it again.
            log.exception("payment handler failed for %s", out_trade_no)
            return NotifyResult(False, 503, "handler failed")
        if not self.router.marks_handled(out_trade_no):
            await self.records.mark_handled(out_trade_no)
        return NotifyResult(True, 200, "paid")
