"""Ports of the money side: the external payment provider and the router of its notifications.

Implemented in payments/ (the sandbox provider, the Alipay adapter, the notify endpoint). Every
payment carries an `out_trade_no` whose prefix says what it pays: `dep-…` (an auction deposit),
`ord-…` (an auction order), `shop-…` (a course-shop order); the rest is 128 random bits
(payments/trade_numbers.py), so the owning document stores its number.
"""

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from engine.book.types import Fen


class PaymentRequest(NamedTuple):
    out_trade_no: str
    amount: Fen
    subject: str
    # Whose payment it is: only they (and admins) may read its status or pay it in the sandbox.
    user_id: int | None = None


class PaymentProvider(Protocol):
    name: str

    async def create_payment(self, request: PaymentRequest) -> str:
        """Register a payment with the provider; returns the URL the payer is sent to."""
        ...

    async def refund(self, out_trade_no: str, amount: Fen, refund_ref: str) -> None:
        """Refund (part of) a paid payment; idempotent per `refund_ref`."""
        ...


PaidHandler = Callable[[str, Fen], Awaitable[None]]
"""Called once a verified notification says `out_trade_no` was paid `amount` fen; must be idempotent."""


ClosedHandler = Callable[[str], Awaitable[None]]
"""Called when a verified notification says the unpaid `out_trade_no` was closed; must be idempotent."""


class PaidNotice(NamedTuple):
    """A verified notification that `out_trade_no` was paid `amount` fen (`trade_no`, `notify_id`:
    the provider's), for a handler that settles it in its own transaction."""

    out_trade_no: str
    provider: str
    amount: Fen
    trade_no: str
    notify_id: str


SettlingHandler = Callable[[PaidNotice], Awaitable[bool]]
"""Applies the common case of a paid notification in one transaction, our payment record's
`pending|closed -> paid` (and handled) with the handler's own writes; False, nothing written, when
it does not apply (then the provider's checks and the `PaidHandler` run as for any prefix)."""


class PaymentRouter:
    """Sends a verified 'paid' notification to the handler registered for its prefix."""

    def __init__(self) -> None:
        self._handlers: dict[str, PaidHandler] = {}
        self._closed: dict[str, ClosedHandler] = {}
        self._marks_handled: set[str] = set()
        self._settling: dict[str, SettlingHandler] = {}

    def register(self, prefix: str, handler: PaidHandler, *, marks_handled: bool = False) -> None:
        """`marks_handled`: the handler records the payment as handled itself, in the same
        transaction as its own writes (the shop's), so the provider does not write it again."""
        self._handlers[prefix] = handler
        if marks_handled:
            self._marks_handled.add(prefix)
        else:
            self._marks_handled.discard(prefix)

    def marks_handled(self, out_trade_no: str) -> bool:
        return out_trade_no.split("-", 1)[0] in self._marks_handled

    def register_settling(self, prefix: str, settle: SettlingHandler) -> None:
        """Tried first for a paid notification of `prefix` (beside, not instead of, `register`)."""
        self._settling[prefix] = settle

    def settling_handler_for(self, out_trade_no: str) -> SettlingHandler | None:
        return self._settling.get(out_trade_no.split("-", 1)[0])

    def register_closed(self, prefix: str, handler: ClosedHandler) -> None:
        self._closed[prefix] = handler

    def closed_handler_for(self, out_trade_no: str) -> ClosedHandler | None:
        return self._closed.get(out_trade_no.split("-", 1)[0])

    def handler_for(self, out_trade_no: str) -> PaidHandler | None:
        prefix = out_trade_no.split("-", 1)[0]
        return self._handlers.get(prefix)
