"""The payment HTTP handlers: the provider's notify endpoint, the payer's return page, the status of
one payment (owner and admins only) and, with the sandbox only, the sandbox's pages.

The notify endpoint answers exactly `success`, or `failure` with 400 for a forged or wrong
notification (the provider may retry; nothing changes) and 503 when the handler failed (the
provider retries). The return page only shows a status: it never marks anything paid.
"""

import logging
import urllib.parse
from typing import Any, Final

import tornado.web

from engine.book.errors import NotFound
from payments.config import RETURN_PATH
from payments.provider import NotifyResult, SignedProvider
from payments.sandbox import (
    NOTIFY_PATH,
    PAGE_FILE,
    SANDBOX_API_PATTERN,
    SANDBOX_HEADER,
    SANDBOX_PAGE_PATTERN,
    SCRIPT_FILE,
    SandboxProvider,
)
from payments.trade_numbers import TRADE_NO_PATTERN
from shop.pricing import yuan_text
from web.context import AppContext, provider_of
from web.errors import Forbidden, ValidationFailed
from web.http import JsonHandler

log = logging.getLogger("gavel.payments")

MAX_NOTIFY_BYTES: Final = 16 * 1024
STATUS_PATTERN: Final = "/api/v1/payments/" + TRADE_NO_PATTERN


def payment_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    """The notify endpoint, the return page, the status and (sandbox only) the sandbox's pages.

    Needs `ctx.payment_provider`; add with `app.add_handlers(r".*", payment_routes(ctx))`.
    """
    provider = provider_of(ctx)
    args = {"ctx": ctx, "provider": provider}
    routes: list[tuple[str, type, dict[str, Any]]] = [
        (NOTIFY_PATH, NotifyHandler, {"provider": provider}),
        (RETURN_PATH, ReturnHandler, args),
        (STATUS_PATTERN, PaymentStatusHandler, args),
    ]
    if isinstance(provider, SandboxProvider):
        routes += sandbox_routes(ctx, provider)
    return routes


class NotifyHandler(tornado.web.RequestHandler):
    """`POST /api/v1/payments/notify` (form-encoded, from the provider): answers `success` or `failure`."""

    provider: SignedProvider

    def initialize(self, provider: SignedProvider) -> None:
        self.provider = provider

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """Providers post without cookies; the signature is the authentication."""

    def _answer(self, result: NotifyResult) -> None:
        self.set_status(result.status)
        self.finish(b"success" if result.ok else b"failure")

    async def post(self) -> None:
        params = self._params()
        if params is None:
            self._answer(NotifyResult(False, 400, "unreadable"))
            return
        try:
            result = await self.provider.handle_notification(params)
        except Exception:
            log.exception("payment notification could not be processed")
            result = NotifyResult(False, 503, "error")
        self._answer(result)

    def _params(self) -> dict[str, str] | None:
        body = self.request.body
        if len(body) > MAX_NOTIFY_BYTES:
            return None
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=100
            )
        except (UnicodeDecodeError, ValueError):
            return None
        params = dict(pairs)
        return params if len(params) == len(pairs) else None  # a repeated field is not ours

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(b"failure")


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above application/json (a browser navigating, as
    after the provider's page; `fetch` sends `*/*`, which ranks them equal: JSON)."""
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((name.lower(), q))

    def quality(media: str) -> float:
        # The most specific matching range decides (RFC 9110 §12.5.1): type/subtype, type/*, */*.
        for candidate in (media, media.split("/")[0] + "/*", "*/*"):
            matching = [q for name, q in ranges if name == candidate]
            if matching:
                return max(matching)
        return 0.0

    return quality("text/html") > quality("application/json")


class ReturnHandler(JsonHandler):
    """`GET /api/v1/payments/return?out_trade_no=…`: where the payer lands; shows a status only.

    A browser (Accept preferring text/html) is sent on to the app's page for the payment,
    `/#/payment/{out_trade_no}`, which waits for the provider's notification."""

    def initialize(self, ctx: AppContext, provider: SignedProvider) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.provider = provider

    async def get(self) -> None:
        raw = self.get_query_argument("out_trade_no", "")
        out_trade_no = self.provider.from_provider_trade_no(raw)
        payment = await self.provider.records.get(out_trade_no) if 0 < len(raw) <= 64 else None
        if payment is None:
            raise NotFound("no such payment")
        if prefers_html(self.request.headers.get("Accept", "")):
            # A browser back from the provider: the bidder app's page polls the status and says it.
            self.redirect("/#/payment/" + urllib.parse.quote(out_trade_no, safe=""))
            return
        # Status only: no amount or payer, and never a state change (only notifications pay).
        self.reply({"out_trade_no": out_trade_no, "status": payment["status"]})


class PaymentStatusHandler(JsonHandler):
    """`GET /api/v1/payments/{out_trade_no}`: the payment's status, for its owner and admins only;
    anyone else gets the same 404 as for a number that does not exist."""

    def initialize(self, ctx: AppContext, provider: SignedProvider) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.provider = provider

    async def get(self, out_trade_no: str) -> None:
        user = await self.require_user()
        payment = await self.provider.records.get(out_trade_no)
        owner = (
            payment is not None and payment.get("user_id") is not None and payment["user_id"] == user.user_id
        )
        if payment is None or not (owner or self.staff_may(user, "orders")):
            raise NotFound("no such payment")
        self.reply(
            {
                "out_trade_no": out_trade_no,
                "provider": payment["provider"],
                "amount": int(payment["amount"]),
                "status": payment["status"],
                "refunded": int(payment.get("refunded", 0)),
            }
        )


# -- HTTP ---------------------------------------------------------------------------------------------
class SandboxPageHandler(tornado.web.RequestHandler):
    """`GET /sandbox/pay/{out_trade_no}`: the same static page for every number (it reveals nothing);
    its script reads and settles the payment through the API below with the signed-in user's token."""

    def set_default_headers(self) -> None:
        self.set_header(SANDBOX_HEADER, "1")
        self.set_header("Cache-Control", "no-store")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'",
        )

    def get(self, out_trade_no: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE_FILE.read_bytes())


