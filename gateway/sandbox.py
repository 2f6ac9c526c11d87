"""A minimal sandbox payment provider for deposits (the signed provider comes in a later issue).

`GET /sandbox/pay/{payment_id}` shows the payment with Pay / Fail buttons; `POST` with
`outcome=paid|failed` (form-encoded or JSON) settles it. Settling is idempotent: repeating the same
outcome answers the same; the opposite outcome after a settled one is a 409.
"""

import urllib.parse

import tornado.escape

from engine.book.errors import NotFound
from gateway.errors import ValidationFailed
from gateway.http import JsonHandler
from persistence.deposits import Deposit

OUTCOMES = ("paid", "failed")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox payment</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 3rem auto">
<h1>Sandbox payment</h1>
<p>Deposit #{deposit_id} &mdash; <strong>{amount}</strong> (status: {status})</p>
<form method="post"><input type="hidden" name="outcome" value="paid"><button>Pay</button></form>
<form method="post"><input type="hidden" name="outcome" value="failed"><button>Fail</button></form>
<p><small>No money moves: this page stands in for the payment provider.</small></p>
</body></html>
"""


def yuan(fen: int) -> str:
    """Fen as a yuan string with integer arithmetic only, e.g. 12345 -> "¥123.45"."""
    return f"¥{fen // 100}.{fen % 100:02d}"


class SandboxPayHandler(JsonHandler):
    async def _deposit(self, payment_id: str) -> Deposit:
        try:
            return await self.ctx.deposits.by_payment_id(payment_id)
        except NotFound:
            raise NotFound("no such payment") from None

    async def get(self, payment_id: str) -> None:
        deposit = await self._deposit(payment_id)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; form-action 'self'")
        self.finish(
            _PAGE.format(
                deposit_id=deposit.id,
                amount=tornado.escape.xhtml_escape(yuan(deposit.amount)),
                status=tornado.escape.xhtml_escape(deposit.status),
            )
        )

    async def post(self, payment_id: str) -> None:
        outcome = self._outcome()
        deposit = await self._deposit(payment_id)
        if outcome == "paid":
            deposit = await self.ctx.deposits.mark_paid(deposit.id)
        else:
            deposit = await self.ctx.deposits.mark_failed(deposit.id)
        self.reply({"payment_id": payment_id, "deposit_id": deposit.id, "status": deposit.status})

    def _outcome(self) -> str:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            return self.fields(("outcome",)).one_of("outcome", OUTCOMES)
        try:
            form = urllib.parse.parse_qs(
                self.raw_body().decode("utf-8"), strict_parsing=True, max_num_fields=10
            )
        except (UnicodeDecodeError, ValueError):
            raise ValidationFailed("send outcome=paid or outcome=failed") from None
        values = form.get("outcome", [])
        if set(form) != {"outcome"} or len(values) != 1 or values[0] not in OUTCOMES:
            raise ValidationFailed("send outcome=paid or outcome=failed")
        return values[0]


ROUTES = [
    (r"/sandbox/pay/([A-Za-z0-9_-]{1,64})", SandboxPayHandler),
]
