"""Deposits over REST: open one (paid from the balance or through the provider) and list one's own."""

import logging
from typing import Any

from engine.settle.ports import PaymentRequest, PaymentRouter
from gateway.context import AppContext
from gateway.http import MAX_SAFE_INT, JsonHandler
from persistence.deposits import PAY_WITH, Deposit, PayWith

log = logging.getLogger("gavel.deposits")
DEPOSIT_PAYMENT_PREFIX = "dep"


def deposit_trade_no(deposit_id: int) -> str:
    return f"{DEPOSIT_PAYMENT_PREFIX}-{deposit_id}"


def register_deposit_payments(ctx: AppContext, router: PaymentRouter) -> None:
    """Verified `dep-{id}` payments mark the deposit paid (idempotent) and let the bidder bid."""

    async def paid(out_trade_no: str, amount: int) -> None:
        deposit_id = int(out_trade_no.split("-", 1)[1])
        deposit = await ctx.deposits.get(deposit_id)
        if amount != deposit.amount:
            # The provider's records already checked the amount; this is a second line of defence.
            log.error("deposit %s paid %s fen, %s due: not marked paid", deposit_id, amount, deposit.amount)
            return
        await ctx.deposits.mark_paid(deposit_id)

    router.register(DEPOSIT_PAYMENT_PREFIX, paid)


class DepositsHandler(JsonHandler):
    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("session_id", "lot_id", "pay_with"))
        session_id = body.integer("session_id", minimum=1, maximum=MAX_SAFE_INT)
        lot_id = body.optional_integer("lot_id", minimum=1, maximum=MAX_SAFE_INT)
        pay_with: PayWith = "balance" if body.one_of("pay_with", PAY_WITH) == "balance" else "provider"
        deposit = await self.ctx.deposits.create(user.user_id, session_id, lot_id, pay_with)
        answer = self.deposit_json(deposit)
        provider = self.ctx.options.get("payment_provider")
        if deposit.status == "pending" and provider is not None:
            # The real (signed) provider: paid only by its verified asynchronous notification.
            subject = f"Deposit for session {session_id}" + (f", lot {lot_id}" if lot_id else "")
            answer["pay_url"] = await provider.create_payment(
                PaymentRequest(deposit_trade_no(deposit.id), deposit.amount, subject)
            )
        self.reply(answer, 201)

    async def get(self) -> None:
        user = await self.require_user()
        page = self.page()
        deposits, total = await self.ctx.deposits.list_for_user(user.user_id, page.skip, page.page_size)
        self.reply(page.answer([self.deposit_json(d) for d in deposits], total))

    def deposit_json(self, deposit: Deposit) -> dict[str, Any]:
        answer = deposit.to_json()
        if deposit.status == "pending" and deposit.payment_id is not None:
            answer["pay_url"] = f"{self.public_origin()}/sandbox/pay/{deposit.payment_id}"
        return answer

    def public_origin(self) -> str:
        """The configured public origin; the request's own host only when none is configured (dev)."""
        return self.ctx.base_url.rstrip("/") or f"{self.request.protocol}://{self.request.host}"


ROUTES = [
    (r"/api/v1/deposits", DepositsHandler),
]
