"""Every REST admin write goes through the admin-actions service: one audit entry each, none for a
refusal or a replayed credit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.gateway.conftest import Answer, AppServer


async def one_entry(server: AppServer, action: str, write: Callable[[], Awaitable[Answer]]) -> Answer:
    before = await server.ctx.db.audit.count_documents({})
    answer = await write()
    assert answer.status in (200, 201), answer.body
    entries = [e async for e in server.ctx.db.audit.find({}).sort("at", 1)][before:]
    assert [e["action"] for e in entries] == [action]
    assert entries[0]["admin_username"] == "admin" and entries[0]["ip"]
    return answer


async def test_each_rest_admin_write_leaves_one_audit_entry(app_server: AppServer) -> None:
    server = app_server
    token = await server.admin_token()

    def call(method: str, path: str, body: Any = None) -> Callable[[], Awaitable[Answer]]:
        return lambda: server.call(method, path, body, token=token)

    created = await one_entry(
        server, "session.create", call("POST", "/api/v1/admin/sessions", server.session_body())
    )
    session_id = created.json["id"]
    await one_entry(
        server, "session.update", call("PATCH", f"/api/v1/admin/sessions/{session_id}", {"title": "Jade"})
    )
    lot = await one_entry(
        server, "lot.create", call("POST", f"/api/v1/admin/sessions/{session_id}/lots", server.lot_body())
    )
    lot_id = lot.json["id"]
    await one_entry(server, "lot.update", call("PATCH", f"/api/v1/admin/lots/{lot_id}", {"title": "Vase"}))
    await server.start_bidding(session_id)
    await one_entry(server, "lot.close", call("POST", f"/api/v1/admin/lots/{lot_id}/close", {}))
    other = await server.create_lot(await server.create_session())
    await one_entry(
        server, "lot.cancel", call("POST", f"/api/v1/admin/lots/{other}/cancel", {"reason": "withdrawn"})
    )
    user_id, _ = await server.register()
    credit = {"amount": 500, "idempotency_key": "topup-1"}
    await one_entry(server, "user.credit", call("POST", f"/api/v1/admin/users/{user_id}/credit", credit))
    entry = await server.ctx.db.audit.find_one({"action": "user.credit"})
    assert entry["before"] == {"balance": 0} and entry["after"]["balance"] == 500

    # A replayed credit changes nothing and records nothing; a refused write records nothing.
    count = await server.ctx.db.audit.count_documents({})
    replay = await server.call("POST", f"/api/v1/admin/users/{user_id}/credit", credit, token=token)
    assert replay.status == 200
    _, bidder = await server.register()
    refused = await server.call("POST", f"/api/v1/admin/users/{user_id}/credit", credit, token=bidder)
    assert refused.status == 403
    illegal = await server.call("POST", f"/api/v1/admin/lots/{lot_id}/open", {}, token=token)
    assert illegal.status == 409
    assert await server.ctx.db.audit.count_documents({}) == count
