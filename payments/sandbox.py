"""The sandbox provider: a local stand-in for Alipay, for development only.

It is wired only with `PAYMENT_PROVIDER=sandbox` (production refuses it). Its pay page
`/sandbox/pay/{out_trade_no}` is a static page; the page (or a client) reads and settles the
payment through `GET|POST /api/v1/sandbox/payments/{out_trade_no}`, which only the signed-in owner
of the payment may use: anonymous -> 401, another user -> 404 (existence is not revealed), an admin
may look but not pay (403). Every answer says it is a sandbox (`"sandbox": true`, the header
`X-Gavel-Sandbox: 1`, a banner on the page). Settling still goes through a signed notification,
so the shop side trusts the sandbox exactly as it trusts Alipay. The pages' handlers are in
payments/handlers.py; this module is the provider (and its own records, `sandbox_trades`).
"""

import asyncio
import contextlib
import datetime
import logging
import os
import pathlib
import secrets
import urllib.parse
from collections.abc import Sequence
from typing import Final

import tornado.httpclient
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from engine.book.errors import IllegalTransition, NotFound
from engine.settle.ports import PaymentRequest, PaymentRouter
from payments.provider import (
    CLOSED_STATE,
    PAID_STATES,
    WAITING_STATE,
    RefundRefused,
    SignedProvider,
)
from payments.records import PaymentRecords
from payments.signing import KEY_BITS, SIGN_TYPE, load_private_key, load_public_key, sign_params
from payments.trade_numbers import TRADE_NO_PATTERN
from persistence.mongo import Database, Document, TxSession, unit_writes, utc_now
from shop.pricing import yuan_text

log = logging.getLogger("gavel.payments")

NOTIFY_PATH: Final = "/api/v1/payments/notify"
SANDBOX_PAGE_PREFIX: Final = "/sandbox/pay/"
SANDBOX_PAGE_PATTERN: Final = SANDBOX_PAGE_PREFIX + TRADE_NO_PATTERN
SANDBOX_API_PATTERN: Final = "/api/v1/sandbox/payments/" + TRADE_NO_PATTERN
SANDBOX_HEADER: Final = "X-Gavel-Sandbox"
DEFAULT_RETRY_DELAYS: Final = (2.0, 10.0, 30.0, 120.0, 600.0, 1800.0)
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")  # no DST in China
STATIC_DIR: Final = pathlib.Path(__file__).parent / "static"
PAGE_FILE: Final = STATIC_DIR / "sandbox-pay.html"
SCRIPT_FILE: Final = STATIC_DIR / "sandbox-pay.js"


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
        records = PaymentRecords(db)
        super().__init__(
            app_id=app_id,
            notifier_public_key=load_public_key(public_key_pem),
            router=router,
            records=records,
        )
        self.base_url = base_url.rstrip("/")
        self.db = db
        self.payment_records = records  # `records`, with its transactional create
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
            await self.db.sandbox_trades.insert_one(self._new_trade(request))
        return self.pay_url(request.out_trade_no)

    async def create_payment_in(self, request: PaymentRequest, session: TxSession) -> str:
        """A new payment with our record and the sandbox's trade in the caller's transaction (the
        order's): nothing leaves the process, so nothing is left behind if it aborts."""
        await self.payment_records.create_in(request, self.name, session)
        writes = unit_writes(session)
        if writes is not None:  # sent with the unit's other writes: nothing in it reads the trade
            writes.insert(self.db.sandbox_trades, self._new_trade(request))
        else:
            await self.db.sandbox_trades.insert_one(self._new_trade(request), session=session)
        return self.pay_url(request.out_trade_no)

    @staticmethod
    def _new_trade(request: PaymentRequest) -> Document:
        return {
            "_id": request.out_trade_no,
            "user_id": request.user_id,
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

    async def find_trade(self, out_trade_no: str) -> Document | None:
        """The sandbox's own record of a payment, or None (the pages answer 404 either way)."""
        return await self.db.sandbox_trades.find_one({"_id": out_trade_no})

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

    async def close_payment(self, out_trade_no: str) -> bool:
        """Close an unpaid payment, as Alipay's trade.close does: its page can no longer pay it and
        no notification is sent for it. False (nothing changes) once the payer has settled it."""
        trade = await self.db.sandbox_trades.find_one_and_update(
            {"_id": out_trade_no, "status": WAITING_STATE},
            {"$set": {"status": CLOSED_STATE, "closed_at": utc_now(), "notified": True}},
            return_document=ReturnDocument.AFTER,
        )
        if trade is None:
            trade = await self.find_trade(out_trade_no)
            return trade is not None and trade["status"] == CLOSED_STATE
        await self.records.mark_closed(out_trade_no)
        return True

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
        """Cancel the deliveries in flight (the next start resumes them); a delivery that fails
        while stopping is logged with its traceback, not dropped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("sandbox delivery failed while stopping", exc_info=result)

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        """Refund at once (the sandbox moves no money); idempotent per `refund_ref`."""
        trade = await self.trade(out_trade_no)
        if trade["status"] not in PAID_STATES:
            raise RefundRefused(f"payment {out_trade_no} was not paid")
        recorded = await self.records.record_refund(out_trade_no, amount, refund_ref, "refunded")
        if recorded is not None:
            await self.db.sandbox_trades.update_one({"_id": out_trade_no}, {"$inc": {"refunded": amount}})
