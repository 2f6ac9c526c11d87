"""Admin endpoints: sessions and lots reach the engine, edits stop at the start, credits, lifecycle."""

from engine.book.states import LotState, SessionState
from engine.commands import PlaceBid
from tests.gateway.conftest import AppServer


async def test_admin_creates_session_and_lots(app_server: AppServer) -> None:
    token = await app_server.admin_token()
    body = app_server.session_body(title="Autumn jade", deposit=50_000, description="Forty lots")
    created = await app_server.call("POST", "/api/v1/admin/sessions", body, token=token)
    assert created.status == 201
    session_id = created.json["id"]
    assert created.json["title"] == "Autumn jade"
    assert created.json["bidding_start"] == body["bidding_start"]

    session = app_server.engine.book.sessions[session_id]
    assert session.deposit == 50_000
    assert session.soft_close_ms == 60_000 and session.soft_close_cap_ms == 600_000
    doc = await app_server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc is not None and doc["engine_synced"] is True

    lot = await app_server.call(
        "POST",
        f"/api/v1/admin/sessions/{session_id}/lots",
        app_server.lot_body(
            catalogue_no="A-001",
            images=["https://img.example/a.jpg"],
            specs=[{"key": "高度", "value": "32 cm"}],
            deposit=2_000,
            reserve_price=30_000,
        ),
        token=token,
    )
    assert lot.status == 201
    lot_id = lot.json["id"]
    assert lot.json["specs"] == [{"key": "高度", "value": "32 cm"}]
    live = app_server.engine.book.lots[lot_id]
    assert live.rule.spec() == ["fixed", 10_000, 1_000]
    assert (live.reserve, live.deposit, live.session.session_id) == (30_000, 2_000, session_id)

    banded = await app_server.call(
        "POST",
        f"/api/v1/admin/sessions/{session_id}/lots",
        app_server.lot_body(
            catalogue_no="A-002", unit=None, increment_bands=[[100_000, 1_000], [None, 5_000]]
        ),
        token=token,
    )
    assert banded.status == 201, banded.body
    assert app_server.engine.book.lots[banded.json["id"]].rule.spec() == [
        "banded",
        10_000,
        [[100_000, 1_000], [None, 5_000]],
    ]

    duplicate = await app_server.call(
        "POST",
        f"/api/v1/admin/sessions/{session_id}/lots",
        app_server.lot_body(catalogue_no="A-001"),
        token=token,
    )
    assert duplicate.status == 409 and duplicate.code == "CATALOGUE_NO_EXISTS"
    missing_session = await app_server.call(
        "POST", "/api/v1/admin/sessions/999/lots", app_server.lot_body(), token=token
    )
    assert missing_session.status == 404


async def test_non_admins_are_refused(app_server: AppServer) -> None:
    _, bidder = await app_server.register()
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id)
    requests = [
        ("POST", "/api/v1/admin/sessions", app_server.session_body()),
        ("PATCH", f"/api/v1/admin/sessions/{session_id}", {"title": "x"}),
        ("POST", f"/api/v1/admin/sessions/{session_id}/lots", app_server.lot_body()),
        ("PATCH", f"/api/v1/admin/lots/{lot_id}", {"title": "x"}),
        ("POST", "/api/v1/admin/users/1/credit", {"amount": 100}),
        ("POST", f"/api/v1/admin/lots/{lot_id}/open", {}),
        ("POST", f"/api/v1/admin/lots/{lot_id}/cancel", {"reason": "x"}),
    ]
    for method, path, body in requests:
        anonymous = await app_server.call(method, path, body)
        assert anonymous.status == 401 and anonymous.code == "UNAUTHORIZED", path
        forbidden = await app_server.call(method, path, body, token=bidder)
        assert forbidden.status == 403 and forbidden.code == "FORBIDDEN", path
    assert len(app_server.engine.book.sessions) == 1
    assert app_server.engine.book.lots[lot_id].state is LotState.SCHEDULED


