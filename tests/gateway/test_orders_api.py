"""Orders, checkout, paying, auction coupons and addresses over real HTTP, with the real engine,
the real write-behind archiver feeding the settlement outbox, and the real embedded MongoDB.

The payment provider is an in-memory fake of the `PaymentProvider` port; its verified notification
is delivered the way the notify endpoint will: through the `PaymentRouter`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.simple_httpclient

from composition.app import make_app
from engine.book.errors import RejectCode
from engine.book.states import LotState
from engine.commands import PlaceBid
from engine.settle.ports import PaymentRequest, PaymentRouter
from engine.settle.rules import DEFAULT_PAYMENT_WINDOW_MS
from gateway.rest_orders import Settlement, build_settlement, order_routes, start_settlement
from payments.trade_numbers import is_random_trade_no
from persistence.archive import BidArchiver
from persistence.mongo import iso_from_ms
from persistence.settlement import ensure_settlement_indexes
from tests.gateway.conftest import HOUR_MS, AppServer

DAY = DEFAULT_PAYMENT_WINDOW_MS


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.payments: list[PaymentRequest] = []
        self.refunds: dict[str, tuple[str, int]] = {}

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments.append(request)
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        self.refunds.setdefault(refund_ref, (out_trade_no, amount))


@dataclasses.dataclass
class Rig:
    api: AppServer  # the shared fixture's helpers, pointed at an app that also has the order routes
    settlement: Settlement
    archiver: BidArchiver
    provider: FakeProvider
    router: PaymentRouter

    async def settle(self) -> None:
        """Let the archiver write what the engine committed, then run a settlement round."""
        assert await self.archiver.wait_caught_up(self.api.engine.last_seq, timeout=10)
        await self.settlement.worker.run_once()

    async def user(self, credit: int = 0) -> tuple[int, str]:
        user_id, token = await self.api.register()
        if credit:
            await self.api.credit(user_id, credit)
        return user_id, token

    async def deposit(self, token: str, session_id: int, lot_id: int | None) -> dict[str, Any]:
        body = {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"}
        answer = await self.api.call("POST", "/api/v1/deposits", body, token=token)
        assert answer.status == 201, answer.body
        return dict(answer.json)

    async def bid(self, lot_id: int, user_id: int, price: int) -> None:
        outcome = await self.api.engine.execute(PlaceBid(lot_id, user_id, price, f"bid-{user_id}-{price}"))
        assert outcome.ok, outcome

    async def close(self, lot_id: int) -> None:
        answer = await self.api.call(
            "POST", f"/api/v1/admin/lots/{lot_id}/close", token=await self.api.admin_token()
        )
        assert answer.status == 200, answer.body

    async def address(self, token: str) -> int:
        body = {"name": "Zhang Da", "phone": "138 0000 0000", "province": "Shanxi", "detail": "1 Fuxing Rd"}
        answer = await self.api.call("POST", "/api/v1/addresses", body, token=token)
        assert answer.status == 201, answer.body
        return int(answer.json["id"])

    async def coupon(self, session_id: int, *, amount: int = 1_000, quantity: int = 5) -> int:
        now = self.api.clock.now_ms()
        body = {
            "title": "Opening day",
            "amount": amount,
            "quantity": quantity,
            "claim_start": iso_from_ms(now - HOUR_MS),
            "claim_end": iso_from_ms(now + 10 * DAY),
        }
        answer = await self.api.call(
            "POST", f"/api/v1/admin/sessions/{session_id}/coupons", body, token=await self.api.admin_token()
        )
        assert answer.status == 201, answer.body
        return int(answer.json["id"])

    async def balance(self, token: str) -> int:
        return int((await self.api.call("GET", "/api/v1/me", token=token)).json["balance"])

    async def won_lot(self, *, lot_deposit: int = 1_000) -> dict[str, Any]:
        """A session with one lot: the winner bids 11 000 over the loser's 10 000; closed, settled."""
        session_id = await self.api.create_session()
        lot_id = await self.api.create_lot(session_id, deposit=lot_deposit)
        other_lot = await self.api.create_lot(session_id, deposit=0)
        winner, winner_token = await self.user(20_000)
        loser, loser_token = await self.user(5_000)
        await self.deposit(winner_token, session_id, lot_id)
        await self.deposit(loser_token, session_id, lot_id)
        await self.api.start_bidding(session_id)
        await self.bid(lot_id, loser, 10_000)
        await self.bid(lot_id, winner, 11_000)
        await self.close(lot_id)
        await self.settle()
        orders = await self.api.call("GET", "/api/v1/orders", token=winner_token)
        [order] = orders.json["groups"][0]["items"]
        return {
            "session_id": session_id,
            "lot_id": lot_id,
            "other_lot": other_lot,
            "winner": winner,
            "winner_token": winner_token,
            "loser": loser,
            "loser_token": loser_token,
            "order": order,
        }


