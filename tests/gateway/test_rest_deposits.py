"""Deposits over REST: paid from the balance exactly once, refused cleanly, or paid in the sandbox."""

import urllib.parse

from engine.book.states import SessionState
from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import running_shop

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sandbox_api(pay_url: str) -> str:
    """The owner-only sandbox API behind a sandbox pay page's URL."""
    return "/api/v1/sandbox/payments/" + urllib.parse.urlsplit(pay_url).path.rsplit("/", 1)[1]


async def assert_ledger_matches_balances(app_server: AppServer) -> None:
    """The invariant: for every user, the sum of ledger amounts is the balance."""
    sums = {
        row["_id"]: row["total"]
        async for row in await app_server.ctx.db.ledger.aggregate(
            [{"$group": {"_id": "$user_id", "total": {"$sum": "$amount"}}}]
        )
    }
    async for user in app_server.ctx.db.users.find({}, {"balance": 1}):
        assert user["balance"] == sums.get(user["_id"], 0), user
        assert user["balance"] >= 0


async def test_session_deposit_paid_from_balance(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=5_000)
    lot_id = await app_server.create_lot(session_id, deposit=1_000)
    user_id, token = await app_server.register()
    await app_server.credit(user_id, 8_000)
    lot = app_server.engine.book.lots[lot_id]
    assert not lot.may_bid(user_id)

    answer = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": None, "pay_with": "balance"},
        token=token,
    )
    assert answer.status == 201, answer.body
    deposit = answer.json
    assert deposit["status"] == "paid" and deposit["amount"] == 5_000
    assert deposit["session_id"] == session_id and deposit["lot_id"] is None
    assert "pay_url" not in deposit
    assert lot.may_bid(user_id)

    me = await app_server.call("GET", "/api/v1/me", token=token)
    assert me.json["balance"] == 3_000
    entry = await app_server.ctx.db.ledger.find_one({"ref": f"deposit:{deposit['id']}"})
    assert entry is not None
    assert (entry["user_id"], entry["kind"], entry["amount"], entry["balance_after"]) == (
        user_id,
        "deposit",
        -5_000,
        3_000,
    )

    duplicate = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": None, "pay_with": "balance"},
        token=token,
    )
    assert duplicate.status == 409 and duplicate.code == "DEPOSIT_EXISTS"
    covered = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
        token=token,
    )
    assert covered.status == 409 and covered.code == "DEPOSIT_EXISTS"
    assert (await app_server.ctx.accounts.profile(user_id)).balance == 3_000
    assert await app_server.ctx.db.ledger.count_documents({"kind": "deposit"}) == 1
    await assert_ledger_matches_balances(app_server)


async def test_lot_deposit_and_listing(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=0)
    lot_a = await app_server.create_lot(session_id, deposit=1_000)
    lot_b = await app_server.create_lot(session_id, deposit=2_000)
    user_id, token = await app_server.register()
    other_id, other_token = await app_server.register()
    await app_server.credit(user_id, 10_000)
    await app_server.credit(other_id, 10_000)

    for lot_id in (lot_a, lot_b):
        answer = await app_server.call(
            "POST",
            "/api/v1/deposits",
            {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
            token=token,
        )
        assert answer.status == 201
    await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": lot_a, "pay_with": "balance"},
        token=other_token,
    )
    assert app_server.engine.book.lots[lot_a].may_bid(user_id)
    assert app_server.engine.book.lots[lot_b].may_bid(user_id)
    assert not app_server.engine.book.lots[lot_b].may_bid(other_id)
    assert (await app_server.ctx.accounts.profile(user_id)).balance == 7_000

    mine = await app_server.call("GET", "/api/v1/deposits", token=token)
    assert mine.status == 200 and mine.json["total"] == 2
    assert [d["lot_id"] for d in mine.json["items"]] == [lot_b, lot_a]  # newest first
    # Paid from the balance: no provider payment; no refund yet.
    assert all(d["out_trade_no"] is None and "refund_status" not in d for d in mine.json["items"])
    paged = await app_server.call("GET", "/api/v1/deposits?page=2&page_size=1", token=token)
    assert [d["lot_id"] for d in paged.json["items"]] == [lot_a]
    anonymous = await app_server.call("GET", "/api/v1/deposits")
    assert anonymous.status == 401
    # One session's deposits only.
    other_session = await app_server.create_session(deposit=0)
    other_lot = await app_server.create_lot(other_session, deposit=500)
    answer = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": other_session, "lot_id": other_lot, "pay_with": "balance"},
        token=token,
    )
    assert answer.status == 201
    only = await app_server.call("GET", f"/api/v1/deposits?session_id={session_id}", token=token)
    assert only.json["total"] == 2 and [d["lot_id"] for d in only.json["items"]] == [lot_b, lot_a]
    assert (await app_server.call("GET", "/api/v1/deposits", token=token)).json["total"] == 3
    bad = await app_server.call("GET", "/api/v1/deposits?session_id=x", token=token)
    assert (bad.status, bad.code) == (400, "VALIDATION")
    await assert_ledger_matches_balances(app_server)


