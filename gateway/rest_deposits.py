"""Deposits over REST: open one (paid from the balance or through the provider) and list one's own."""

from typing import Any

from gateway.http import MAX_SAFE_INT, JsonHandler
from persistence.deposits import PAY_WITH, Deposit, PayWith


class DepositsHandler(JsonHandler):
    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("session_id", "lot_id", "pay_with"))
        session_id = body.integer("session_id", minimum=1, maximum=MAX_SAFE_INT)
        lot_id = body.optional_integer("lot_id", minimum=1, maximum=MAX_SAFE_INT)
        pay_with: PayWith = "balance" if body.one_of("pay_with", PAY_WITH) == "balance" else "provider"
        deposit = await self.ctx.deposits.create(user.user_id, session_id, lot_id, pay_with)
        self.reply(self.deposit_json(deposit), 201)

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
