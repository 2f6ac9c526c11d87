"""The Alipay provider (RSA2): alipay.trade.page.pay redirects and alipay.trade.refund, signed with
the app's private key; notifications verified with Alipay's public key (payments/provider.py).

Configured from key files (payments/config.py): ALIPAY_APP_ID, ALIPAY_PRIVATE_KEY_FILE,
ALIPAY_PUBLIC_KEY_FILE, ALIPAY_GATEWAY_URL, ALIPAY_NOTIFY_URL, ALIPAY_RETURN_URL, ALIPAY_SELLER_ID.
"""

import datetime
import logging
import urllib.parse
from typing import Any, Final

import orjson
import tornado.httpclient

from engine.settle.ports import PaymentRequest, PaymentRouter
from payments.provider import RefundRefused, SignedProvider
from payments.records import PaymentRecords
from payments.signing import SIGN_TYPE, load_private_key, load_public_key, rsa2_verify, sign_params
from persistence.mongo import Database, Document, TxSession
from shop.pricing import yuan_text

log = logging.getLogger("gavel.payments")

DEFAULT_GATEWAY_URL: Final = "https://openapi.alipay.com/gateway.do"
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")  # no DST in China


class AlipayAdapter(SignedProvider):
    """alipay.trade.page.pay redirects and alipay.trade.refund, signed with the app's private key;
    notifications verified with Alipay's public key through the shared path.

    Alipay allows only letters, digits and `_` in out_trade_no, so `shop-123` travels as `shop_123`
    and `ord-5-1` as `ord_5_1`; `_` maps back to `-` (so our own numbers never contain `_`).
    """

    name = "alipay"

    def __init__(
        self,
        app_id: str,
        app_private_key: str | bytes,
        alipay_public_key: str | bytes,
        gateway_url: str = DEFAULT_GATEWAY_URL,
        *,
        db: Database,
        router: PaymentRouter,
        notify_url: str,
        return_url: str,
        http_client: tornado.httpclient.AsyncHTTPClient | None = None,
        seller_id: str | None = None,
        timeout_express: str = "30m",
    ) -> None:
        records = PaymentRecords(db)
        super().__init__(
            app_id=app_id,
            notifier_public_key=load_public_key(alipay_public_key),
            router=router,
            records=records,
            seller_id=seller_id,
        )
        self.payment_records = records  # `records`, with its transactional create
        self.gateway_url = gateway_url
        self.notify_url = notify_url
        self.return_url = return_url
        self.http_client = http_client
        self.timeout_express = timeout_express
        self._private_key = load_private_key(app_private_key)

    def to_provider_trade_no(self, out_trade_no: str) -> str:
        return out_trade_no.replace("-", "_")

    def from_provider_trade_no(self, provider_trade_no: str) -> str:
        return provider_trade_no.replace("_", "-")

    def _request_params(self, method: str, biz_content: Document, **extra: str) -> dict[str, str]:
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": SIGN_TYPE,
            "timestamp": datetime.datetime.now(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": orjson.dumps(biz_content).decode(),
            **extra,
        }
        # Requests sign everything but `sign` (sign_type included), unlike notifications.
        params["sign"] = sign_params(params, self._private_key, exclude=("sign",))
        return params

    def page_pay_url(self, request: PaymentRequest) -> str:
        biz = {
            "out_trade_no": self.to_provider_trade_no(request.out_trade_no),
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "total_amount": yuan_text(int(request.amount)),
            "subject": request.subject,
            "timeout_express": self.timeout_express,
        }
        params = self._request_params(
            "alipay.trade.page.pay", biz, notify_url=self.notify_url, return_url=self.return_url
        )
        return f"{self.gateway_url}?{urllib.parse.urlencode(params)}"

    async def create_payment(self, request: PaymentRequest) -> str:
        await self.records.create(request, self.name)
        return self.page_pay_url(request)

    async def create_payment_in(self, request: PaymentRequest, session: TxSession) -> str:
        """Page pay needs no call to Alipay (a signed redirect URL): our record of the payment is
        written in the caller's transaction (the order's)."""
        await self.payment_records.create_in(request, self.name, session)
        return self.page_pay_url(request)

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        """alipay.trade.refund; the refund is recorded first (`requested`), then confirmed.

        Alipay's synchronous answer is verified with its public key over the raw JSON of
        `alipay_trade_refund_response`, as its SDKs do.
        """
        recorded = await self.records.record_refund(out_trade_no, amount, refund_ref, "requested")
        existing = None if recorded is not None else await self.records.get_refund(refund_ref)
        if existing is not None and existing["status"] == "refunded":
            return
        if self.http_client is None:
            raise RefundRefused("no HTTP client configured for Alipay refunds")
        biz = {
            "out_trade_no": self.to_provider_trade_no(out_trade_no),
            "refund_amount": yuan_text(amount),
            "out_request_no": refund_ref,
        }
        params = self._request_params("alipay.trade.refund", biz)
        response = await self.http_client.fetch(
            self.gateway_url,
            method="POST",
            body=urllib.parse.urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            raise_error=False,
        )
        body = (response.body or b"").decode("utf-8", "replace")
        answer = self.verified_response(body, "alipay_trade_refund_response")
        if answer is None or answer.get("code") != "10000":
            log.error("Alipay refused refund %s of %s: %s", refund_ref, out_trade_no, body[:300])
            raise RefundRefused("Alipay did not confirm the refund; it stays requested")
        await self.records.set_refund_status(refund_ref, "refunded")

    def verified_response(self, body: str, node: str) -> dict[str, Any] | None:
        """The `node` object of a synchronous Alipay answer, if its signature verifies."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        marker = f'"{node}":'
        start = body.find(marker)
        sign_at = body.rfind(',"sign"')
        if start < 0 or sign_at < 0 or not isinstance(data, dict):
            return None
        raw = body[start + len(marker) : sign_at].strip()
        if not rsa2_verify(raw, str(data.get("sign", "")), self.notifier_public_key):
            return None
        answer = data.get(node)
        return answer if isinstance(answer, dict) else None
