"""The course shop over HTTP against a real listening app (real MongoDB, real Redis, the sandbox
payment provider posting real signed notifications back to the app).

`running_shop` serves `make_app(ctx)` plus `payment_routes(ctx)` and `shop_routes(ctx)` on a port
of its own, over the context of the `app_server` fixture (tests/gateway/conftest.py).
"""

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import pathlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import tornado.httpserver
import tornado.netutil
import tornado.simple_httpclient
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from composition.app import make_app
from engine.settle.ports import PaymentRouter
from gateway import rest_community
from gateway.rest_shop import shop_routes, start_shop
from payments.handlers import payment_routes
from payments.records import ensure_payment_indexes
from payments.sandbox import SandboxProvider
from persistence.shop import ensure_shop_indexes
from shop.model import CART_LIMIT
from shop.service import ShopService
from tests.gateway.conftest import Answer, AppServer
from web.context import AppContext

APP_ID = "gavel-test-app"
_names = itertools.count(1)


@functools.cache
def key_pair() -> tuple[bytes, bytes]:
    """One RSA key pair (PEM private, PEM public) per test process: generation costs ~50 ms."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@dataclasses.dataclass
class ShopServer:
    api: AppServer  # `call`, `register`, `admin_token`, `credit` against this server
    shop: ShopService
    provider: SandboxProvider
    router: PaymentRouter
    shop_ctx: AppContext

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, **kw: Any
    ) -> Answer:
        if body is None:
            return await self.api.call(method, path, token=token, **kw)
        return await self.api.call(method, path, body, token=token, **kw)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = await self.call(method, path, body, token=await self.api.admin_token())
        assert answer.status in (200, 201, 204), (path, answer.status, answer.body)
        return answer.json if answer.body else None

    async def category(self) -> int:
        top = await self.admin("POST", "/api/v1/admin/shop/categories", {"name": f"Top {next(_names)}"})
        sub = await self.admin(
            "POST", "/api/v1/admin/shop/categories", {"name": f"Sub {next(_names)}", "parent_id": top["id"]}
        )
        return int(sub["id"])

    async def course(self, sub_category_id: int, *prices: int, **fields: Any) -> tuple[int, list[int]]:
        body = {
            "name": f"Course {next(_names)}",
            "sub_category_id": sub_category_id,
            "course_type": "paid",
            **fields,
        }
        course = await self.admin("POST", "/api/v1/admin/shop/courses", body)
        policies = [
            await self.admin(
                "POST",
                f"/api/v1/admin/shop/courses/{course['id']}/policies",
                {"valid_days": 30 * (i + 1), "price": price},
            )
            for i, price in enumerate(prices)
        ]
        return int(course["id"]), [int(p["id"]) for p in policies]

    async def coupon(self, user_id: int, **terms: Any) -> int:
        template = await self.admin("POST", "/api/v1/admin/shop/coupons", {"name": "coupon", **terms})
        granted = await self.admin(
            "POST", f"/api/v1/admin/shop/coupons/{template['id']}/grant", {"user_id": user_id}
        )
        return int(granted["id"])

    async def eventually(self, check: Callable[[], Awaitable[bool]], attempts: int = 250) -> None:
        """Poll `check` every 20 ms (5 s at most by default)."""
        for _ in range(attempts):
            if await check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def running_shop(
    app_server: AppServer, *, retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2)
) -> AsyncIterator[ShopServer]:
    ctx = app_server.ctx
    await ensure_shop_indexes(ctx.db)
    await ensure_payment_indexes(ctx.db)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    router = PaymentRouter()
    http = tornado.simple_httpclient.SimpleAsyncHTTPClient(force_instance=True)
    private, public = key_pair()
    provider = SandboxProvider(
        base_url,
        APP_ID,
        private,
        public,
        router,
        http,
        db=ctx.db,
        retry_delays=retry_delays,
        request_timeout=5,
    )
    ctx.payment_provider = provider
    ctx.shop = None
    app = make_app(ctx)
    app.add_handlers(r".*", payment_routes(ctx) + shop_routes(ctx))
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield ShopServer(dataclasses.replace(app_server, base_url=base_url), ctx.shop, provider, router, ctx)
    finally:
        await provider.aclose()
        server.stop()
        await server.close_all_connections()
        http.close()


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


# -- the seed's flow, end to end ----------------------------------------------------------------------
async def test_seed_cart_flow_end_to_end(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    teacher = await s.admin("POST", "/api/v1/admin/shop/teachers", {"name": "Alex", "title": "Senior"})
    python_id, (month, quarter) = await s.course(sub, 9900, 19_900, level="beginner", order=1)
    go_id, (go_month,) = await s.course(sub, 9990, order=2)
    await s.admin(
        "PUT",
        f"/api/v1/admin/shop/courses/{python_id}/detail",
        {"hours": 40, "slogan": "From zero", "teacher_ids": [teacher["id"]], "recommend_course_ids": [go_id]},
    )
    chapter = await s.admin(
        "POST", f"/api/v1/admin/shop/courses/{python_id}/chapters", {"chapter": 1, "name": "Start"}
    )
    for order, free in ((1, True), (2, False)):
        await s.admin(
            "POST",
            f"/api/v1/admin/shop/chapters/{chapter['id']}/sections",
            {"name": f"Lesson {order}", "order": order, "link": f"vid-{order}", "free_trial": free},
        )
    await s.admin(
        "POST",
        "/api/v1/admin/shop/faqs",
        {"target": "course", "target_id": python_id, "question": "Refunds?", "answer": "Within 7 days."},
    )

    # Browse (no login needed).
    listing = (await s.call("GET", f"/api/v1/courses?category={sub}&page=1&page_size=1")).json
    assert listing["total"] == 2 and [c["id"] for c in listing["items"]] == [python_id]
    assert [p["price"] for p in listing["items"][0]["policies"]] == [9900, 19_900]
    page = (await s.call("GET", f"/api/v1/courses/{python_id}")).json
    assert page["detail"]["teachers"][0]["name"] == "Alex" and page["faqs"][0]["question"] == "Refunds?"
    assert page["detail"]["recommended"][0]["id"] == go_id
    chapters = (await s.call("GET", f"/api/v1/courses/{python_id}/chapters")).json["items"]
    # No link in the outline (content goes through a signed link); the free trial is not locked.
    assert [(sec.get("link"), sec["locked"]) for sec in chapters[0]["sections"]] == [
        (None, False),
        (None, True),
    ]

    # Cart: add, change the policy, add another, view totals, remove.
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 5000)
    added = await s.call(
        "POST", "/api/v1/cart", {"course_id": python_id, "price_policy_id": month}, token=token
    )
    assert added.status == 201 and added.json["total"] == 9900
    changed = await s.call(
        "PATCH", "/api/v1/cart", {"course_id": python_id, "price_policy_id": quarter}, token=token
    )
    assert changed.json["items"][0]["price"] == 19_900
    await s.call("POST", "/api/v1/cart", {"course_id": go_id, "price_policy_id": go_month}, token=token)
    extra_id, (extra_policy,) = await s.course(sub, 100)
    await s.call(
        "POST", "/api/v1/cart", {"course_id": extra_id, "price_policy_id": extra_policy}, token=token
    )
    removed = await s.call("DELETE", f"/api/v1/cart/{extra_id}", token=token)
    cart = (await s.call("GET", "/api/v1/cart", token=token)).json
    assert removed.status == 200 and cart["count"] == 2 and cart["total"] == 19_900 + 9990

    # Checkout with a course coupon and a global coupon; then pay part with the balance.
    percent = await s.coupon(user_id, kind="percent", off_percent=15, course_id=python_id)
    threshold = await s.coupon(user_id, kind="threshold", value=2000, minimum=9900, course_id=go_id)
    global_flat = await s.coupon(user_id, kind="flat", value=1000)
    created = await s.call("POST", "/api/v1/checkout", {"course_ids": [python_id, go_id]}, token=token)
    assert created.status == 201, created.body
    assert [[c["id"] for c in line["coupons"]] for line in created.json["lines"]] == [[percent], [threshold]]
    assert [c["id"] for c in created.json["global_coupons"]] == [global_flat]
    for course_id, coupon_id in ((python_id, percent), (go_id, threshold), (None, global_flat)):
        chosen = await s.call(
            "PATCH", "/api/v1/checkout", {"course_id": course_id, "coupon_id": coupon_id}, token=token
        )
        assert chosen.status == 200, chosen.body
    view = (await s.call("GET", "/api/v1/checkout", token=token)).json
    # 19900 - 2985 = 16915; 9990 - 2000 = 7990; subtotal 24905; - 1000 = 23905; balance 5000 -> 18905.
    assert view["totals"] == {
        "original_total": 29_890,
        "course_discount": 4985,
        "subtotal": 24_905,
        "global_discount": 1000,
        "payable": 23_905,
        "balance_usable": 5000,
        "to_pay_after_balance": 18_905,
    }
    assert view["balance"] == 5000 and 0 < view["expires_in"] <= 1800

    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": 5000, "idempotency_key": "flow-1"}, token=token
    )
    assert paid.status == 201, paid.body
    order = paid.json["order"]
    assert (order["status"], order["balance_used"], order["to_pay"]) == ("pending", 5000, 18_905)
    assert [ln["paid_price"] for ln in order["lines"]] == [16_915 - 679, 7990 - 321]  # 1000 shared 679/321
    pay_url = paid.json["pay_url"]
    trade_no = pay_url.rsplit("/", 1)[1]  # random now (payments/trade_numbers.py), not the order_no
    assert pay_url.endswith(f"/sandbox/pay/{trade_no}") and order["order_no"] not in trade_no
    assert (await s.call("GET", "/api/v1/cart", token=token)).json["count"] == 0
    again = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": 5000, "idempotency_key": "flow-1"}, token=token
    )
    assert again.status == 200 and again.json["order"]["order_no"] == order["order_no"]

    # The payer's side: the sandbox page, then Pay; the signed notification marks the order paid.
    path = pay_url.removeprefix(s.api.base_url)
    page_answer = await s.call("GET", path)
    assert page_answer.status == 200 and b"SANDBOX" in page_answer.body and b"Pay" in page_answer.body
    api_path = f"/api/v1/sandbox/payments/{trade_no}"  # the page's script talks to it as the payer
    assert (await s.call("GET", api_path, token=token)).json["amount_yuan"] == "189.05"
    pressed = await s.call(
        "POST",
        api_path,
        raw=b"outcome=paid",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        token=token,
    )
    assert pressed.status == 200 and pressed.json["status"] == "TRADE_SUCCESS"

    async def order_paid() -> bool:
        answer = await s.call("GET", f"/api/v1/shop/orders/{order['order_no']}", token=token)
        return bool(answer.json["status"] == "paid")

    await s.eventually(order_paid)
    enrolments = (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]
    assert sorted(e["course_id"] for e in enrolments) == sorted([python_id, go_id])
    coupons = (await s.call("GET", "/api/v1/shop/coupons?status=used", token=token)).json["items"]
    assert sorted(c["id"] for c in coupons) == sorted([percent, threshold, global_flat])
    returned = await s.call("GET", f"/api/v1/payments/return?out_trade_no={trade_no}")
    assert returned.json == {"out_trade_no": trade_no, "status": "paid"}
    me = (await s.call("GET", "/api/v1/me", token=token)).json
    assert me["balance"] == 0


async def test_fully_covered_order_is_paid_at_once(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 3000)
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 2500)
    coupon = await s.coupon(user_id, kind="flat", value=500, course_id=course_id)
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    await s.call("PATCH", "/api/v1/checkout", {"course_id": course_id, "coupon_id": coupon}, token=token)
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": 9999, "idempotency_key": "all"}, token=token
    )
    assert paid.status == 201 and paid.json["pay_url"] is None
    assert (paid.json["order"]["status"], paid.json["order"]["balance_used"]) == ("paid", 2500)
    assert len((await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]) == 1
    orders = (await s.call("GET", "/api/v1/shop/orders", token=token)).json
    assert orders["total"] == 1 and orders["items"][0]["status"] == "paid"


# -- rules and refusals -----------------------------------------------------------------------------------
async def test_unavailable_items_and_cart_limit(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, (policy, other_policy) = await s.course(sub, 1000, 2000)
    foreign_id, (foreign_policy,) = await s.course(sub, 500)
    offline_id, (offline_policy,) = await s.course(sub, 500, status="offline")
    _, token = await s.api.register()
    mismatch = await s.call(
        "POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": foreign_policy}, token=token
    )
    assert (mismatch.status, mismatch.code) == (400, "INVALID_POLICY")
    offline = await s.call(
        "POST", "/api/v1/cart", {"course_id": offline_id, "price_policy_id": offline_policy}, token=token
    )
    assert (offline.status, offline.code) == (409, "COURSE_NOT_ON_SALE")
    assert (await s.call("GET", f"/api/v1/courses/{offline_id}")).status == 404

    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    await s.call(
        "POST", "/api/v1/cart", {"course_id": foreign_id, "price_policy_id": foreign_policy}, token=token
    )
    await s.admin("PATCH", f"/api/v1/admin/shop/courses/{foreign_id}", {"status": "offline"})
    await s.admin("DELETE", f"/api/v1/admin/shop/policies/{policy}")
    cart = (await s.call("GET", "/api/v1/cart", token=token)).json
    assert {i["course_id"]: i["reason"] for i in cart["items"]} == {
        course_id: "policy_removed",
        foreign_id: "offline",
    }
    assert cart["total"] == 0 and cart["unavailable"] == 2
    refused = await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    assert (refused.status, refused.code) == (409, "CART_ITEM_UNAVAILABLE")
    missing = await s.call("POST", "/api/v1/checkout", {"course_ids": [999_999]}, token=token)
    assert (missing.status, missing.code) == (409, "NOT_IN_CART")
    # Choosing a remaining policy makes the line available again.
    fixed = await s.call(
        "PATCH", "/api/v1/cart", {"course_id": course_id, "price_policy_id": other_policy}, token=token
    )
    assert fixed.json["items"][0]["available"] is True

    # 50 at most: fill the cart directly, then the 51st over HTTP.
    user_id = (await s.call("GET", "/api/v1/me", token=token)).json["user_id"]
    for _ in range(CART_LIMIT - 2):
        extra = await s.shop.create_course(
            {
                "name": f"Bulk {next(_names)}",
                "sub_category_id": sub,
                "course_type": "paid",
                "status": "online",
                "order": 0,
            }
        )
        extra_policy = await s.shop.add_policy("course", extra["_id"], 30, 100)
        await s.shop.cart_add(user_id, extra["_id"], extra_policy["_id"])
    one_more, (one_more_policy,) = await s.course(sub, 100)
    full = await s.call(
        "POST", "/api/v1/cart", {"course_id": one_more, "price_policy_id": one_more_policy}, token=token
    )
    assert (full.status, full.code) == (409, "CART_FULL")


async def test_bad_input_is_400_never_500(shop_server: ShopServer) -> None:
    s = shop_server
    _, token = await s.api.register()
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/api/v1/cart", {"course_id": "1", "price_policy_id": 1}),
        ("POST", "/api/v1/cart", {"course_id": 1.0, "price_policy_id": 1}),
        ("POST", "/api/v1/cart", {"course_id": True, "price_policy_id": 1}),
        ("POST", "/api/v1/cart", {"course_id": 1}),
        ("POST", "/api/v1/cart", {"course_id": 1, "price_policy_id": 1, "x": 1}),
        ("POST", "/api/v1/cart", [1, 2]),
        ("DELETE", "/api/v1/cart", {"course_id": -1}),
        ("POST", "/api/v1/checkout", {"course_ids": []}),
        ("POST", "/api/v1/checkout", {"course_ids": [1, 1]}),
        ("POST", "/api/v1/checkout", {"course_ids": ["1"]}),
        ("POST", "/api/v1/checkout", {"course_ids": list(range(1, 60))}),
        ("PATCH", "/api/v1/checkout", {"coupon_id": 1}),
        ("PATCH", "/api/v1/checkout", {"course_id": None, "coupon_id": "x"}),
        ("POST", "/api/v1/checkout/pay", {"balance": -1, "idempotency_key": "k"}),
        ("POST", "/api/v1/checkout/pay", {"balance": 0}),
        ("POST", "/api/v1/checkout/pay", {"balance": 0, "idempotency_key": "has space"}),
        ("POST", "/api/v1/checkout/pay", {"balance": 2**60, "idempotency_key": "k"}),
        ("GET", "/api/v1/courses?page=0", None),
        ("GET", "/api/v1/courses?category=abc", None),
        ("GET", "/api/v1/shop/coupons?status=lost", None),
    ]
    for method, path, body in cases:
        answer = await s.call(method, path, body, token=token)
        assert answer.status == 400 and answer.code == "VALIDATION", (
            method,
            path,
            body,
            answer.status,
            answer.body,
        )
    broken = await s.call("POST", "/api/v1/cart", token=token, raw=b"{not json")
    assert (broken.status, broken.code) == (400, "INVALID_JSON")
    assert (await s.call("GET", "/api/v1/checkout", token=token)).code == "CHECKOUT_MISSING"
    assert (await s.call("GET", "/api/v1/courses/abc")).status == 404
    assert (await s.call("GET", "/api/v1/shop/orders/123", token=token)).status == 404


async def test_auth_and_admin_guard(shop_server: ShopServer) -> None:
    s = shop_server
    _, token = await s.api.register()
    assert (await s.call("GET", "/api/v1/cart")).status == 401
    assert (
        await s.call("POST", "/api/v1/checkout/pay", {"balance": 0, "idempotency_key": "k"})
    ).status == 401
    user_try = await s.call("POST", "/api/v1/admin/shop/categories", {"name": "x"}, token=token)
    assert (user_try.status, user_try.code) == (403, "FORBIDDEN")
    assert (await s.call("POST", "/api/v1/admin/shop/categories", {"name": "x"})).status == 401
    bad_coupon = await s.call(
        "POST",
        "/api/v1/admin/shop/coupons",
        {"name": "c", "kind": "percent", "off_percent": 101},
        token=await s.api.admin_token(),
    )
    assert (bad_coupon.status, bad_coupon.code) == (400, "VALIDATION")
    degree = await s.call(
        "POST",
        "/api/v1/admin/shop/courses",
        {"name": "Module", "sub_category_id": await s.category(), "course_type": "degree"},
        token=await s.api.admin_token(),
    )
    assert (degree.status, degree.code) == (400, "VALIDATION")  # a degree module needs its degree course


async def test_degree_course_with_scholarships_and_policies(shop_server: ShopServer) -> None:
    s = shop_server
    degree = await s.admin(
        "POST",
        "/api/v1/admin/shop/degree-courses",
        {"name": "Python degree", "scholarships": [{"time_percent": 80, "value": 20_000}]},
    )
    await s.admin(
        "POST",
        f"/api/v1/admin/shop/degree-courses/{degree['id']}/policies",
        {"valid_days": 150, "price": 1_000_000},
    )
    module_id, _ = await s.course(await s.category(), course_type="degree", degree_course_id=degree["id"])
    page = (await s.call("GET", f"/api/v1/degree-courses/{degree['id']}")).json
    assert page["mentor_fee"] == 15_000 and page["scholarships"] == [{"time_percent": 80, "value": 20_000}]
    assert page["policies"][0]["price"] == 1_000_000 and [m["id"] for m in page["modules"]] == [module_id]


async def test_redis_down_answers_503_unavailable(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 1000)
    _, token = await s.api.register()
    healthy = s.shop.carts.redis
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    s.shop.carts.redis = dead
    try:
        for method, path, body in (
            ("GET", "/api/v1/cart", None),
            ("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}),
            ("POST", "/api/v1/checkout", {"course_ids": [course_id]}),
            ("GET", "/api/v1/checkout", None),
            ("POST", "/api/v1/checkout/pay", {"balance": 0, "idempotency_key": "k"}),
        ):
            answer = await s.call(method, path, body, token=token)
            assert (answer.status, answer.code) == (503, "UNAVAILABLE"), (path, answer.body)
    finally:
        s.shop.carts.redis = healthy
        await dead.aclose()
    assert (await s.call("GET", "/api/v1/cart", token=token)).json["count"] == 0


async def test_concurrent_pays_of_one_coupon_one_wins(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 10_000)
    user_id, token = await s.api.register()
    coupon = await s.coupon(user_id, kind="flat", value=3000)
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    await s.call("PATCH", "/api/v1/checkout", {"course_id": None, "coupon_id": coupon}, token=token)
    answers = await asyncio.gather(
        *(
            s.call("POST", "/api/v1/checkout/pay", {"balance": 0, "idempotency_key": f"tab-{i}"}, token=token)
            for i in range(3)
        )
    )
    assert sum(a.status == 201 for a in answers) == 1, [a.body for a in answers]
    # The others lost the coupon, the checkout (one order per checkout), or found it already gone.
    refusals = {(a.status, a.code) for a in answers if a.status != 201}
    assert refusals <= {
        (409, "COUPON_UNAVAILABLE"),
        (409, "CHECKOUT_ALREADY_ORDERED"),
        (404, "CHECKOUT_MISSING"),
    }
    held = (await s.call("GET", "/api/v1/shop/coupons?status=held", token=token)).json["items"]
    assert [c["id"] for c in held] == [coupon]


# -- docs/openapi-shop.yaml and the routes agree (both directions) ------------------------------------
SPEC = pathlib.Path(__file__).parents[2] / "docs" / "openapi-shop.yaml"
METHODS = ("get", "post", "patch", "put", "delete")
SAMPLES = {"out_trade_no": "shop-1", "order_no": "1", "action": "hide"}
SAMPLES |= {"enrolment_id": "1:1", "file_id": "0" * 24, "event": "suspend"}  # the degree path


def documented_paths() -> dict[str, set[str]]:
    """{path: methods} from the `paths:` block (same reading as tests/gateway/test_rest_openapi.py)."""
    paths: dict[str, set[str]] = {}
    current, in_paths = None, False
    for line in SPEC.read_text().splitlines():
        if re.fullmatch(r"\S.*:", line):
            in_paths = line == "paths:"
            continue
        if in_paths and (match := re.fullmatch(r"  (/\S*):", line)):
            current = match.group(1)
            paths[current] = set()
        elif in_paths and current and (match := re.fullmatch(rf"    ({'|'.join(METHODS)}):", line)):
            paths[current].add(match.group(1))
    return paths


def test_openapi_fragment_matches_the_routes(shop_server: ShopServer) -> None:
    ctx = shop_server.shop_ctx
    # The shop's admin review moderation is served beside them (gateway/app.py, with the actions).
    routes = payment_routes(ctx) + shop_routes(ctx) + [(p, h, {}) for p, h in rest_community.ADMIN_ROUTES]
    documented = documented_paths()
    served: set[str] = set()
    for path, methods in documented.items():
        url = re.sub(r"\{([^}]+)\}", lambda m: SAMPLES.get(m.group(1), "1"), path)
        matching = [(pattern, handler) for pattern, handler, _ in routes if re.fullmatch(pattern, url)]
        assert len(matching) == 1, path
        pattern, handler = matching[0]
        served.add(pattern)
        implemented = {
            m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)
        }
        assert methods == implemented, path
    assert served == {pattern for pattern, _, _ in routes}  # nothing served is undocumented


async def test_start_shop_runs_the_sweeper(shop_server: ShopServer) -> None:
    s = shop_server
    s.shop.pending_timeout_seconds = 0  # every pending order is overdue at once
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 1000)
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 400)
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    paid = await s.call("POST", "/api/v1/checkout/pay", {"balance": 400, "idempotency_key": "k"}, token=token)
    order_no = paid.json["order"]["order_no"]
    tasks = await start_shop(s.shop_ctx, sweep_interval_seconds=0.05)
    try:

        async def cancelled() -> bool:
            answer = await s.call("GET", f"/api/v1/shop/orders/{order_no}", token=token)
            return bool(answer.json["status"] == "cancelled_by_timeout")

        await s.eventually(cancelled)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (await s.call("GET", "/api/v1/me", token=token)).json["balance"] == 400