async def test_patch_before_start_then_refused_after(app_server: AppServer) -> None:
    token = await app_server.admin_token()
    session_id = await app_server.create_session(deposit=100)
    lot_id = await app_server.create_lot(session_id, unit=500)

    patched = await app_server.call(
        "PATCH", f"/api/v1/admin/sessions/{session_id}", {"deposit": 300, "title": "Renamed"}, token=token
    )
    assert patched.status == 200 and patched.json["title"] == "Renamed"
    assert app_server.engine.book.sessions[session_id].deposit == 300
    lot = await app_server.call(
        "PATCH", f"/api/v1/admin/lots/{lot_id}", {"unit": 200, "deposit": 50}, token=token
    )
    assert lot.status == 200 and lot.json["unit"] == 200
    live = app_server.engine.book.lots[lot_id]
    assert live.rule.spec() == ["fixed", 10_000, 200] and live.deposit == 50

    bad_order = await app_server.call(
        "PATCH",
        f"/api/v1/admin/sessions/{session_id}",
        {"bidding_end": patched.json["preview_start"]},
        token=token,
    )
    assert bad_order.status == 400 and bad_order.code == "VALIDATION"
    assert (await app_server.ctx.db.sessions.find_one({"_id": session_id}) or {})["deposit"] == 300
    empty = await app_server.call("PATCH", f"/api/v1/admin/sessions/{session_id}", {}, token=token)
    assert empty.status == 400

    await app_server.start_bidding(session_id)
    late_session = await app_server.call(
        "PATCH", f"/api/v1/admin/sessions/{session_id}", {"deposit": 1}, token=token
    )
    assert late_session.status == 409 and late_session.code == "ALREADY_STARTED"
    late_lot = await app_server.call("PATCH", f"/api/v1/admin/lots/{lot_id}", {"deposit": 1}, token=token)
    assert late_lot.status == 409 and late_lot.code == "ALREADY_STARTED"
    late_new_lot = await app_server.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/lots", app_server.lot_body(), token=token
    )
    assert late_new_lot.status == 409 and late_new_lot.code == "ALREADY_STARTED"
    # Nothing changed anywhere.
    assert app_server.engine.book.sessions[session_id].deposit == 300
    assert (await app_server.ctx.db.sessions.find_one({"_id": session_id}) or {})["deposit"] == 300
    assert (await app_server.ctx.db.lots.find_one({"_id": lot_id}) or {})["deposit"] == 50


async def test_credit_with_idempotency_key(app_server: AppServer) -> None:
    user_id, token = await app_server.register()
    first = await app_server.credit(user_id, 12_345, idempotency_key="topup-2025-05-01")
    assert first.status == 201
    assert first.json["amount"] == 12_345 and first.json["balance_after"] == 12_345
    assert first.json["replayed"] is False
    again = await app_server.credit(user_id, 12_345, idempotency_key="topup-2025-05-01")
    assert again.status == 200 and again.json["replayed"] is True
    assert again.json["balance_after"] == 12_345

    me = await app_server.call("GET", "/api/v1/me", token=token)
    assert me.json["balance"] == 12_345
    assert await app_server.ctx.db.ledger.count_documents({"user_id": user_id}) == 1

    admin = await app_server.admin_token()
    reused = await app_server.call(
        "POST",
        f"/api/v1/admin/users/{user_id}/credit",
        {"amount": 1, "idempotency_key": "topup-2025-05-01"},
        token=admin,
    )
    assert reused.status == 409 and reused.code == "IDEMPOTENCY_KEY_REUSED"
    without_key = [await app_server.credit(user_id, 100) for _ in range(2)]
    assert [a.status for a in without_key] == [201, 201]
    assert (await app_server.ctx.accounts.profile(user_id)).balance == 12_545

    nobody = await app_server.call("POST", "/api/v1/admin/users/9999/credit", {"amount": 1}, token=admin)
    assert nobody.status == 404 and nobody.code == "NOT_FOUND"
    bad_key = await app_server.call(
        "POST", f"/api/v1/admin/users/{user_id}/credit", {"amount": 1, "idempotency_key": "a b"}, token=admin
    )
    assert bad_key.status == 400


async def test_lot_open_close_cancel(app_server: AppServer) -> None:
    token = await app_server.admin_token()
    session_id = await app_server.create_session()
    first = await app_server.create_lot(session_id)
    second = await app_server.create_lot(session_id)
    bidder, _ = await app_server.register()

    opened = await app_server.call("POST", f"/api/v1/admin/lots/{first}/open", token=token)
    assert opened.status == 200 and opened.json["state"] == int(LotState.BIDDING)
    assert app_server.engine.book.sessions[session_id].state is SessionState.BIDDING
    outcome = await app_server.engine.execute(PlaceBid(first, bidder, 10_000))
    assert outcome.ok

    again = await app_server.call("POST", f"/api/v1/admin/lots/{first}/open", {}, token=token)
    assert again.status == 409 and again.code == "ILLEGAL_STATE"
    closed = await app_server.call("POST", f"/api/v1/admin/lots/{first}/close", token=token)
    assert closed.status == 200 and closed.json["state"] == int(LotState.SOLD)
    assert closed.json["winner"].startswith("Bidder-")
    closed_again = await app_server.call("POST", f"/api/v1/admin/lots/{first}/close", token=token)
    assert closed_again.status == 409 and closed_again.code == "ILLEGAL_STATE"

    no_reason = await app_server.call("POST", f"/api/v1/admin/lots/{second}/cancel", {}, token=token)
    assert no_reason.status == 400
    cancelled = await app_server.call(
        "POST", f"/api/v1/admin/lots/{second}/cancel", {"reason": "withdrawn by consignor"}, token=token
    )
    assert cancelled.status == 200 and cancelled.json["state"] == int(LotState.UNSOLD)
    assert app_server.engine.book.sessions[session_id].state is SessionState.ENDED

    junk = await app_server.call("POST", f"/api/v1/admin/lots/{second}/close", {"force": True}, token=token)
    assert junk.status == 400
    unknown = await app_server.call("POST", "/api/v1/admin/lots/4242/open", token=token)
    assert unknown.status == 404
    ended = await app_server.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/lots", app_server.lot_body(), token=token
    )
    assert ended.status == 409 and ended.code == "SESSION_ENDED"