async def test_insufficient_balance_changes_nothing(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=5_000)
    lot_id = await app_server.create_lot(session_id)
    user_id, token = await app_server.register()
    await app_server.credit(user_id, 4_999)
    answer = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": None, "pay_with": "balance"},
        token=token,
    )
    assert answer.status == 402 and answer.code == "INSUFFICIENT_BALANCE"
    assert (await app_server.ctx.accounts.profile(user_id)).balance == 4_999
    assert await app_server.ctx.db.deposits.count_documents({}) == 0
    assert await app_server.ctx.db.ledger.count_documents({"user_id": user_id}) == 1  # the credit only
    assert not app_server.engine.book.lots[lot_id].may_bid(user_id)
    await assert_ledger_matches_balances(app_server)
    # Topped up, the same request now succeeds.
    await app_server.credit(user_id, 1)
    retry = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": None, "pay_with": "balance"},
        token=token,
    )
    assert retry.status == 201
    assert (await app_server.ctx.accounts.profile(user_id)).balance == 0


async def test_refusals(app_server: AppServer) -> None:
    free_session = await app_server.create_session(deposit=0)
    free_lot = await app_server.create_lot(free_session, deposit=0)
    other_session = await app_server.create_session(deposit=100)
    _, token = await app_server.register()

    async def deposit(body: dict[str, object]) -> tuple[int, str | None]:
        answer = await app_server.call("POST", "/api/v1/deposits", body, token=token)
        return answer.status, answer.code

    assert await deposit({"session_id": free_session, "lot_id": None, "pay_with": "balance"}) == (
        409,
        "NO_DEPOSIT_REQUIRED",
    )
    assert await deposit({"session_id": free_session, "lot_id": free_lot, "pay_with": "provider"}) == (
        409,
        "NO_DEPOSIT_REQUIRED",
    )
    assert await deposit({"session_id": other_session, "lot_id": free_lot, "pay_with": "balance"}) == (
        404,
        "NOT_FOUND",
    )
    assert await deposit({"session_id": 999, "lot_id": None, "pay_with": "balance"}) == (404, "NOT_FOUND")
    assert await deposit({"session_id": free_session, "pay_with": "card"}) == (400, "VALIDATION")
    assert await deposit({"session_id": "1", "pay_with": "balance"}) == (400, "VALIDATION")
    assert await deposit({"session_id": free_session, "lot_id": 1.0, "pay_with": "balance"}) == (
        400,
        "VALIDATION",
    )

    # A session whose lots are all closed has ended.
    ended = await app_server.create_session(deposit=100)
    ended_lot = await app_server.create_lot(ended)
    admin = await app_server.admin_token()
    opened = await app_server.call("POST", f"/api/v1/admin/lots/{ended_lot}/open", token=admin)
    assert opened.status == 200
    cancel = await app_server.call(
        "POST", f"/api/v1/admin/lots/{ended_lot}/cancel", {"reason": "withdrawn"}, token=admin
    )
    assert cancel.status == 200
    assert app_server.engine.book.sessions[ended].state is SessionState.ENDED
    assert await deposit({"session_id": ended, "lot_id": None, "pay_with": "balance"}) == (
        409,
        "SESSION_ENDED",
    )


