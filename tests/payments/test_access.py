"""Who may see and settle a payment: the sandbox's pages and API, and the payment status.

Over a real listening app with the sandbox provider wired (real MongoDB and Redis).
"""

from collections.abc import AsyncIterator

import pytest

from tests.gateway.conftest import AppServer
from tests.gateway.test_payments import pending_order
from tests.gateway.test_shop_api import ShopServer, running_shop


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


def sandbox_api(trade_no: str) -> str:
    return f"/api/v1/sandbox/payments/{trade_no}"


async def test_anonymous_and_other_users_cannot_see_or_pay_a_sandbox_payment(shop_server: ShopServer) -> None:
    s = shop_server
    owner_token, trade_no, order = await pending_order(s)
    _, stranger = await s.api.register()
    admin = await s.api.admin_token()

    anonymous = await s.call("POST", sandbox_api(trade_no), {"outcome": "paid"})
    assert (anonymous.status, anonymous.code) == (401, "UNAUTHORIZED")
    assert (await s.call("GET", sandbox_api(trade_no))).status == 401
    # Another user learns nothing: the same 404 as for a number that does not exist.
    other = await s.call("POST", sandbox_api(trade_no), {"outcome": "paid"}, token=stranger)
    missing = await s.call("POST", sandbox_api("shop-" + "a" * 26), {"outcome": "paid"}, token=stranger)
    assert (other.status, other.json) == (missing.status, missing.json) == (404, other.json)
    assert (await s.call("GET", sandbox_api(trade_no), token=stranger)).status == 404
    # An admin may look, but paying is the payer's own act.
    looked = await s.call("GET", sandbox_api(trade_no), token=admin)
    assert looked.status == 200 and looked.json["status"] == "WAIT_BUYER_PAY"
    admin_pays = await s.call("POST", sandbox_api(trade_no), {"outcome": "paid"}, token=admin)
    assert (admin_pays.status, admin_pays.code) == (403, "FORBIDDEN")

    await s.provider.idle()
    trade = await s.shop.db.sandbox_trades.find_one({"_id": trade_no})
    assert trade is not None and trade["status"] == "WAIT_BUYER_PAY"  # nobody but the payer moved it
    view = await s.call("GET", f"/api/v1/shop/orders/{order['order_no']}", token=owner_token)
    assert view.json["status"] == "pending"

    paid = await s.call("POST", sandbox_api(trade_no), {"outcome": "paid"}, token=owner_token)
    assert paid.status == 200 and paid.json["status"] == "TRADE_SUCCESS"
    await s.provider.idle()
    view = await s.call("GET", f"/api/v1/shop/orders/{order['order_no']}", token=owner_token)
    assert view.json["status"] == "paid"


async def test_every_sandbox_page_and_answer_says_it_is_a_sandbox(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, _ = await pending_order(s)
    page = await s.call("GET", f"/sandbox/pay/{trade_no}")
    assert page.status == 200 and page.headers["X-Gavel-Sandbox"] == "1"
    assert b"SANDBOX" in page.body and b"No money moves" in page.body
    script = await s.call("GET", "/sandbox/sandbox-pay.js")
    assert script.status == 200 and script.headers["X-Gavel-Sandbox"] == "1"
    answer = await s.call("GET", sandbox_api(trade_no), token=token)
    assert answer.json["sandbox"] is True and answer.headers["X-Gavel-Sandbox"] == "1"
    refused = await s.call("GET", sandbox_api(trade_no))
    assert refused.status == 401 and refused.headers["X-Gavel-Sandbox"] == "1"


async def test_payment_status_is_for_the_owner_and_admins_only(shop_server: ShopServer) -> None:
    s = shop_server
    owner_token, trade_no, _ = await pending_order(s)
    _, stranger = await s.api.register()
    path = f"/api/v1/payments/{trade_no}"

    mine = await s.call("GET", path, token=owner_token)
    assert mine.status == 200
    assert mine.json == {
        "out_trade_no": trade_no,
        "provider": "sandbox",
        "amount": 10_000,
        "status": "pending",
        "refunded": 0,
    }
    admin = await s.call("GET", path, token=await s.api.admin_token())
    assert admin.status == 200 and admin.json["status"] == "pending"
    assert (await s.call("GET", path)).status == 401
    other = await s.call("GET", path, token=stranger)
    missing = await s.call("GET", "/api/v1/payments/shop-" + "b" * 26, token=stranger)
    assert other.status == missing.status == 404 and other.json == missing.json