class SandboxScriptHandler(SandboxPageHandler):
    """`GET /sandbox/sandbox-pay.js`: the page's script (a file, so the CSP needs no inline script)."""

    def get(self) -> None:  # type: ignore[override]
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.finish(SCRIPT_FILE.read_bytes())


class SandboxPaymentHandler(JsonHandler):
    """`GET|POST /api/v1/sandbox/payments/{out_trade_no}`: the owner reads and settles
    (`{"outcome": "paid"|"failed"}`, JSON or form); an admin may read; everyone else learns nothing."""

    def initialize(self, ctx: AppContext, provider: SandboxProvider) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.provider = provider

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header(SANDBOX_HEADER, "1")  # on errors too: every sandbox answer says so

    async def _trade_for(self, out_trade_no: str, *, settle: bool) -> dict[str, Any]:
        user = await self.require_user()
        trade = await self.provider.find_trade(out_trade_no)
        owner = trade is not None and trade.get("user_id") in (user.user_id,)
        if trade is None or not (owner or self.staff_may(user, "orders")):
            raise NotFound("no such payment")  # the same answer whether it exists or not
        if settle and not owner:
            raise Forbidden("only the payer may settle a sandbox payment")
        return trade

    def _answer(self, trade: dict[str, Any]) -> dict[str, Any]:
        return {
            "sandbox": True,
            "out_trade_no": trade["_id"],
            "subject": trade["subject"],
            "amount": int(trade["amount"]),
            "amount_yuan": yuan_text(int(trade["amount"])),
            "status": trade["status"],  # WAIT_BUYER_PAY, TRADE_SUCCESS or TRADE_CLOSED, as Alipay says
        }

    async def get(self, out_trade_no: str) -> None:
        self.reply(self._answer(await self._trade_for(out_trade_no, settle=False)))

    async def post(self, out_trade_no: str) -> None:
        outcome = self._outcome()
        await self._trade_for(out_trade_no, settle=True)
        trade = await self.provider.settle(out_trade_no, outcome)
        self.reply(self._answer(trade))

    def _outcome(self) -> str:
        if self.request.headers.get("Content-Type", "").startswith("application/json"):
            return self.fields(("outcome",)).one_of("outcome", ("paid", "failed"))
        try:
            form = urllib.parse.parse_qs(
                self.raw_body().decode("utf-8"), strict_parsing=True, max_num_fields=10
            )
        except (UnicodeDecodeError, ValueError):
            raise ValidationFailed("send outcome=paid or outcome=failed") from None
        values = form.get("outcome", [])
        if set(form) != {"outcome"} or len(values) != 1 or values[0] not in ("paid", "failed"):
            raise ValidationFailed("send outcome=paid or outcome=failed")
        return values[0]


def sandbox_routes(ctx: AppContext, provider: SandboxProvider) -> list[tuple[str, type, dict[str, Any]]]:
    return [
        (SANDBOX_PAGE_PATTERN, SandboxPageHandler, {}),
        ("/sandbox/sandbox-pay.js", SandboxScriptHandler, {}),
        (SANDBOX_API_PATTERN, SandboxPaymentHandler, {"ctx": ctx, "provider": provider}),
    ]
