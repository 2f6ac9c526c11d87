"""What bidders see of the live controls: `lot_paused` frames, a paused lot in the snapshot, PAUSED
refusals, and after a void the `bid_voided` frame, the new `price` and the voided bidder's notice."""

from __future__ import annotations

from engine.commands import CancelLot, PauseLot, ResumeLot, VoidBid
from tests.gateway.conftest import AppServer
from tests.gateway.test_ws import Bidder, open_lot


async def test_a_pause_is_broadcast_refuses_bids_and_shows_in_the_snapshot(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user_id, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    await bidder.request({"op": "subscribe", "session_id": session_id})

    assert (await app_server.engine.execute(PauseLot(lot_id, "photo"))).ok
    ends_at = app_server.engine.book.lots[lot_id].ends_at
    frame = await bidder.until("lot_paused", lot_id=lot_id)
    assert frame == {
        "type": "lot_paused",
        "lot_id": lot_id,
        "session_id": session_id,
        "paused": True,
        "ends_at": ends_at,
    }
    refused = await bidder.bid(lot_id, 10_000, "p1")
    assert (refused["type"], refused["code"]) == ("rejected", "PAUSED")

    late = await Bidder.connect(app_server)
    snapshot = await late.request({"op": "subscribe", "session_id": session_id})
    assert snapshot["lots"][0]["paused"] is True

    app_server.clock.advance(5_000)
    assert (await app_server.engine.execute(ResumeLot(lot_id))).ok
    resumed = await bidder.until("lot_paused", lot_id=lot_id, paused=False)
    assert resumed["ends_at"] == ends_at + 5_000
    assert (await bidder.bid(lot_id, 10_000, "p2"))["type"] == "accepted"
    bidder.close()
    late.close()


async def test_a_void_tells_the_session_and_the_voided_bidder(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    alice_id, alice_token = await app_server.register()
    bob_id, bob_token = await app_server.register()
    alice = await Bidder.connect(app_server, alice_token)
    bob = await Bidder.connect(app_server, bob_token)
    watcher = await Bidder.connect(app_server)
    await watcher.request({"op": "subscribe", "session_id": session_id})
    assert (await alice.bid(lot_id, 10_000, "a1"))["type"] == "accepted"
    assert (await bob.bid(lot_id, 90_000, "b1"))["type"] == "accepted"  # meant 11,000

    assert (await app_server.engine.execute(VoidBid(lot_id, 1, "fat finger"))).ok
    voided = await watcher.until("bid_voided", lot_id=lot_id)
    alice_name = app_server.ctx.pseudonym(session_id, alice_id)
    assert voided == {
        "type": "bid_voided",
        "lot_id": lot_id,
        "session_id": session_id,
        "price": 10_000,
        "leader": alice_name,
        "bid_count": 1,
        "next_min": 11_000,
    }
    price = await watcher.until("price", lot_id=lot_id, price=10_000)
    assert (price["leader"], price["bid_count"]) == (alice_name, 1)
    notice = await bob.until("your_bid_voided", lot_id=lot_id)
    assert notice == {
        "type": "your_bid_voided",
        "lot_id": lot_id,
        "session_id": session_id,
        "price": 10_000,
        "leading": False,
    }
    assert bob_id != alice_id
    assert not [f for f in alice.frames if f["type"] == "your_bid_voided"]
    for socket in (alice, bob, watcher):
        socket.close()


async def test_a_withdrawn_lot_closes_unsold_and_says_so(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user_id, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    await bidder.request({"op": "subscribe", "session_id": session_id})
    assert (await bidder.bid(lot_id, 10_000, "w1"))["type"] == "accepted"
    assert (await app_server.engine.execute(CancelLot(lot_id, "consignor withdrew"))).ok
    closed = await bidder.until("closed", lot_id=lot_id)
    assert (closed["result"], closed["winner"], closed["withdrawn"]) == ("unsold", "", True)
    result = await bidder.until("result", lot_id=lot_id)
    assert (result["outcome"], result["order_id"]) == ("lost", None)
    bidder.close()