async def test_provider_deposit_pending_until_the_sandbox_pays(app_server: AppServer) -> None:
    # The deposit is paid only by the sandbox provider's signed notification, after its payer
    # (signed in) pressed Pay through the owner-only sandbox API.
    async with running_shop(app_server) as shop:
        server = shop.api
        session_id = await server.create_session(deposit=5_000)
        lot_id = await server.create_lot(session_id)
        user_id, token = await server.register()
        answer = await server.call(
            "POST",
            "/api/v1/deposits",
            {"session_id": session_id, "lot_id": None, "pay_with": "provider"},
            token=token,
        )
        assert answer.status == 201
        deposit = answer.json
        assert deposit["status"] == "pending"
        assert deposit["pay_url"].startswith(server.base_url + "/sandbox/pay/dep-")
        # Its payment's number (the owner's only): what the return page and the status poll name.
        assert deposit["pay_url"] == server.base_url + "/sandbox/pay/" + deposit["out_trade_no"]
        pay_path = sandbox_api(deposit["pay_url"])
        lot = server.engine.book.lots[lot_id]
        assert not lot.may_bid(user_id)
        # A pending deposit already blocks a second one.
        again = await server.call(
            "POST",
            "/api/v1/deposits",
            {"session_id": session_id, "lot_id": None, "pay_with": "balance"},
            token=token,
        )
        assert again.status == 409 and again.code == "DEPOSIT_EXISTS"

        page = await server.call("GET", pay_path, token=token)
        assert page.status == 200 and page.json["amount_yuan"] == "50.00" and page.json["sandbox"] is True

        paid = await server.call("POST", pay_path, raw=b"outcome=paid", headers=FORM, token=token)
        assert paid.status == 200 and paid.json["status"] == "TRADE_SUCCESS"
        await shop.provider.idle()
        assert lot.may_bid(user_id)
        repeat = await server.call("POST", pay_path, {"outcome": "paid"}, token=token)
        assert repeat.status == 200 and repeat.json["status"] == "TRADE_SUCCESS"
        late_failure = await server.call("POST", pay_path, raw=b"outcome=failed", headers=FORM, token=token)
        assert late_failure.status == 409 and late_failure.code == "ILLEGAL_STATE"

        # No balance moved: the provider took the money.
        assert (await server.ctx.accounts.profile(user_id)).balance == 0
        assert await server.ctx.db.ledger.count_documents({"user_id": user_id}) == 0
        listed = await server.call("GET", "/api/v1/deposits", token=token)
        assert listed.json["items"][0]["status"] == "paid" and "pay_url" not in listed.json["items"][0]
        assert listed.json["items"][0]["out_trade_no"] == deposit["out_trade_no"]

        # The provider sends the payer's browser back to the return URL: on to the app's page.
        returned = await server.http.fetch(
            server.base_url + "/api/v1/payments/return?out_trade_no=" + deposit["out_trade_no"],
            headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
            follow_redirects=False,
            raise_error=False,
        )
        assert returned.code == 302
        assert returned.headers["Location"] == "/#/payment/" + deposit["out_trade_no"]
        # A script (fetch's */*) still gets the JSON status.
        return_path = "/api/v1/payments/return?out_trade_no=" + deposit["out_trade_no"]
        status = await server.call("GET", return_path, headers={"Accept": "*/*"})
        assert status.status == 200 and status.json["out_trade_no"] == deposit["out_trade_no"]


async def test_failed_provider_payment_allows_a_new_deposit(app_server: AppServer) -> None:
    async with running_shop(app_server) as shop:
        server = shop.api
        session_id = await server.create_session(deposit=5_000)
        await server.create_lot(session_id)
        user_id, token = await server.register()
        body = {"session_id": session_id, "lot_id": None, "pay_with": "provider"}
        first = await server.call("POST", "/api/v1/deposits", body, token=token)
        pay_path = sandbox_api(first.json["pay_url"])
        failed = await server.call("POST", pay_path, raw=b"outcome=failed", headers=FORM, token=token)
        assert failed.status == 200 and failed.json["status"] == "TRADE_CLOSED"
        failed_again = await server.call("POST", pay_path, raw=b"outcome=failed", headers=FORM, token=token)
        assert failed_again.status == 200
        paid_after_failure = await server.call(
            "POST", pay_path, raw=b"outcome=paid", headers=FORM, token=token
        )
        assert paid_after_failure.status == 409
        await shop.provider.idle()
        assert user_id not in server.engine.book.sessions[session_id].depositors

        second = await server.call("POST", "/api/v1/deposits", body, token=token)
        assert second.status == 201 and second.json["id"] != first.json["id"]


async def test_without_a_provider_deposits_are_paid_from_the_balance_only(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=100)
    await app_server.create_lot(session_id)
    _, token = await app_server.register()
    body = {"session_id": session_id, "lot_id": None, "pay_with": "provider"}
    answer = await app_server.call("POST", "/api/v1/deposits", body, token=token)
    assert (answer.status, answer.code) == (503, "PAYMENT_UNAVAILABLE")
    assert (await app_server.call("GET", "/sandbox/pay/dep-x")).status == 404  # no sandbox wired


async def test_sandbox_refuses_unknown_and_malformed(app_server: AppServer) -> None:
    async with running_shop(app_server) as shop:
        server = shop.api
        _, token = await server.register()
        unknown = await server.call("GET", "/api/v1/sandbox/payments/dep-doesnotexist", token=token)
        assert unknown.status == 404 and unknown.code == "NOT_FOUND"
        unknown_post = await server.call(
            "POST",
            "/api/v1/sandbox/payments/dep-doesnotexist",
            raw=b"outcome=paid",
            headers=FORM,
            token=token,
        )
        assert unknown_post.status == 404 and unknown_post.code == "NOT_FOUND"
        bad_chars = await server.call("GET", "/sandbox/pay/<script>")
        assert bad_chars.status == 404

        session_id = await server.create_session(deposit=100)
        await server.create_lot(session_id)
        created = await server.call(
            "POST",
            "/api/v1/deposits",
            {"session_id": session_id, "lot_id": None, "pay_with": "provider"},
            token=token,
        )
        pay_path = sandbox_api(created.json["pay_url"])
        for raw in (b"", b"outcome=maybe", b"outcome=paid&outcome=failed", b"outcome=paid&x=1", b"\xff\xfe"):
            answer = await server.call("POST", pay_path, raw=raw, headers=FORM, token=token)
            assert answer.status == 400 and answer.code == "VALIDATION", raw
        as_json = await server.call("POST", pay_path, {"outcome": "nope"}, token=token)
        assert as_json.status == 400
