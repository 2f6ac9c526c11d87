"""What the bidder app reads: the personal snapshot, `accepted.my_max`, the `result` frames at a
lot's close, `GET /api/v1/lots/{id}/result`, the ledger, and public views without the reserve.

Real app, MongoDB and Redis; the close → order → result path runs the real write-behind archiver and
settlement worker (the `rig` of test_orders_api.py), with the worker's loop running as in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from tests.gateway import test_orders_api
from tests.gateway.conftest import AppServer
from tests.gateway.test_orders_api import Rig
from tests.gateway.test_ws import Bidder, funded_bidder, open_lot

# The `rig` fixture (archiver and settlement on the shared app), under its own name.
rig = test_orders_api.rig

log = logging.getLogger("tests.bidder_app")

PERSONAL = ("leading", "my_max", "deposit")


async def snapshot(client: Bidder, session_id: int) -> dict[str, Any]:
    """Subscribe (again) and read on to the snapshot, past live frames already on their way."""
    client.send({"op": "subscribe", "session_id": session_id})
    return await client.until("snapshot", session_id=session_id)


def lot_of(snapshot: dict[str, Any], lot_id: int) -> dict[str, Any]:
    [lot] = [lot for lot in snapshot["lots"] if lot["lot_id"] == lot_id]
    return lot


async def test_the_snapshot_tells_each_bidder_their_own_state_and_watchers_none(
    app_server: AppServer,
) -> None:
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id, deposit=5_000)
    free_lot = await app_server.create_lot(session_id, deposit=0)
    await app_server.start_bidding(session_id)
    _leader_id, leader_token = await funded_bidder(app_server, session_id, lot_id)
    _other_id, other_token = await funded_bidder(app_server, session_id, lot_id)
    _newcomer, newcomer_token = await app_server.register()
    leader = await Bidder.connect(app_server, leader_token)
    other = await Bidder.connect(app_server, other_token)

    # Before any bid: the start price is the next minimum, and there are no bids yet.
    first = await snapshot(leader, session_id)
    lot = lot_of(first, lot_id)
    assert (lot["price"], lot["no_bids"], lot["next_min"], lot["increment"]) == (0, True, 10_000, 1_000)
    assert (lot["leading"], lot["my_max"], lot["deposit"]) == (False, None, "paid")

    accepted = await leader.bid(lot_id, 15_000, "m1", op="max_bid")
    assert accepted["leading"] is True and accepted["my_max"] == 15_000
    plain = await other.bid(lot_id, 12_000, "o1")
    assert plain["leading"] is False and plain["my_max"] is None

    mine = lot_of(await snapshot(leader, session_id), lot_id)
    assert (mine["price"], mine["no_bids"], mine["next_min"]) == (13_000, False, 14_000)
    assert (mine["leading"], mine["my_max"], mine["deposit"]) == (True, 15_000, "paid")
    theirs = lot_of(await snapshot(other, session_id), lot_id)
    assert (theirs["leading"], theirs["my_max"], theirs["deposit"]) == (False, None, "paid")
    assert "15000" not in json.dumps(theirs)  # the leader's maximum is theirs alone

    newcomer = await Bidder.connect(app_server, newcomer_token)
    theirs_new = await snapshot(newcomer, session_id)
    assert lot_of(theirs_new, lot_id)["deposit"] == "needed"
    # A lot needs no deposit when neither it nor its session asks for one.
    assert lot_of(theirs_new, free_lot)["deposit"] == "not_needed"

    watcher = await Bidder.connect(app_server)
    public = await snapshot(watcher, session_id)
    assert all(field not in lot for lot in public["lots"] for field in PERSONAL)
    assert lot_of(public, lot_id) == {k: v for k, v in mine.items() if k not in PERSONAL}
    for client in (leader, other, newcomer, watcher):
        client.close()


async def test_a_session_deposit_and_a_banded_increment_in_the_snapshot(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=20_000)
    lot_id = await app_server.create_lot(
        session_id, unit=None, start_price=10_000, increment_bands=[[20_000, 1_000], [None, 5_000]]
    )
    await app_server.start_bidding(session_id)
    _user, token = await funded_bidder(app_server, session_id, None)  # the whole-session deposit
    bidder = await Bidder.connect(app_server, token)
    lot = lot_of(await snapshot(bidder, session_id), lot_id)
    assert (lot["deposit"], lot["increment"]) == ("paid", 1_000)
    assert (await bidder.bid(lot_id, 19_000, "b1"))["type"] == "accepted"
    lot = lot_of(await snapshot(bidder, session_id), lot_id)
    # The next minimum is 20,000, where the 5,000 band starts: that is the step that applies now.
    assert (lot["next_min"], lot["increment"]) == (20_000, 5_000)
    view = (await app_server.call("GET", f"/api/v1/lots/{lot_id}")).json
    assert (view["next_min"], view["increment"]) == (20_000, 5_000)
    bidder.close()


async def test_result_frames_at_the_close_won_with_the_order_and_lost_at_once(rig: Rig) -> None:
    api = rig.api
    settlement = rig.settlement
    worker = asyncio.create_task(settlement.worker.run(settlement.stop))
    try:
        session_id, lot_id = await open_lot(api, deposit=1_000)
        winner_id, winner_token = await funded_bidder(api, session_id, lot_id)
        loser_id, loser_token = await funded_bidder(api, session_id, lot_id)
        _bystander_id, bystander_token = await api.register()
        winner = await Bidder.connect(api, winner_token)
        loser = await Bidder.connect(api, loser_token)
        bystander = await Bidder.connect(api, bystander_token)
        await snapshot(winner, session_id)
        assert (await loser.bid(lot_id, 10_000, "l1"))["type"] == "accepted"
        assert (await winner.bid(lot_id, 11_000, "w1"))["type"] == "accepted"

        closed_at = time.perf_counter()
        await rig.close(lot_id)
        lost = await loser.until("result", lot_id=lot_id)
        assert lost == {
            "type": "result",
            "session_id": session_id,
            "lot_id": lot_id,
            "outcome": "lost",
            "price": 11_000,
            "order_id": None,
            "pay_by": None,
        }
        won = await winner.until("result", lot_id=lot_id, within_s=30)
        delay_ms = (time.perf_counter() - closed_at) * 1000
        log.warning("close -> won result frame with its order: %.0f ms", delay_ms)
        order = (await api.call("GET", "/api/v1/orders", token=winner_token)).json["groups"][0]["items"][0]
        assert won == {
            "type": "result",
            "session_id": session_id,
            "lot_id": lot_id,
            "outcome": "won",
            "price": 11_000,
            "order_id": order["id"],
            "pay_by": order["deadline_ms"],
        }
        assert api.ctx.hub.result_delays_ms  # measured by the hub too
        # Nobody else hears of it: a socket that never bid on the lot gets no result.
        bystander.send({"op": "ping"})
        assert (await bystander.until("pong"))["type"] == "pong"
        assert all(frame["type"] != "result" for frame in bystander.frames)

        # The same outcome over REST, for a bidder who comes back later.
        result = await api.call("GET", f"/api/v1/lots/{lot_id}/result", token=winner_token)
        assert result.status == 200, result.body
        answer = result.json
        assert (answer["outcome"], answer["order_id"], answer["pay_by"], answer["price"]) == (
            "won",
            order["id"],
            order["deadline_ms"],
            11_000,
        )
        assert answer["lot_id"] == lot_id and answer["state"] == 4
        assert answer["deposit"]["amount"] == 1_000 and answer["deposit"]["refund"] is None
        # The loser's per-lot deposit is refunded by the worker (to the balance, at once).
        for _ in range(1000):
            lost_result = (await api.call("GET", f"/api/v1/lots/{lot_id}/result", token=loser_token)).json
            if (lost_result["deposit"]["refund"] or {}).get("status") == "refunded":
                break
            await asyncio.sleep(0.01)
        assert (lost_result["outcome"], lost_result["order_id"]) == ("lost", None)
        assert lost_result["pay_by"] is None
        assert lost_result["deposit"]["status"] == "refunded"
        assert lost_result["deposit"]["refund"]["amount"] == 1_000
        listed = (await api.call("GET", "/api/v1/deposits", token=loser_token)).json["items"]
        assert listed[0]["refund_status"] == "refunded"
        none = (await api.call("GET", f"/api/v1/lots/{lot_id}/result", token=bystander_token)).json
        assert (none["outcome"], none["deposit"]) == ("not_bidding", None)
        assert (winner_id, loser_id) != (0, 0)
        for client in (winner, loser, bystander):
            client.close()
    finally:
        settlement.stop.set()
        await worker


async def test_the_rest_result_of_an_open_lot_and_refusals(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    open_answer = await app_server.call("GET", f"/api/v1/lots/{lot_id}/result", token=token)
    assert open_answer.status == 200
    assert {k: open_answer.json[k] for k in ("outcome", "order_id", "pay_by", "deposit")} == {
        "outcome": "open",
        "order_id": None,
        "pay_by": None,
        "deposit": None,
    }
    assert (await app_server.call("GET", f"/api/v1/lots/{lot_id}/result")).status == 401
    unknown = await app_server.call("GET", "/api/v1/lots/999999/result", token=token)
    assert (unknown.status, unknown.code) == (404, "NOT_FOUND")
    assert session_id


async def test_the_ledger_newest_first_paged(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server, deposit=3_000)
    user_id, token = await app_server.register()
    await app_server.credit(user_id, 10_000)
    paid = await app_server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
        token=token,
    )
    assert paid.status == 201
    ledger = await app_server.call("GET", "/api/v1/me/ledger", token=token)
    assert ledger.status == 200 and ledger.json["total"] == 2
    newest, oldest = ledger.json["items"]
    assert (newest["amount"], newest["balance_after"], newest["kind"]) == (-3_000, 7_000, "deposit")
    assert newest["ref"] == newest["reference"] == f"deposit:{paid.json['id']}"
    assert (oldest["amount"], oldest["balance_after"]) == (10_000, 10_000)
    assert newest["id"] and newest["id"] != oldest["id"]
    assert newest["created_at_ms"] >= oldest["created_at_ms"] and newest["created_at"].endswith("Z")
    second = await app_server.call("GET", "/api/v1/me/ledger?page=2&page_size=1", token=token)
    assert [e["id"] for e in second.json["items"]] == [oldest["id"]] and second.json["total"] == 2
    assert (await app_server.call("GET", "/api/v1/me/ledger")).status == 401
    _other, other_token = await app_server.register()
    assert (await app_server.call("GET", "/api/v1/me/ledger", token=other_token)).json["total"] == 0


async def test_public_views_never_show_the_reserve(app_server: AppServer) -> None:
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id, reserve_price=30_000)
    plain_lot = await app_server.create_lot(session_id)
    await app_server.start_bidding(session_id)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    assert (await bidder.bid(lot_id, 12_000, "r1"))["type"] == "accepted"

    session = (await app_server.call("GET", f"/api/v1/sessions/{session_id}")).json
    lot = (await app_server.call("GET", f"/api/v1/lots/{lot_id}")).json
    for body in (session, lot):
        assert "reserve_price" not in json.dumps(body) and "30000" not in json.dumps(body)
    summary = {item["id"]: item for item in session["lots"]}
    assert (summary[lot_id]["has_reserve"], summary[lot_id]["reserve_met"]) == (True, False)
    assert (summary[lot_id]["no_bids"], summary[lot_id]["increment"]) == (False, 1_000)
    assert (summary[plain_lot]["has_reserve"], summary[plain_lot]["no_bids"]) == (False, True)
    assert summary[lot_id]["watchers"] == 0 and lot["watchers"] == 1
    assert (lot["has_reserve"], lot["reserve_met"]) == (True, False)
    # Live frames say when the reserve is met (a watcher's price frames), never what it is.
    watcher = await Bidder.connect(app_server, None)
    watcher.send({"op": "subscribe", "session_id": session_id})
    await watcher.until("snapshot", session_id=session_id)
    assert (await bidder.bid(lot_id, 30_000, "r2", op="max_bid"))["type"] == "accepted"
    price = await watcher.until("price", lot_id=lot_id)
    assert (price["price"], price["reserve_met"]) == (30_000, True)
    assert set(price) == {
        *("type", "session_id", "lot_id", "price", "leader", "bid_count", "next_min"),
        *("ends_at", "seq", "ts", "reserve_met"),
    }
    assert (await app_server.call("GET", f"/api/v1/lots/{lot_id}")).json["reserve_met"] is True
    watcher.close()

    # The admin still sees it.
    admin = await app_server.admin_token()
    closed = await app_server.call("POST", f"/api/v1/admin/lots/{lot_id}/close", token=admin)
    assert closed.status == 200 and closed.json["reserve_price"] == 30_000
    bidder.close()
