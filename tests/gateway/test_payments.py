"""Payments: RSA2 signing, the sandbox key pair, the Alipay adapter (URL signing, verification,
refund answer check) and the notify endpoint against forged, replayed, wrong-amount and
out-of-order notifications, over a real listening app with the real MongoDB."""

import base64
import datetime
import json
import socket
import stat
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.simple_httpclient
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.settle.ports import PaidNotice, PaymentRequest, PaymentRouter
from payments.alipay import AlipayAdapter
from payments.provider import NotifyResult, RefundRefused
from payments.sandbox import NOTIFY_PATH, load_or_create_sandbox_keys
from payments.signing import (
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
    sign_params,
    signing_string,
)
from persistence.mongo import Database
from tests.gateway.conftest import Answer, AppServer
from tests.gateway.test_shop_api import APP_ID, ShopServer, key_pair, running_shop


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


def other_key_pair() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public


# -- signatures and keys ------------------------------------------------------------------------------
def test_signing_string_follows_alipays_rule() -> None:
    params = {"b": "2", "a": "1", "sign": "xyz", "sign_type": "RSA2", "empty": "", "c": "中文 &x"}
    assert signing_string(params) == "a=1&b=2&c=中文 &x"
    # Requests (alipay.trade.*) sign sign_type too; only notifications leave it out.
    assert signing_string(params, exclude=("sign",)) == "a=1&b=2&c=中文 &x&sign_type=RSA2"


def test_rsa2_signature_round_trip_and_tampering() -> None:
    private_pem, public_pem = key_pair()
    private, public = load_private_key(private_pem), load_public_key(public_pem)
    params = {"out_trade_no": "shop-1", "total_amount": "1.00"}
    signature = sign_params(params, private)
    assert rsa2_verify(signing_string(params), signature, public)
    assert not rsa2_verify(signing_string({**params, "total_amount": "0.01"}), signature, public)
    assert not rsa2_verify(signing_string(params), "not base64!", public)
    assert not rsa2_verify(signing_string(params), base64.b64encode(b"x" * 256).decode(), public)
    # Alipay's console hands out bare base64 keys: those load too.
    bare = b"".join(line for line in public_pem.splitlines() if not line.startswith(b"-----"))
    assert rsa2_verify(signing_string(params), signature, load_public_key(bare))


def test_sandbox_keys_are_created_once_and_kept_private(tmp_path: Path) -> None:
    private_pem, public_pem = load_or_create_sandbox_keys(tmp_path)
    key_file = tmp_path / "payments" / "sandbox_private.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_or_create_sandbox_keys(tmp_path) == (private_pem, public_pem)
    message = "a=1"
    assert rsa2_verify(
        message, rsa2_sign(message, load_private_key(private_pem)), load_public_key(public_pem)
    )
    assert (tmp_path / "payments" / "sandbox_public.pem").read_bytes() == public_pem


# -- the Alipay adapter (no network: local key pairs stand in for the app's and Alipay's) -------------
@pytest.fixture
async def alipay_db(app_server: AppServer) -> Database:
    return app_server.ctx.db


def make_alipay(db: Database, router: PaymentRouter, alipay_public: bytes, **kw: Any) -> AlipayAdapter:
    app_private, _ = key_pair()
    return AlipayAdapter(
        "2021000000000001",
        app_private.decode(),
        alipay_public,
        "https://openapi.alipay.com/gateway.do",
        db=db,
        router=router,
        notify_url="https://shop.example/api/v1/payments/notify",
        return_url="https://shop.example/api/v1/payments/return",
        **kw,
    )


