"""Payment providers (a built-in sandbox, an Alipay adapter), the notify endpoint and the return page.

Both providers implement `engine.settle.ports.PaymentProvider` and share one verification path
(`SignedProvider.handle_notification`):

1. the signature: RSA2 = RSA PKCS#1 v1.5 with SHA-256 over the `k=v` pairs sorted by key, joined
   with `&`, leaving out `sign`, `sign_type` and empty values (Alipay's rule for notifications),
   base64; checked with the provider's public key;
2. `app_id` is ours (and `seller_id`, when configured);
3. `out_trade_no` is a payment we created with this provider;
4. `total_amount` (yuan, "12.34") equals the stored amount in fen exactly (no float anywhere);
5. only `TRADE_SUCCESS` / `TRADE_FINISHED` mean paid; the payment goes `pending|closed -> paid` once,
   and the `PaymentRouter` handler for the prefix (`shop-`, `dep-`, `ord-`) runs until it succeeds;
   a repeated notification for a handled payment answers `success` and does nothing.

The endpoint answers exactly `success`, or `failure` with 400 for a forged or wrong notification
(the provider may retry; nothing changes) and 503 when the handler failed (the provider retries).
The return page (`GET /api/v1/payments/return`) only shows a status: it never marks anything paid.

MongoDB: `payments` (ours: `_id` = out_trade_no, amount, status pending|paid|closed, handled,
refunded), `payment_refunds` (`_id` = refund_ref), and for the sandbox's own (provider-side) state
`sandbox_trades`.
"""

import abc
import asyncio
import base64
import contextlib
import dataclasses
import datetime
import logging
import os
import pathlib
import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import orjson
import tornado.escape
import tornado.httpclient
import tornado.web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from engine.book.errors import GavelError, IllegalTransition, NotFound
from engine.settle.ports import PaymentRequest, PaymentRouter
from engine.settle.shop_pricing import PricingError, parse_yuan, yuan_text
from gateway.context import AppContext
from gateway.errors import ValidationFailed
from gateway.http import JsonHandler
from persistence.mongo import Database, Document, Session, run_in_transaction, utc_now

log = logging.getLogger("gavel.payments")

PAID_STATES: Final = ("TRADE_SUCCESS", "TRADE_FINISHED")
CLOSED_STATE: Final = "TRADE_CLOSED"
WAITING_STATE: Final = "WAIT_BUYER_PAY"
SIGN_TYPE: Final = "RSA2"
NOTIFY_PATH: Final = "/api/v1/payments/notify"
RETURN_PATH: Final = "/api/v1/payments/return"
SANDBOX_PAGE_PREFIX: Final = "/sandbox/pay/"
# Only our own out_trade_no shapes (see engine/settle/ports.py), so that the deposits' interim
# sandbox route (gateway/sandbox.py, random ids) keeps its own pages.
SANDBOX_PAGE_PATTERN: Final = r"/sandbox/pay/((?:shop|dep|ord)-[A-Za-z0-9_-]{1,58})"
DEFAULT_RETRY_DELAYS: Final = (2.0, 10.0, 30.0, 120.0, 600.0, 1800.0)
MAX_NOTIFY_BYTES = 16 * 1024
KEY_BITS = 2048
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")  # no DST in China


class PaymentRefused(GavelError):
    """A notification that fails verification; answered `failure` with 400."""

    code = "PAYMENT_REFUSED"


class RefundRefused(GavelError):
    code = "ILLEGAL_STATE"


