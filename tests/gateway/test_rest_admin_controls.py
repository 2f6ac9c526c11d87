"""The live controls over REST: reasons required, bad times refused with BAD_TIME, engine refusals
as 409 ILLEGAL_STATE, one audit entry per control with the reason and surface "rest"."""

import datetime

from engine.book.states import LotState
from engine.commands import PlaceBid
from persistence.mongo import iso_from_ms
from tests.gateway.conftest import AppServer


async def open_lot(app_server: AppServer, lots: int = 1) -> tuple[str, int, list[int]]:
    token = await app_server.admin_token()
    session_id = await app_server.create_session()
    lot_ids = [await app_server.create_lot(session_id, catalogue_no=f"C-{n}") for n in range(lots)]
    await app_server.start_bidding(session_id)
    return token, session_id, lot_ids


async def test_pause_resume_extend_and_withdraw_a_lot(app_server: AppServer) -> None:
    token, _session_id, [lot_id] = await open_lot(app_server)
    base = f"/api/v1/admin/lots/{lot_id}"
    missing = await app_server.call("POST", f"{base}/pause", {}, token=token)
    assert (missing.status, missing.code) == (400, "REASON_REQUIRED")
    blank = await app_server.call("POST", f"{base}/pause", {"reason": "  "}, token=token)
    assert (blank.status, blank.code) == (400, "REASON_REQUIRED")
    long = await app_server.call("POST", f"{base}/pause", {"reason": "x" * 501}, token=token)
    assert long.status == 400

    paused = await app_server.call("POST", f"{base}/pause", {"reason": "wrong photo"}, token=token)
    assert paused.status == 200, paused.body
    assert paused.json["paused"] is True and paused.json["paused_since"].endswith("Z")
    again = await app_server.call("POST", f"{base}/pause", {"reason": "again"}, token=token)
    assert (again.status, again.code) == (409, "ILLEGAL_STATE")
    resumed = await app_server.call("POST", f"{base}/resume", {"reason": "photo fixed"}, token=token)
    assert resumed.status == 200 and resumed.json["paused"] is False

    end = app_server.engine.book.lots[lot_id].ends_at
    for bad in ("tomorrow", iso_from_ms(end), "2025-01-01T00:00:00"):
        refused = await app_server.call(
            "POST", f"{base}/extend", {"ends_at": bad, "reason": "r"}, token=token
        )
        assert (refused.status, refused.code) == (400, "BAD_TIME"), bad
    no_time = await app_server.call("POST", f"{base}/extend", {"reason": "r"}, token=token)
    assert (no_time.status, no_time.code) == (400, "BAD_TIME")
    later = datetime.datetime.fromtimestamp((end + 600_000) / 1000, datetime.UTC).isoformat()
    extended = await app_server.call(
        "POST", f"{base}/extend", {"ends_at": later, "reason": "late lot"}, token=token
    )
    assert extended.status == 200, extended.body
    assert extended.json["ends_at_ms"] == end + 600_000 and extended.json["extensions"] == 1

    withdrawn = await app_server.call("POST", f"{base}/withdraw", {"reason": "consignor"}, token=token)
    assert withdrawn.status == 200 and withdrawn.json["state"] == int(LotState.UNSOLD)
    twice = await app_server.call("POST", f"{base}/withdraw", {"reason": "consignor"}, token=token)
    assert (twice.status, twice.code) == (409, "ILLEGAL_STATE")

    entries = await app_server.ctx.db.audit.find({"target": f"lot:{lot_id}"}).sort("_id", 1).to_list(None)
    assert [(e["action"], e["reason"], e["surface"]) for e in entries][-4:] == [
        ("lot.pause", "wrong photo", "rest"),
        ("lot.resume", "photo fixed", "rest"),
        ("lot.extend", "late lot", "rest"),
        ("lot.withdraw", "consignor", "rest"),
    ]


async def test_void_a_bid_and_pause_a_session(app_server: AppServer) -> None:
    token, session_id, lot_ids = await open_lot(app_server, lots=2)
    first = lot_ids[0]
    (a, _), (b, _) = await app_server.register(), await app_server.register()
    lot = app_server.engine.book.lots[first]
    assert (await app_server.engine.execute(PlaceBid(first, a, lot.next_min()))).ok
    price = lot.price
    assert (await app_server.engine.execute(PlaceBid(first, b, price * 10))).ok
    unknown = await app_server.call(
        "POST", f"/api/v1/admin/lots/{first}/bids/7/void", {"reason": "x"}, token=token
    )
    assert unknown.status == 404
    voided = await app_server.call(
        "POST", f"/api/v1/admin/lots/{first}/bids/1/void", {"reason": "fat finger"}, token=token
    )
    assert voided.status == 200, voided.body
    assert (voided.json["price"], voided.json["leader"], voided.json["bid_count"]) == (price, a, 1)

    paused = await app_server.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/pause", {"reason": "alarm"}, token=token
    )
    assert paused.status == 200, paused.body
    assert [lot["paused"] for lot in paused.json["lots"]] == [True, True]
    resumed = await app_server.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/resume", {"reason": "ok"}, token=token
    )
    assert resumed.status == 200 and [lot["paused"] for lot in resumed.json["lots"]] == [False, False]
    nothing = await app_server.call(
        "POST", f"/api/v1/admin/sessions/{session_id}/resume", {"reason": "ok"}, token=token
    )
    assert (nothing.status, nothing.code) == (409, "ILLEGAL_STATE")


async def test_block_and_unblock_a_bidder_and_non_admins_are_refused(app_server: AppServer) -> None:
    token, _session_id, [lot_id] = await open_lot(app_server)
    user_id, bidder_token = await app_server.register()
    blocked = await app_server.call(
        "POST", f"/api/v1/admin/bidders/{user_id}/block", {"reason": "shill"}, token=token
    )
    assert blocked.status == 200 and blocked.json == {"user_id": user_id, "blocked": True}
    lot = app_server.engine.book.lots[lot_id]
    assert (await app_server.engine.execute(PlaceBid(lot_id, user_id, lot.next_min()))).code == "BLOCKED"
    unblocked = await app_server.call(
        "POST", f"/api/v1/admin/bidders/{user_id}/unblock", {"reason": "cleared"}, token=token
    )
    assert unblocked.status == 200 and unblocked.json["blocked"] is False
    for path in (
        f"/api/v1/admin/lots/{lot_id}/pause",
        f"/api/v1/admin/lots/{lot_id}/bids/0/void",
        f"/api/v1/admin/bidders/{user_id}/block",
    ):
        refused = await app_server.call("POST", path, {"reason": "x"}, token=bidder_token)
        assert refused.status == 403, path
        anonymous = await app_server.call("POST", path, {"reason": "x"})
        assert anonymous.status == 401, path