async def test_alipay_page_pay_url_is_signed_with_the_app_key(alipay_db: Database) -> None:
    _, alipay_public = other_key_pair()
    adapter = make_alipay(alipay_db, PaymentRouter(), alipay_public)
    url = await adapter.create_payment(PaymentRequest("shop-2025010100000042", 12_345, "Courses: Python"))
    base, _, query = url.partition("?")
    assert base == "https://openapi.alipay.com/gateway.do"
    params = dict(urllib.parse.parse_qsl(query, strict_parsing=True))
    assert params["method"] == "alipay.trade.page.pay" and params["sign_type"] == "RSA2"
    assert params["notify_url"] == "https://shop.example/api/v1/payments/notify"
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "shop_2025010100000042",  # Alipay allows letters, digits and _ only
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "total_amount": "123.45",
        "subject": "Courses: Python",
        "timeout_express": "30m",
    }
    # What Alipay does: verify with the app's public key over everything but `sign`.
    _, app_public = key_pair()
    assert rsa2_verify(signing_string(params, exclude=("sign",)), params["sign"], load_public_key(app_public))
    assert adapter.to_provider_trade_no("ord-12-3") == "ord_12_3"  # the settlement side's numbers
    assert adapter.from_provider_trade_no("ord_12_3") == "ord-12-3"
    stored = await alipay_db.payments.find_one({"_id": "shop-2025010100000042"})
    assert stored is not None and (stored["amount"], stored["provider"]) == (12_345, "alipay")


async def test_alipay_notification_uses_the_shared_verification(alipay_db: Database) -> None:
    alipay_private, alipay_public = other_key_pair()
    router = PaymentRouter()
    seen: list[tuple[str, int]] = []

    async def on_paid(out_trade_no: str, amount: int) -> None:
        seen.append((out_trade_no, amount))

    router.register("dep", on_paid)  # the auction side's deposits use the same provider
    adapter = make_alipay(alipay_db, router, alipay_public, seller_id="2088000000000001")
    await adapter.create_payment(PaymentRequest("dep-7", 50_000, "Deposit"))
    params = {
        "app_id": "2021000000000001",
        "seller_id": "2088000000000001",
        "out_trade_no": "dep_7",
        "trade_no": "2025010122001400000000000001",
        "total_amount": "500.00",
        "trade_status": "TRADE_SUCCESS",
        "notify_id": "n1",
        "buyer_logon_id": "",
    }
    signed = {**params, "sign": sign_params(params, alipay_private), "sign_type": "RSA2"}
    assert await adapter.handle_notification(signed) == NotifyResult(True, 200, "paid")
    assert seen == [("dep-7", 50_000)]
    assert (await adapter.handle_notification(signed)).detail == "already handled"
    assert seen == [("dep-7", 50_000)]
    other_seller = {**params, "seller_id": "2088999999999999"}
    forged_seller = {**other_seller, "sign": sign_params(other_seller, alipay_private), "sign_type": "RSA2"}
    assert (await adapter.handle_notification(forged_seller)).status == 400


async def test_alipay_refund_checks_the_signed_answer(alipay_db: Database) -> None:
    alipay_private, alipay_public = other_key_pair()
    requests: list[dict[str, str]] = []

    class FakeGateway(tornado.web.RequestHandler):
        def post(self) -> None:
            params = dict(urllib.parse.parse_qsl(self.request.body.decode()))
            requests.append(params)
            node = json.dumps(
                {"code": "10000", "msg": "Success", "refund_fee": "10.00"}, separators=(",", ":")
            )
            sign = rsa2_sign(node, alipay_private)
            self.write(f'{{"alipay_trade_refund_response":{node},"sign":"{sign}"}}')

    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/gateway.do", FakeGateway)]))
    server.add_sockets([sock])
    http = tornado.simple_httpclient.SimpleAsyncHTTPClient(force_instance=True)
    try:
        adapter = make_alipay(alipay_db, PaymentRouter(), alipay_public, http_client=http)
        adapter.gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}/gateway.do"
        await adapter.create_payment(PaymentRequest("shop-99", 2000, "x"))
        await alipay_db.payments.update_one({"_id": "shop-99"}, {"$set": {"status": "paid"}})
        await adapter.refund("shop-99", 1000, "r-1")
        await adapter.refund("shop-99", 1000, "r-1")  # idempotent: already refunded, no second request
        assert len(requests) == 1 and json.loads(requests[0]["biz_content"])["refund_amount"] == "10.00"
        refund = await alipay_db.payment_refunds.find_one({"_id": "r-1"})
        assert refund is not None and refund["status"] == "refunded"
        with pytest.raises(RefundRefused):
            await adapter.refund("shop-99", 1001, "r-2")  # more than is left
    finally:
        http.close()
        server.stop()