@pytest.fixture
async def rig(app_server: AppServer) -> AsyncIterator[Rig]:
    ctx = app_server.ctx
    await ensure_settlement_indexes(ctx.db)
    provider = FakeProvider()
    router = PaymentRouter()
    settlement = build_settlement(ctx, provider=provider, router=router, deadline_ms=DAY, interval_s=0.02)
    archiver = BidArchiver(ctx.db, interval=0.001)
    ctx.engine.listeners.append(archiver.on_batch)
    archiver.start()
    app = make_app(ctx)
    app.add_handlers(r".*", order_routes(ctx))
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    api = dataclasses.replace(app_server, base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        yield Rig(api, settlement, archiver, provider, router)
    finally:
        server.stop()
        await server.close_all_connections()
        await archiver.stop(flush_timeout=5)


# -- the order list, checkout and paying -------------------------------------------------------------
async def test_the_winner_sees_checks_out_and_pays_their_order(rig: Rig) -> None:
    won = await rig.won_lot()
    token, order = won["winner_token"], won["order"]
    order_id = order["id"]
    assert (order["price"], order["status"], order["status_name"], order["lot_id"]) == (
        11_000,
        1,
        "unpaid",
        won["lot_id"],
    )
    assert order["deadline_ms"] == order["closed_at_ms"] + DAY
    assert order["title"] == "Blue and white vase"
    # The loser's per-lot deposit is back; the winner's is held.
    assert await rig.balance(won["loser_token"]) == 5_000
    assert await rig.balance(token) == 19_000

    listing = (await rig.api.call("GET", "/api/v1/orders", token=token)).json
    assert [(g["status"], g["key"], g["text"], g["count"]) for g in listing["groups"]] == [
        (1, "unpaid", "未支付", 1),
        (2, "awaiting_delivery", "待收货", 0),
        (3, "completed", "已完成", 0),
        (4, "overdue", "逾期未支付", 0),
    ]

    coupon_id = await rig.coupon(won["session_id"], amount=1_000)
    claimed = await rig.api.call("POST", f"/api/v1/coupons/{coupon_id}/claim", token=token)
    assert claimed.status == 201, claimed.body
    user_coupon = claimed.json["id"]
    again = await rig.api.call("POST", f"/api/v1/coupons/{coupon_id}/claim", token=token)
    assert (again.status, again.code) == (409, "COUPON_ALREADY_CLAIMED")

    checkout = await rig.api.call("GET", f"/api/v1/orders/{order_id}/checkout", token=token)
    assert checkout.status == 200, checkout.body
    view = checkout.json
    assert view["price"] == 11_000 and view["payable"] is True
    assert view["deposit"] == {
        "id": view["deposit"]["id"],
        "kind": "lot",
        "amount": 1_000,
        "remaining": 1_000,
        "pay_with": "balance",
    }
    assert [c["id"] for c in view["coupons"]] == [user_coupon]
    assert view["balance"] == 19_000
    assert (view["quote"]["deposit_deducted"], view["quote"]["to_pay"]) == (1_000, 10_000)
    with_coupon = await rig.api.call(
        "GET", f"/api/v1/orders/{order_id}/checkout?coupon_id={user_coupon}", token=token
    )
    assert (with_coupon.json["quote"]["coupon_used"], with_coupon.json["quote"]["to_pay"]) == (1_000, 9_000)

    pay_body = {
        "coupon_id": user_coupon,
        "address_id": None,
        "pay_with": "balance",
        "idempotency_key": "pay-1",
    }
    no_address = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", pay_body, token=token)
    assert (no_address.status, no_address.code) == (400, "ADDRESS_REQUIRED")
    pay_body["address_id"] = await rig.address(token)

    paid = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", pay_body, token=token)
    assert paid.status == 200, paid.body
    answer = paid.json
    assert answer["status"] == "paid" and answer["replayed"] is False
    assert {
        k: answer["split"][k] for k in ("coupon_used", "deposit_deducted", "deposit_refunded", "to_pay")
    } == {
        "coupon_used": 1_000,
        "deposit_deducted": 1_000,
        "deposit_refunded": 0,
        "to_pay": 9_000,
    }
    assert answer["balance"] == 10_000
    assert answer["order"]["status_name"] == "awaiting_delivery"
    assert answer["order"]["paid_amount"] == 10_000
    assert answer["order"]["address"]["province"] == "Shanxi"

    replay = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", pay_body, token=token)
    assert replay.status == 200 and replay.json["replayed"] is True and replay.json["balance"] == 10_000
    other_key = await rig.api.call(
        "POST", f"/api/v1/orders/{order_id}/pay", {**pay_body, "idempotency_key": "pay-2"}, token=token
    )
    assert (other_key.status, other_key.code) == (409, "ORDER_NOT_PAYABLE")

    admin = await rig.api.admin_token()
    early = await rig.api.call("POST", f"/api/v1/admin/orders/{order_id}/complete", token=admin)
    assert (early.status, early.code) == (409, "ILLEGAL_STATE")
    shipped = await rig.api.call(
        "POST", f"/api/v1/admin/orders/{order_id}/ship", {"tracking_no": "SF123"}, token=admin
    )
    assert shipped.status == 200 and shipped.json["tracking_no"] == "SF123"
    done = await rig.api.call("POST", f"/api/v1/admin/orders/{order_id}/complete", token=admin)
    assert done.status == 200 and done.json["status_name"] == "completed"
    listing = (await rig.api.call("GET", "/api/v1/orders", token=token)).json
    assert [g["count"] for g in listing["groups"]] == [0, 0, 1, 0]
    admin_list = await rig.api.call("GET", "/api/v1/admin/orders?status=3", token=admin)
    assert admin_list.json["total"] == 1 and admin_list.json["items"][0]["user_id"] == won["winner"]
    mine = await rig.api.call("GET", "/api/v1/coupons/mine", token=token)
    assert [(c["status_name"], c["order_id"]) for c in mine.json["items"]] == [("used", order_id)]


async def test_short_balance_is_a_402_and_other_users_orders_do_not_exist(rig: Rig) -> None:
    won = await rig.won_lot()
    order_id = won["order"]["id"]
    stranger = won["loser_token"]
    for method, path in (
        ("GET", f"/api/v1/orders/{order_id}"),
        ("GET", f"/api/v1/orders/{order_id}/checkout"),
    ):
        answer = await rig.api.call(method, path, token=stranger)
        assert (answer.status, answer.code) == (404, "NOT_FOUND")
    body = {
        "coupon_id": None,
        "address_id": await rig.address(stranger),
        "pay_with": "balance",
        "idempotency_key": "k",
    }
    answer = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", body, token=stranger)
    assert (answer.status, answer.code) == (404, "NOT_FOUND")

    # The winner spends their balance elsewhere first: 10 000 due, 9 000 left.
    await rig.api.ctx.accounts.debit(won["winner"], 10_000, "test_spend", "test-spend-1")
    body = {
        "coupon_id": None,
        "address_id": await rig.address(won["winner_token"]),
        "pay_with": "balance",
        "idempotency_key": "k",
    }
    short = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", body, token=won["winner_token"])
    assert (short.status, short.code) == (402, "INSUFFICIENT_BALANCE")


async def test_paying_through_the_provider_waits_for_its_notification(rig: Rig) -> None:
    won = await rig.won_lot()
    token, order_id = won["winner_token"], won["order"]["id"]
    body = {
        "coupon_id": None,
        "address_id": await rig.address(token),
        "pay_with": "provider",
        "idempotency_key": "p1",
    }
    answer = await rig.api.call("POST", f"/api/v1/orders/{order_id}/pay", body, token=token)
    assert answer.status == 202, answer.body
    assert answer.json["status"] == "awaiting_provider"
    trade_no = answer.json["out_trade_no"]  # 128 random bits (payments/trade_numbers.py)
    assert is_random_trade_no(trade_no) and trade_no.startswith("ord-") and answer.json["amount"] == 10_000
    assert answer.json["pay_url"] == f"https://pay.example/{trade_no}"
    assert answer.json["order"]["status_name"] == "unpaid"

    handler = rig.router.handler_for(answer.json["out_trade_no"])
    assert handler is not None
    await handler(answer.json["out_trade_no"], 10_000)
    order = (await rig.api.call("GET", f"/api/v1/orders/{order_id}", token=token)).json
    assert order["status_name"] == "awaiting_delivery"
    assert (order["payment"]["cash_source"], order["payment"]["cash_amount"], order["paid_amount"]) == (
        "provider",
        10_000,
        11_000,
    )
    assert await rig.balance(token) == 19_000  # nothing came from the balance


async def test_the_background_worker_settles_closes_by_itself(rig: Rig) -> None:
    [task] = await start_settlement(rig.api.ctx)
    try:
        session_id = await rig.api.create_session()
        lot_id = await rig.api.create_lot(session_id)
        winner, token = await rig.user()
        await rig.api.start_bidding(session_id)
        await rig.bid(lot_id, winner, 10_000)
        await rig.close(lot_id)
        for _ in range(500):  # polls over HTTP: nothing here to wait on but the answer
            orders = await rig.api.call("GET", "/api/v1/orders", token=token)
            if orders.json["total"]:
                break
            await asyncio.sleep(0.02)
        assert orders.json["groups"][0]["items"][0]["price"] == 10_000
    finally:
        rig.settlement.stop.set()
        await asyncio.wait_for(task, 5)


# -- overdue and non-payers ---------------------------------------------------------------------------
async def test_a_non_payer_forfeits_and_cannot_bid_until_cleared(rig: Rig) -> None:
    won = await rig.won_lot()
    winner, token, order_id = won["winner"], won["winner_token"], won["order"]["id"]
    engine = rig.api.engine

    await rig.api.advance_to(won["order"]["deadline_ms"])
    assert await rig.settlement.worker.sweep_overdue() == 1
    order = (await rig.api.call("GET", f"/api/v1/orders/{order_id}", token=token)).json
    assert (order["status_name"], order["status_text"], order["forfeit"]) == ("overdue", "逾期未支付", 1_000)
    assert engine.book.lots[won["lot_id"]].state is LotState.OVERDUE
    assert winner in engine.book.blocked
    assert await rig.balance(token) == 19_000  # the 1 000 deposit was forfeited

    session_id = await rig.api.create_session()
    lot_id = await rig.api.create_lot(session_id)
    await rig.api.start_bidding(session_id)
    refused = await engine.execute(PlaceBid(lot_id, winner, 10_000, "after-default"))
    assert refused.decision is not None and refused.decision.code is RejectCode.BLOCKED

    cleared_by_bidder = await rig.api.call(
        "POST", f"/api/v1/admin/users/{winner}/clear-non-payer", token=token
    )
    assert cleared_by_bidder.status == 403
    admin = await rig.api.admin_token()
    cleared = await rig.api.call("POST", f"/api/v1/admin/users/{winner}/clear-non-payer", token=admin)
    assert cleared.status == 200 and cleared.json == {"user_id": winner, "non_payer": False, "changed": True}
    assert winner not in engine.book.blocked
    assert (await engine.execute(PlaceBid(lot_id, winner, 10_000, "after-clearing"))).ok
    unknown = await rig.api.call("POST", "/api/v1/admin/users/999999/clear-non-payer", token=admin)
    assert unknown.status == 404


# -- coupons ---------------------------------------------------------------------------------------------
async def test_fifty_concurrent_claimers_over_http_get_exactly_ten(rig: Rig) -> None:
    session_id = await rig.api.create_session()
    coupon_id = await rig.coupon(session_id, amount=500, quantity=10)
    tokens = [(await rig.api.register())[1] for _ in range(50)]
    http = tornado.simple_httpclient.SimpleAsyncHTTPClient(force_instance=True, max_clients=64)
    api = dataclasses.replace(rig.api, http=http)
    try:
        answers = await asyncio.gather(
            *(api.call("POST", f"/api/v1/coupons/{coupon_id}/claim", token=token) for token in tokens)
        )
    finally:
        http.close()
    statuses = sorted((a.status, a.code) for a in answers)
    assert statuses == [(201, None)] * 10 + [(409, "COUPON_SOLD_OUT")] * 40
    [listed] = (await rig.api.call("GET", f"/api/v1/sessions/{session_id}/coupons")).json["items"]
    assert (listed["claimed"], listed["left"], listed["state_name"]) == (10, 0, "claiming")


async def test_coupon_states_follow_the_clock(rig: Rig) -> None:
    session_id = await rig.api.create_session()
    now = rig.api.clock.now_ms()
    body = {
        "title": "Later",
        "amount": 300,
        "quantity": 2,
        "claim_start": iso_from_ms(now + HOUR_MS),
        "claim_end": iso_from_ms(now + 2 * HOUR_MS),
    }
    admin = await rig.api.admin_token()
    created = await rig.api.call("POST", f"/api/v1/admin/sessions/{session_id}/coupons", body, token=admin)
    assert created.status == 201 and created.json["state_name"] == "not_started"
    _user_id, token = await rig.user()
    early = await rig.api.call("POST", f"/api/v1/coupons/{created.json['id']}/claim", token=token)
    assert (early.status, early.code) == (409, "COUPON_NOT_CLAIMABLE")
    rig.api.clock.set(now + HOUR_MS)
    assert (
        await rig.api.call("POST", f"/api/v1/coupons/{created.json['id']}/claim", token=token)
    ).status == 201
    rig.api.clock.set(now + 2 * HOUR_MS)
    [listed] = (await rig.api.call("GET", f"/api/v1/sessions/{session_id}/coupons")).json["items"]
    assert listed["state_name"] == "ended"
    bad = await rig.api.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/coupons", {**body, "amount": 0}, token=admin
    )
    assert (bad.status, bad.code) == (400, "VALIDATION")
    missing = await rig.api.call("POST", "/api/v1/admin/sessions/999999/coupons", body, token=admin)
    assert missing.status == 404
    by_bidder = await rig.api.call("POST", f"/api/v1/admin/sessions/{session_id}/coupons", body, token=token)
    assert by_bidder.status == 403