# -- RSA2 signatures ----------------------------------------------------------------------------------
def signing_string(params: Mapping[str, str], exclude: Sequence[str] = ("sign", "sign_type")) -> str:
    """`k=v` pairs sorted by key and joined with `&`, without `exclude` and empty values.

    Notifications exclude `sign` and `sign_type`; Alipay's *requests* exclude only `sign`.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def load_private_key(text: str | bytes) -> rsa.RSAPrivateKey:
    """A PEM private key, or the bare base64 (PKCS#8 or PKCS#1 DER) the Alipay console hands out."""
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(base64.b64decode(b"".join(data.split())), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("an RSA private key is required")
    return key


def load_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        key = serialization.load_pem_public_key(data)
    else:
        key = serialization.load_der_public_key(base64.b64decode(b"".join(data.split())))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an RSA public key is required")
    return key


def rsa2_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_params(
    params: Mapping[str, str], key: rsa.RSAPrivateKey, exclude: Sequence[str] = ("sign", "sign_type")
) -> str:
    return rsa2_sign(signing_string(params, exclude), key)


def load_or_create_sandbox_keys(data_dir: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """The sandbox's RSA key pair (PEM private, PEM public), generated at first start.

    Stored as `DATA_DIR/payments/sandbox_private.pem` (mode 0600) and `sandbox_public.pem`; the
    private file is created exclusively, so two processes starting at once agree on one key.
    """
    directory = pathlib.Path(data_dir) / "payments"
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "sandbox_private.pem", directory / "sandbox_public.pem"
    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temp = directory / f".sandbox_private.{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, private_path)  # fails if another process won the race: keep its key
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    private_pem = private_path.read_bytes()
    public_pem = (
        load_private_key(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        public_path.write_bytes(public_pem)
    return private_pem, public_pem


# -- our payment records ------------------------------------------------------------------------------
async def ensure_payment_indexes(db: Database) -> None:
    """Indexes of `payments`, `payment_refunds` and `sandbox_trades` (idempotent)."""
    await db.payments.create_indexes([IndexModel([("status", ASCENDING)], name="status")])
    await db.payment_refunds.create_indexes([IndexModel([("out_trade_no", ASCENDING)], name="out_trade_no")])
    await db.sandbox_trades.create_indexes([IndexModel([("notified", ASCENDING)], name="notified")])


class PaymentRecords:
    """The `payments` collection: what we asked a provider to collect, and what it told us."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, request: PaymentRequest, provider: str) -> Document:
        """Idempotent on `out_trade_no`; the same number with a different amount is refused."""
        doc: Document = {
            "_id": request.out_trade_no,
            "provider": provider,
            "amount": int(request.amount),
            "subject": request.subject,
            "status": "pending",
            "handled": False,
            "refunded": 0,
            "trade_no": None,
            "created_at": utc_now(),
            "paid_at": None,
        }
        try:
            await self.db.payments.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.get(request.out_trade_no)
            if existing is None or existing["amount"] != request.amount or existing["provider"] != provider:
                raise IllegalTransition(f"payment {request.out_trade_no} exists with other terms") from None
            return existing
        return doc

    async def get(self, out_trade_no: str) -> Document | None:
        return await self.db.payments.find_one({"_id": out_trade_no})

    async def mark_paid(self, out_trade_no: str, trade_no: str, notify_id: str) -> Document:
        """pending|closed -> paid (a signed success means the money arrived, even after a close)."""
        doc = await self.db.payments.find_one_and_update(
            {"_id": out_trade_no, "status": {"$in": ["pending", "closed"]}},
            {"$set": {"status": "paid", "trade_no": trade_no, "paid_at": utc_now(), "notify_id": notify_id}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            doc = await self.get(out_trade_no)
            assert doc is not None  # it existed a moment ago; payments are never deleted
            if doc.get("trade_no") not in (None, trade_no):
                log.warning(
                    "payment %s paid as %s, notified again as %s", out_trade_no, doc["trade_no"], trade_no
                )
        return doc

    async def mark_closed(self, out_trade_no: str) -> None:
        """pending -> closed; a late or out-of-order close never undoes a payment."""
        await self.db.payments.update_one(
            {"_id": out_trade_no, "status": "pending"}, {"$set": {"status": "closed", "closed_at": utc_now()}}
        )

    async def mark_handled(self, out_trade_no: str) -> None:
        await self.db.payments.update_one(
            {"_id": out_trade_no}, {"$set": {"handled": True, "handled_at": utc_now()}}
        )

    async def record_refund(
        self, out_trade_no: str, amount: int, refund_ref: str, status: str
    ) -> Document | None:
        """One refund, in one transaction with the payment's refunded total (never above the amount).

        Returns None when `refund_ref` was already recorded for this very refund (idempotent).
        """
        if type(amount) is not int or amount < 1:
            raise RefundRefused("a refund is a positive number of fen")

        async def transaction(s: Session) -> Document | None:
            existing = await self.db.payment_refunds.find_one({"_id": refund_ref}, session=s)
            if existing is not None:
                if existing["out_trade_no"] != out_trade_no or existing["amount"] != amount:
                    raise RefundRefused(f"refund {refund_ref!r} was recorded with other terms")
                return None
            payment = await self.db.payments.find_one({"_id": out_trade_no}, session=s)
            if payment is None:
                raise NotFound(f"no payment {out_trade_no}")
            if payment["status"] != "paid":
                raise RefundRefused(f"payment {out_trade_no} is {payment['status']}, not paid")
            # Conditional on the refunded total: concurrent refunds never exceed what was paid.
            updated = await self.db.payments.update_one(
                {"_id": out_trade_no, "refunded": {"$lte": int(payment["amount"]) - amount}},
                {"$inc": {"refunded": amount}},
                session=s,
            )
            if updated.matched_count != 1:
                raise RefundRefused(f"refunding {amount} fen would exceed what {out_trade_no} paid")
            doc: Document = {
                "_id": refund_ref,
                "out_trade_no": out_trade_no,
                "amount": amount,
                "status": status,
                "created_at": utc_now(),
            }
            await self.db.payment_refunds.insert_one(doc, session=s)
            return doc

        return await run_in_transaction(self.db.client, transaction)

    async def get_refund(self, refund_ref: str) -> Document | None:
        return await self.db.payment_refunds.find_one({"_id": refund_ref})

    async def set_refund_status(self, refund_ref: str, status: str) -> None:
        await self.db.payment_refunds.update_one({"_id": refund_ref}, {"$set": {"status": status}})


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
        records: PaymentRecords,
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
        await self.records.mark_handled(out_trade_no)
        return NotifyResult(True, 200, "paid")


# -- the sandbox ----------------------------------------------------------------------------------------
class SandboxProvider(SignedProvider):
    """A local stand-in for Alipay: a payment page that pays or fails, signed asynchronous
    notifications retried until the shop answers `success`, and immediate refunds.

    The provider side keeps its own state in `sandbox_trades`; the shop side trusts only the
    signed notifications, exactly as with Alipay.
    """

    name = "sandbox"

    def __init__(
        self,
        base_url: str,
        app_id: str,
        private_key_pem: bytes | str,
        public_key_pem: bytes | str,
        router: PaymentRouter,
        http_client: tornado.httpclient.AsyncHTTPClient,
        *,
        db: Database,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            app_id=app_id,
            notifier_public_key=load_public_key(public_key_pem),
            router=router,
            records=PaymentRecords(db),
        )
        self.base_url = base_url.rstrip("/")
        self.db = db
        self.http_client = http_client
        self.retry_delays = tuple(retry_delays)
        self.request_timeout = request_timeout
        self._private_key = load_private_key(private_key_pem)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def notify_url(self) -> str:
        return self.base_url + NOTIFY_PATH

    def pay_url(self, out_trade_no: str) -> str:
        return f"{self.base_url}{SANDBOX_PAGE_PREFIX}{urllib.parse.quote(out_trade_no)}"

    async def create_payment(self, request: PaymentRequest) -> str:
        await self.records.create(request, self.name)
        # A repeated request for the same payment keeps the trade (records.create checked the terms).
        with contextlib.suppress(DuplicateKeyError):
            await self.db.sandbox_trades.insert_one(
                {
                    "_id": request.out_trade_no,
                    "amount": int(request.amount),
                    "subject": request.subject,
                    "status": WAITING_STATE,
                    "trade_no": None,
                    "notify_id": None,
                    "notified": False,
                    "attempts": 0,
                    "refunded": 0,
                    "created_at": utc_now(),
                }
            )
        return self.pay_url(request.out_trade_no)

    async def trade(self, out_trade_no: str) -> Document:
        trade = await self.db.sandbox_trades.find_one({"_id": out_trade_no})
        if trade is None:
            raise NotFound("no such payment")
        return trade

    async def settle(self, out_trade_no: str, outcome: str) -> Document:
        """The payer pressed Pay (`paid`) or Fail (`failed`): record it and notify the shop."""
        new_status = "TRADE_SUCCESS" if outcome == "paid" else CLOSED_STATE
        trade = await self.db.sandbox_trades.find_one_and_update(
            {"_id": out_trade_no, "status": WAITING_STATE},
            {
                "$set": {
                    "status": new_status,
                    "trade_no": f"SBX{utc_now():%Y%m%d}{secrets.token_hex(8).upper()}",
                    "notify_id": secrets.token_hex(16),
                    "settled_at": utc_now(),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if trade is None:
            trade = await self.trade(out_trade_no)
            if trade["status"] != new_status:
                raise IllegalTransition(f"this payment is already {trade['status']}")
            return trade  # a repeated press: the notification is already under way
        self._schedule(out_trade_no)
        return trade

    def notification(self, trade: Document) -> dict[str, str]:
        """The signed form the sandbox posts, with Alipay's field names."""
        params = {
            "app_id": self.app_id,
            "charset": "utf-8",
            "notify_id": trade["notify_id"],
            "notify_time": datetime.datetime.now(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S"),
            "notify_type": "trade_status_sync",
            "out_trade_no": trade["_id"],
            "subject": trade["subject"],
            "total_amount": yuan_text(int(trade["amount"])),
            "trade_no": trade["trade_no"],
            "trade_status": trade["status"],
            "version": "1.0",
        }
        params["sign"] = sign_params(params, self._private_key)
        params["sign_type"] = SIGN_TYPE
        return params

    def _schedule(self, out_trade_no: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(out_trade_no))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, out_trade_no: str) -> None:
        """POST the notification until the answer is exactly `success` (bounded attempts)."""
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                if await self._attempt(out_trade_no):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                # E.g. MongoDB briefly unavailable: the next attempt (or the next start) tries again.
                log.exception("sandbox notify attempt for %s failed", out_trade_no)
        log.error("sandbox gave up notifying %s after %d attempts", out_trade_no, 1 + len(self.retry_delays))

    async def _attempt(self, out_trade_no: str) -> bool:
        """One delivery; True when done (answered `success`, or nothing left to deliver)."""
        trade = await self.db.sandbox_trades.find_one_and_update(
            {"_id": out_trade_no}, {"$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER
        )
        if trade is None or trade.get("notified"):
            return True
        body = urllib.parse.urlencode(self.notification(trade))
        try:
            response = await self.http_client.fetch(
                self.notify_url,
                method="POST",
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                request_timeout=self.request_timeout,
                raise_error=False,
            )
        except (OSError, tornado.httpclient.HTTPClientError) as exc:
            log.info("sandbox notify of %s failed: %s", out_trade_no, exc)
            return False
        if response.code != 200 or response.body != b"success":
            return False
        await self.db.sandbox_trades.update_one({"_id": out_trade_no}, {"$set": {"notified": True}})
        return True

    async def resume_notifications(self) -> int:
        """At start-up: deliver the notifications a previous run did not get answered."""
        cursor = self.db.sandbox_trades.find(
            {"notified": False, "status": {"$ne": WAITING_STATE}}, {"_id": 1}
        )
        numbers = [str(doc["_id"]) async for doc in cursor]
        for out_trade_no in numbers:
            self._schedule(out_trade_no)
        return len(numbers)

    async def idle(self) -> None:
        """Wait until no notification is being delivered (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        """Refund at once (the sandbox moves no money); idempotent per `refund_ref`."""
        trade = await self.trade(out_trade_no)
        if trade["status"] not in PAID_STATES:
            raise RefundRefused(f"payment {out_trade_no} was not paid")
        recorded = await self.records.record_refund(out_trade_no, amount, refund_ref, "refunded")
        if recorded is not None:
            await self.db.sandbox_trades.update_one({"_id": out_trade_no}, {"$inc": {"refunded": amount}})


# -- Alipay ---------------------------------------------------------------------------------------------
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
        gateway_url: str = "https://openapi.alipay.com/gateway.do",
        *,
        db: Database,
        router: PaymentRouter,
        notify_url: str,
        return_url: str,
        http_client: tornado.httpclient.AsyncHTTPClient | None = None,
        seller_id: str | None = None,
        timeout_express: str = "30m",
    ) -> None:
        super().__init__(
            app_id=app_id,
            notifier_public_key=load_public_key(alipay_public_key),
            router=router,
            records=PaymentRecords(db),
            seller_id=seller_id,
        )
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


# -- composition --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PaymentsConfig:
    """What run.py reads from its configuration to build the provider."""

    provider: str = "sandbox"  # "sandbox" or "alipay"
    app_id: str = "gavel-sandbox"
    data_dir: str = "var"  # the sandbox key pair lives under DATA_DIR/payments/
    alipay_app_private_key_path: str | None = None
    alipay_public_key_path: str | None = None
    alipay_gateway_url: str = "https://openapi.alipay.com/gateway.do"
    alipay_seller_id: str | None = None


def build_provider(
    ctx: AppContext,
    config: PaymentsConfig,
    router: PaymentRouter,
    http_client: tornado.httpclient.AsyncHTTPClient,
) -> SignedProvider:
    """The configured provider, stored as `ctx.options["payment_provider"]` (and the router as
    `ctx.options["payment_router"]`). `ctx.base_url` must be the public origin."""
    base_url = ctx.base_url.rstrip("/")
    provider: SignedProvider
    if config.provider == "alipay":
        if not config.alipay_app_private_key_path or not config.alipay_public_key_path:
            raise ValueError("Alipay needs alipay_app_private_key_path and alipay_public_key_path")
        provider = AlipayAdapter(
            config.app_id,
            pathlib.Path(config.alipay_app_private_key_path).read_text(),
            pathlib.Path(config.alipay_public_key_path).read_text(),
            config.alipay_gateway_url,
            db=ctx.db,
            router=router,
            notify_url=base_url + NOTIFY_PATH,
            return_url=base_url + RETURN_PATH,
            http_client=http_client,
            seller_id=config.alipay_seller_id,
        )
    elif config.provider == "sandbox":
        private_pem, public_pem = load_or_create_sandbox_keys(config.data_dir)
        provider = SandboxProvider(
            base_url, config.app_id, private_pem, public_pem, router, http_client, db=ctx.db
        )
    else:
        raise ValueError(f"unknown payment provider {config.provider!r}")
    ctx.options["payment_provider"] = provider
    ctx.options["payment_router"] = router
    return provider


def provider_of(ctx: AppContext) -> SignedProvider:
    provider = ctx.options.get("payment_provider")
    if not isinstance(provider, SignedProvider):
        raise RuntimeError("ctx.options['payment_provider'] must be a SandboxProvider or AlipayAdapter")
    return provider


def payment_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    """The notify endpoint, the return page and (sandbox only) the payment page.

    Needs `ctx.options["payment_provider"]`; add with `app.add_handlers(r".*", payment_routes(ctx))`.
    """
    provider = provider_of(ctx)
    args = {"ctx": ctx, "provider": provider}
    routes: list[tuple[str, type, dict[str, Any]]] = [
        (NOTIFY_PATH, NotifyHandler, {"provider": provider}),
        (RETURN_PATH, ReturnHandler, args),
    ]
    if isinstance(provider, SandboxProvider):
        routes.append((SANDBOX_PAGE_PATTERN, SandboxPageHandler, args))
    return routes


# -- handlers -------------------------------------------------------------------------------------------
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


class ReturnHandler(JsonHandler):
    """`GET /api/v1/payments/return?out_trade_no=…`: where the payer lands; shows a status only."""

    def initialize(self, ctx: AppContext, provider: SignedProvider) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.provider = provider

    async def get(self) -> None:
        raw = self.get_query_argument("out_trade_no", "")
        out_trade_no = self.provider.from_provider_trade_no(raw)
        payment = await self.provider.records.get(out_trade_no) if 0 < len(raw) <= 64 else None
        if payment is None:
            raise NotFound("no such payment")
        # Status only: no amount or payer, and never a state change (only notifications pay).
        self.reply({"out_trade_no": out_trade_no, "status": payment["status"]})


class SandboxPageHandler(JsonHandler):
    """`GET /sandbox/pay/{out_trade_no}`: the payment page; `POST` `outcome=paid|failed` settles it."""

    def initialize(self, ctx: AppContext, provider: SandboxProvider) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.provider = provider

    async def get(self, out_trade_no: str) -> None:
        trade = await self.provider.trade(out_trade_no)
        escape = tornado.escape.xhtml_escape
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; form-action 'self'")
        waiting = trade["status"] == WAITING_STATE
        form = '<form method="post"><input type="hidden" name="outcome" value="{}"><button>{}</button></form>'
        buttons = form.format("paid", "Pay") + form.format("failed", "Fail") if waiting else ""
        self.finish(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sandbox payment</title></head>"
            "<body style='font-family: sans-serif; max-width: 30rem; margin: 3rem auto'>"
            f"<h1>Sandbox payment</h1><p>{escape(trade['subject'])}</p>"
            f"<p><strong>¥{escape(yuan_text(int(trade['amount'])))}</strong> &mdash; "
            f"{escape(trade['status'])}</p>"
            f"{buttons}<p><small>No money moves: this page stands in for the payment provider.</small></p>"
            "</body></html>"
        )

    async def post(self, out_trade_no: str) -> None:
        outcome = self._outcome()
        trade = await self.provider.settle(out_trade_no, outcome)
        self.reply({"out_trade_no": out_trade_no, "status": trade["status"]})

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