# -- the notify endpoint over HTTP (sandbox) -----------------------------------------------------------
async def pending_order(
    s: ShopServer, *, balance: int = 0, coupon: bool = False
) -> tuple[str, str, dict[str, Any]]:
    """A user with a pending order of 100.00 (after an optional 20.00 coupon and `balance`)."""
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 10_000)
    user_id, token = await s.api.register()
    if balance:
        await s.api.credit(user_id, balance)
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    coupon_id = await s.coupon(user_id, kind="flat", value=2000, course_id=course_id) if coupon else None
    await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    if coupon_id is not None:
        await s.call(
            "PATCH", "/api/v1/checkout", {"course_id": course_id, "coupon_id": coupon_id}, token=token
        )
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": balance, "idempotency_key": "p"}, token=token
    )
    assert paid.status == 201, paid.body
    order = paid.json["order"]
    # The trade number is random now (payments/trade_numbers.py): the pay URL names it.
    return token, paid.json["pay_url"].rsplit("/", 1)[1], order


def notification(
    out_trade_no: str, total_amount: str, *, status: str = "TRADE_SUCCESS", **extra: str
) -> dict[str, str]:
    return {
        "app_id": APP_ID,
        "out_trade_no": out_trade_no,
        "trade_no": "SBX-test-1",
        "total_amount": total_amount,
        "trade_status": status,
        "notify_id": "test-notify-1",
        **extra,
    }