# -- addresses -----------------------------------------------------------------------------------------
async def test_addresses_crud(rig: Rig) -> None:
    _user_id, token = await rig.user()
    _other_id, other = await rig.user()
    address_id = await rig.address(token)
    listed = (await rig.api.call("GET", "/api/v1/addresses", token=token)).json["items"]
    assert [(a["id"], a["name"], a["phone"], a["city"]) for a in listed] == [
        (address_id, "Zhang Da", "138 0000 0000", "")
    ]
    changed = await rig.api.call("PUT", f"/api/v1/addresses/{address_id}", {"city": "Taiyuan"}, token=token)
    assert changed.status == 200 and (changed.json["city"], changed.json["detail"]) == (
        "Taiyuan",
        "1 Fuxing Rd",
    )
    assert (await rig.api.call("GET", f"/api/v1/addresses/{address_id}", token=other)).status == 404
    assert (
        await rig.api.call("PUT", f"/api/v1/addresses/{address_id}", {"city": "X"}, token=other)
    ).status == 404
    assert (await rig.api.call("DELETE", f"/api/v1/addresses/{address_id}", token=other)).status == 404
    assert (await rig.api.call("DELETE", f"/api/v1/addresses/{address_id}", token=token)).status == 204
    assert (await rig.api.call("GET", "/api/v1/addresses", token=token)).json["items"] == []


