"""Deposits over REST: open one (paid from the balance or through the provider) and list one's own."""

import logging
from typing import Any

from engine.book.errors import NotFound
from engine.settle.deposits import DEPOSIT_PAYMENT_PREFIX, PAY_WITH, DepositRecord
from engine.settle.model import PayWith
from engine.settle.ports import PaymentRequest, PaymentRouter
from engine.settle.worker import PaymentUnavailable
from persistence.lot_results import refunds_of
from persistence.mongo import iso_utc
from web.context import AppContext
from web.http import MAX_SAFE_INT, JsonHandler

log = logging.getLogger("gavel.deposits")


def register_deposit_payments(ctx: AppContext, router: PaymentRouter) -> None:
    """Verified `dep-…` payments mark the deposit paid (idempotent) and let the bidder bid."""

    async def deposit_of(out_trade_no: str) -> DepositRecord:
        try:
            return await ctx.deposits.by_payment_id(out_trade_no)
        except NotFound:
            legacy = out_trade_no.split("-", 1)[1]  # `dep-{id}` from an older installation
            if not legacy.isdigit():
                raise
            return await ctx.deposits.get(int(legacy))

    async def paid(out_trade_no: str, amount: int) -> None:
        deposit = await deposit_of(out_trade_no)
        deposit_id = deposit.id
        if amount != deposit.amount:
            # The provider's records already checked the amount; this is a second line of defence.
            log.error("deposit %s paid %s fen, %s due: not marked paid", deposit_id, amount, deposit.amount)
            return
        await ctx.deposits.mark_paid(deposit_id)

    async def closed(out_trade_no: str) -> None:
        # The payer gave up (or the provider closed the trade): a new deposit may be opened.
        await ctx.deposits.mark_failed((await deposit_of(out_trade_no)).id)

    router.register(DEPOSIT_PAYMENT_PREFIX, paid)
    router.register_closed(DEPOSIT_PAYMENT_PREFIX, closed)


class DepositsHandler(JsonHandler):
    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("session_id", "lot_id", "pay_with"))
        session_id = body.integer("session_id", minimum=1, maximum=MAX_SAFE_INT)
        lot_id = body.optional_integer("lot_id", minimum=1, maximum=MAX_SAFE_INT)
        pay_with: PayWith = "balance" if body.one_of("pay_with", PAY_WITH) == "balance" else "provider"
        provider = self.ctx.payment_provider
        if pay_with == "provider" and provider is None:
            self.ctx.deposits.amount_due(user.user_id, session_id, lot_id)  # the same refusals first
            raise PaymentUnavailable("paying through the provider is not available; pay from the balance")
        deposit = await self.ctx.deposits.create(user.user_id, session_id, lot_id, pay_with)
        answer = self.deposit_json(deposit)
        if deposit.status == "pending" and provider is not None and deposit.payment_id is not None:
            # Paid only by the provider's verified asynchronous notification.
            subject = f"Deposit for session {session_id}" + (f", lot {lot_id}" if lot_id else "")
            answer["pay_url"] = await provider.create_payment(
                PaymentRequest(deposit.payment_id, deposit.amount, subject, user.user_id)
            )
            await self.ctx.deposits.attach_pay_url(deposit.id, answer["pay_url"])
        self.reply(answer, 201)

    async def get(self) -> None:
        user = await self.require_user()
        page = self.page()
        session_id = self.query_int("session_id", minimum=1, maximum=MAX_SAFE_INT, default=None)
        deposits, total = await self.ctx.deposits.list_for_user(
            user.user_id, page.skip, page.page_size, session_id
        )
        refunds = await refunds_of(self.ctx.db, [d.id for d in deposits])
        items = []
        for deposit in deposits:
            item = self.deposit_json(deposit)
            refund = refunds.get(deposit.id)
            if refund is not None:
                item["refund_status"] = refund["status"]
            items.append(item)
        self.reply(page.answer(items, total))

    def deposit_json(self, deposit: DepositRecord) -> dict[str, Any]:
        """A deposit as its owner sees it (only the owner is ever shown one)."""
        answer: dict[str, Any] = {
            "id": deposit.id,
            "session_id": deposit.session_id,
            "lot_id": deposit.lot_id,
            "amount": deposit.amount,
            "status": deposit.status,
            "pay_with": deposit.pay_with,
            "created_at": iso_utc(deposit.created_at),
            "paid_at": None if deposit.paid_at is None else iso_utc(deposit.paid_at),
            # The provider payment's number: what the payment return page and status poll name.
            "out_trade_no": deposit.payment_id,
        }
        if deposit.status == "pending" and deposit.pay_url is not None:
            answer["pay_url"] = deposit.pay_url
        return answer


ROUTES = [
    (r"/api/v1/deposits", DepositsHandler),
]