def signed(params: dict[str, str], key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    key = key or load_private_key(key_pair()[0])
    return {**params, "sign": sign_params(params, key), "sign_type": "RSA2"}


async def post_notify(s: ShopServer, params: dict[str, str]) -> Answer:
    return await s.call(
        "POST",
        NOTIFY_PATH,
        raw=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def order_status(s: ShopServer, token: str, order_no: str) -> str:
    return str((await s.call("GET", f"/api/v1/shop/orders/{order_no}", token=token)).json["status"])


async def test_forged_wrong_and_unknown_notifications_are_refused(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s)
    assert order["to_pay"] == 10_000
    forger, _ = other_key_pair()
    refused = [
        signed(notification(trade_no, "100.00"), forger),  # forged: another key
        signed(notification(trade_no, "0.01")),  # wrong amount, correctly signed
        signed(notification(trade_no, "100.001")),  # not an amount
        signed(notification(trade_no, "100.00", app_id="someone-else")),  # another app
        signed(notification("shop-999999", "100.00")),  # an order we never asked to be paid
        signed(notification(trade_no, "100.00", status="TRADE_PAID_MAYBE")),  # unknown state
        notification(trade_no, "100.00"),  # unsigned
        {**signed(notification(trade_no, "100.00")), "total_amount": "1.00"},  # altered after signing
        {**signed(notification(trade_no, "100.00")), "sign_type": "RSA"},  # not RSA2
    ]
    for params in refused:
        answer = await post_notify(s, params)
        assert (answer.status, answer.body) == (400, b"failure"), params
    garbage = await s.call("POST", NOTIFY_PATH, raw=b"%%%&&&=", headers={"Content-Type": "text/plain"})
    assert (garbage.status, garbage.body) == (400, b"failure")
    assert await order_status(s, token, order["order_no"]) == "pending"
    payment = await s.shop_ctx.db.payments.find_one({"_id": trade_no})
    assert payment is not None and payment["status"] == "pending"
    assert (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"] == []


async def test_replayed_and_out_of_order_notifications_change_nothing(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s, balance=1500, coupon=True)
    assert (order["balance_used"], order["to_pay"]) == (1500, 6500)
    good = signed(notification(trade_no, "65.00"))
    first = await post_notify(s, good)
    assert (first.status, first.body) == (200, b"success")
    assert await order_status(s, token, order["order_no"]) == "paid"
    ledger_before = await s.shop_ctx.db.ledger.count_documents({})
    for params in (
        good,  # the same notification replayed
        signed(notification(trade_no, "65.00", status="TRADE_FINISHED", notify_id="later")),
        signed(
            notification(trade_no, "65.00", status="TRADE_CLOSED", notify_id="late-close")
        ),  # out of order
    ):
        answer = await post_notify(s, params)
        assert (answer.status, answer.body) == (200, b"success")
    assert await order_status(s, token, order["order_no"]) == "paid"
    payment = await s.shop_ctx.db.payments.find_one({"_id": trade_no})
    assert payment is not None and payment["status"] == "paid" and payment["handled"] is True
    assert len((await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]) == 1
    assert await s.shop_ctx.db.ledger.count_documents({}) == ledger_before


async def test_return_page_never_marks_paid(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s)
    # Whatever the query claims (Alipay appends signed parameters to the return URL), nothing changes.
    query = urllib.parse.urlencode(signed(notification(trade_no, "100.00")))
    answer = await s.call("GET", f"/api/v1/payments/return?{query}")
    assert answer.json == {"out_trade_no": trade_no, "status": "pending"}
    assert await order_status(s, token, order["order_no"]) == "pending"
    assert (await s.call("GET", "/api/v1/payments/return?out_trade_no=shop-1")).status == 404
    # A browser (Accept: text/html) is sent to the bidder app's payment page, still changing nothing.
    browser = await s.api.http.fetch(
        tornado.httpclient.HTTPRequest(
            f"{s.api.base_url}/api/v1/payments/return?{query}",
            headers={"Accept": "text/html,application/xhtml+xml"},
            follow_redirects=False,
        ),
        raise_error=False,
    )
    assert (browser.code, browser.headers["Location"]) == (302, f"/#/payment/{trade_no}")
    assert await order_status(s, token, order["order_no"]) == "pending"


async def test_sandbox_retries_until_the_shop_answers_success(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s)
    real = s.router.handler_for(trade_no)
    assert real is not None
    failures = {"left": 2}

    async def flaky(out_trade_no: str, amount: int) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database hiccup")
        await real(out_trade_no, amount)

    s.router.register("shop", flaky)

    async def declines(notice: PaidNotice) -> bool:
        return False  # the settling handler steps aside: the flaky handler's path is the one retried

    s.router.register_settling("shop", declines)
    page = f"/api/v1/sandbox/payments/{trade_no}"
    pressed = await s.call("POST", page, {"outcome": "paid"}, token=token)
    assert pressed.json["status"] == "TRADE_SUCCESS"
    await s.provider.idle()
    assert await order_status(s, token, order["order_no"]) == "paid"
    trade = await s.shop_ctx.db.sandbox_trades.find_one({"_id": trade_no})
    assert trade is not None and trade["notified"] is True and trade["attempts"] == 3
    again = await s.call("POST", page, {"outcome": "paid"}, token=token)  # pressing Pay twice is harmless
    assert again.status == 200
    conflict = await s.call("POST", page, {"outcome": "failed"}, token=token)
    assert (conflict.status, conflict.code) == (409, "ILLEGAL_STATE")


async def test_failed_payment_closes_and_the_timeout_releases_everything(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s, balance=1500, coupon=True)
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", {"outcome": "failed"}, token=token)
    assert pressed.json["status"] == "TRADE_CLOSED"
    await s.provider.idle()
    payment = await s.shop_ctx.db.payments.find_one({"_id": trade_no})
    assert payment is not None and payment["status"] == "closed"
    assert await order_status(s, token, order["order_no"]) == "pending"  # until its deadline

    cancelled = await s.shop.expire_pending_orders(
        s.shop.now() + datetime.timedelta(seconds=s.shop.pending_timeout_seconds)
    )
    assert cancelled == 1
    assert await order_status(s, token, order["order_no"]) == "cancelled_by_timeout"
    me = (await s.call("GET", "/api/v1/me", token=token)).json
    assert me["balance"] == 1500
    coupons = (await s.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
    assert [c["status"] for c in coupons] == ["unused"]
    ledger = [
        (e["kind"], e["amount"])
        async for e in s.shop_ctx.db.ledger.find({"user_id": me["user_id"]}).sort("at", 1)
    ]
    assert ledger == [("admin_credit", 1500), ("shop_hold", -1500), ("shop_release", 1500)]


async def test_payment_after_cancellation_is_refunded(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s)
    assert await s.shop.expire_pending_orders(s.shop.now() + datetime.timedelta(hours=1)) == 1
    await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", {"outcome": "paid"}, token=token)
    await s.provider.idle()
    assert await order_status(s, token, order["order_no"]) == "cancelled_by_timeout"
    refund = await s.shop_ctx.db.payment_refunds.find_one({"out_trade_no": trade_no})
    assert refund is not None and (refund["amount"], refund["status"]) == (10_000, "refunded")
    trade = await s.shop_ctx.db.sandbox_trades.find_one({"_id": trade_no})
    assert trade is not None and trade["refunded"] == 10_000 and trade["notified"] is True
    stored = (await s.call("GET", f"/api/v1/shop/orders/{order['order_no']}", token=token)).json
    assert stored["late_payment"]["amount"] == 10_000
    assert (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"] == []


async def test_refunds_are_idempotent_and_bounded(shop_server: ShopServer) -> None:
    s = shop_server
    url = await s.provider.create_payment(PaymentRequest("dep-41", 3000, "Deposit"))
    assert url.endswith("/sandbox/pay/dep-41")
    with pytest.raises(RefundRefused):
        await s.provider.refund("dep-41", 100, "too-early")  # not paid yet
    seen: list[tuple[str, int]] = []

    async def deposit_paid(out_trade_no: str, amount: int) -> None:
        seen.append((out_trade_no, amount))

    s.router.register("dep", deposit_paid)
    await s.provider.settle("dep-41", "paid")  # the payer's press (the owner-only API is tested apart)
    await s.provider.idle()
    assert seen == [("dep-41", 3000)]
    await s.provider.refund("dep-41", 1000, "ref-a")
    await s.provider.refund("dep-41", 1000, "ref-a")  # same ref: once
    with pytest.raises(RefundRefused):
        await s.provider.refund("dep-41", 999, "ref-a")  # same ref, other terms
    await s.provider.refund("dep-41", 2000, "ref-b")
    with pytest.raises(RefundRefused):
        await s.provider.refund("dep-41", 1, "ref-c")  # nothing left to refund
    payment = await s.shop_ctx.db.payments.find_one({"_id": "dep-41"})
    assert payment is not None and payment["refunded"] == 3000


async def test_sandbox_page_shows_the_payment(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, _ = await pending_order(s)
    page = await s.call("GET", f"/sandbox/pay/{trade_no}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    # The page is static (it reveals nothing); the owner's API call shows the payment.
    shown = await s.call("GET", f"/api/v1/sandbox/payments/{trade_no}", token=token)
    assert shown.json["amount_yuan"] == "100.00" and shown.json["status"] == "WAIT_BUYER_PAY"
    assert (await s.call("GET", "/api/v1/sandbox/payments/shop-0", token=token)).status == 404
    user_id = (await s.call("GET", "/api/v1/me", token=token)).json["user_id"]
    await s.provider.create_payment(PaymentRequest("ord-5-1", 700, "Order 5", user_id))  # older shape
    older = await s.call("GET", "/api/v1/sandbox/payments/ord-5-1", token=token)
    assert older.json["amount_yuan"] == "7.00"
    bad = await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", raw=b"outcome=maybe", token=token)
    assert (bad.status, bad.code) == (400, "VALIDATION")


async def test_a_deposit_paid_through_the_provider_lets_the_bidder_bid(shop_server: ShopServer) -> None:
    """Deposits use the same signed provider: pending until the verified notification, then live."""
    s = shop_server
    api = s.api
    session_id = await api.create_session(deposit=30_000)
    user_id, token = await api.register()
    answer = await s.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": None, "pay_with": "provider"},
        token=token,
    )
    assert answer.status == 201 and answer.json["status"] == "pending"
    deposit_id = answer.json["id"]
    trade_no = answer.json["pay_url"].rsplit("/", 1)[1]  # random now: the pay URL names it
    assert trade_no.startswith("dep-") and str(deposit_id) not in trade_no
    session = api.engine.book.sessions[session_id]
    assert user_id not in session.depositors
    await s.provider.settle(trade_no, "paid")

    async def deposit_paid() -> bool:
        listed = (await s.call("GET", "/api/v1/deposits", token=token)).json["items"]
        return listed[0]["status"] == "paid" and user_id in session.depositors

    await s.eventually(deposit_paid)
    # A replayed notification changes nothing; the balance was never touched.
    me = (await s.call("GET", "/api/v1/me", token=token)).json
    assert me["balance"] == 0