async def test_one_default_address_moves_when_chosen_and_when_deleted(rig: Rig) -> None:
    _user_id, token = await rig.user()
    first = await rig.address(token)
    second = await rig.address(token)

    async def defaults() -> list[int]:
        listed = (await rig.api.call("GET", "/api/v1/addresses", token=token)).json["items"]
        return [a["id"] for a in listed if a["is_default"]]

    assert await defaults() == [first]  # the first address is the default
    chosen = await rig.api.call("PUT", f"/api/v1/addresses/{second}", {"is_default": True}, token=token)
    assert chosen.status == 200 and chosen.json["is_default"] is True
    assert await defaults() == [second]
    body = {"name": "Li Si", "phone": "+86 139-0000-0000", "detail": "2 Yingze St", "is_default": True}
    third = (await rig.api.call("POST", "/api/v1/addresses", body, token=token)).json["id"]
    assert await defaults() == [third]
    refused = await rig.api.call("PUT", f"/api/v1/addresses/{third}", {"is_default": False}, token=token)
    assert (refused.status, refused.code) == (400, "VALIDATION")
    assert (await rig.api.call("DELETE", f"/api/v1/addresses/{third}", token=token)).status == 204
    assert await defaults() == [first]  # the oldest remaining one takes over


# -- never a 500 for bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        [],
        "pay",
        {},
        {"address_id": 1, "pay_with": "balance"},  # no idempotency key
        {"address_id": "1", "pay_with": "balance", "idempotency_key": "k"},
        {"address_id": 1.0, "pay_with": "balance", "idempotency_key": "k"},
        {"address_id": 1, "pay_with": "cash", "idempotency_key": "k"},
        {"address_id": 1, "pay_with": "balance", "idempotency_key": "has space"},
        {"address_id": 1, "pay_with": "balance", "idempotency_key": "k", "coupon_id": True},
        {"address_id": 2**64, "pay_with": "balance", "idempotency_key": "k"},
        {"address_id": 1, "pay_with": "balance", "idempotency_key": "k", "price": 1},
    ],
)
async def test_bad_pay_bodies_are_4xx(rig: Rig, body: Any) -> None:
    _user_id, token = await rig.user()
    answer = await rig.api.call("POST", "/api/v1/orders/1/pay", body, token=token)
    assert 400 <= answer.status < 500 and answer.code in ("VALIDATION", "INVALID_JSON", "ADDRESS_REQUIRED"), (
        answer.body
    )


async def test_bad_requests_elsewhere_are_4xx(rig: Rig) -> None:
    _user_id, token = await rig.user()
    cases: list[tuple[str, str, Any, str | None]] = [
        ("GET", "/api/v1/orders", None, None),  # no token
        ("GET", "/api/v1/orders/abc", None, token),
        ("GET", "/api/v1/orders/99999999999999999999", None, token),
        ("GET", "/api/v1/orders/1/checkout?coupon_id=x", None, token),
        ("POST", "/api/v1/coupons/1/claim", {"extra": 1}, token),
        ("POST", "/api/v1/coupons/1/claim", None, token),
        ("POST", "/api/v1/addresses", {"name": "A", "phone": "call me", "detail": "x"}, token),
        ("POST", "/api/v1/addresses", {"name": "A", "phone": "12345", "detail": "x", "zip": "1"}, token),
        ("POST", "/api/v1/addresses", {"name": "", "phone": "12345", "detail": "x"}, token),
        ("PUT", "/api/v1/addresses/1", {}, token),
        ("GET", "/api/v1/coupons/mine?status=9", None, token),
        ("GET", "/api/v1/admin/orders", None, token),
    ]
    for method, path, body, who in cases:
        answer = await (
            rig.api.call(method, path, token=who)
            if body is None
            else rig.api.call(method, path, body, token=who)
        )
        assert 400 <= answer.status < 500, (method, path, answer.status, answer.body)
        assert answer.code is not None
