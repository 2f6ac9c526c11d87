"""Public reads: session listing with live state, session and lot views, paged pseudonymous bids."""

import re

from engine.book.states import LotState, SessionState
from engine.commands import CloseLot, PlaceBid, SetMaxBid
from tests.gateway.conftest import AppServer, archive_and_compact


async def test_listing_shows_live_state_and_filters(app_server: AppServer) -> None:
    early = await app_server.create_session(title="Early")
    late = await app_server.create_session(
        title="Late",
        preview_start=app_server.session_body()["bidding_end"],
        preview_end=app_server.session_body()["bidding_end"],
        bidding_start=app_server.session_body()["bidding_end"],
        bidding_end="2099-01-01T00:00:00Z",
    )
    await app_server.create_lot(early)

    listing = await app_server.call("GET", "/api/v1/sessions")
    assert listing.status == 200
    assert [item["id"] for item in listing.json["items"]] == [late, early]  # newest bidding start first
    assert listing.json["total"] == 2 and listing.json["page"] == 1 and listing.json["page_size"] == 20
    first = listing.json["items"][1]
    assert first["state"] == int(SessionState.SCHEDULED) and first["lot_count"] == 1
    assert first["bidding_start_ms"] == app_server.engine.book.sessions[early].bidding_start

    await app_server.start_bidding(early)
    bidding = await app_server.call("GET", f"/api/v1/sessions?state={int(SessionState.BIDDING)}")
    assert [item["id"] for item in bidding.json["items"]] == [early]
    assert bidding.json["items"][0]["state_name"] == "bidding"
    scheduled = await app_server.call("GET", "/api/v1/sessions?state=1")
    assert [item["id"] for item in scheduled.json["items"]] == [late]

    paged = await app_server.call("GET", "/api/v1/sessions?page=2&page_size=1")
    assert [item["id"] for item in paged.json["items"]] == [early] and paged.json["total"] == 2


async def test_session_and_lot_views_merge_engine_state(app_server: AppServer) -> None:
    session_id = await app_server.create_session(deposit=0)
    lot_id = await app_server.create_lot(
        session_id,
        catalogue_no="B-7",
        images=["https://img.example/7.jpg"],
        specs=[{"key": "k", "value": "v"}],
    )
    alice, alice_token = await app_server.register()
    await app_server.start_bidding(session_id)
    assert (await app_server.engine.execute(PlaceBid(lot_id, alice, 10_000))).ok

    view = await app_server.call("GET", f"/api/v1/sessions/{session_id}")
    assert view.status == 200
    [lot] = view.json["lots"]
    assert lot["id"] == lot_id and lot["catalogue_no"] == "B-7"
    assert lot["images"] == ["https://img.example/7.jpg"]
    assert lot["state"] == int(LotState.BIDDING) and lot["price"] == 10_000 and lot["bid_count"] == 1
    assert lot["next_min"] == 11_000
    assert lot["leader"] == app_server.ctx.pseudonym(session_id, alice)
    assert re.fullmatch(r"Bidder-[A-Z2-7]{6}", lot["leader"])
    assert lot["ends_at_ms"] == app_server.engine.book.lots[lot_id].ends_at
    assert lot["ends_at"].endswith("Z")

    detail = await app_server.call("GET", f"/api/v1/lots/{lot_id}")
    assert detail.status == 200
    assert detail.json["specs"] == [{"key": "k", "value": "v"}]
    assert detail.json["session"]["id"] == session_id and detail.json["watchers"] == 1
    # 围观 counts distinct viewers: a reload is the same viewer; a signed-in user is another; a
    # stale token still sees the lot (as the same anonymous viewer)
    again = await app_server.call("GET", f"/api/v1/lots/{lot_id}")
    assert again.json["watchers"] == 1
    for _ in range(2):
        signed_in = await app_server.call("GET", f"/api/v1/lots/{lot_id}", token=alice_token)
        assert signed_in.json["watchers"] == 2
    stale = await app_server.call("GET", f"/api/v1/lots/{lot_id}", token="not-a-token")
    assert stale.status == 200 and stale.json["watchers"] == 2
    other_browser = await app_server.call("GET", f"/api/v1/lots/{lot_id}", headers={"User-Agent": "Phone/2"})
    assert other_browser.json["watchers"] == 3
    assert "user_id" not in detail.body.decode() and str(alice) not in detail.json["leader"]


async def test_bids_are_paged_newest_first_with_pseudonyms(app_server: AppServer) -> None:
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id, start_price=1_000, unit=100)
    alice, _ = await app_server.register()
    bob, _ = await app_server.register()
    await app_server.start_bidding(session_id)
    assert (await app_server.engine.execute(SetMaxBid(lot_id, alice, 2_000))).ok
    for price in (1_200, 1_500, 1_900):
        assert (await app_server.engine.execute(PlaceBid(lot_id, bob, price))).ok
    lot = app_server.engine.book.lots[lot_id]
    total = lot.bid_count
    assert total >= 5

    page1 = await app_server.call("GET", f"/api/v1/lots/{lot_id}/bids?page_size=2")
    page2 = await app_server.call("GET", f"/api/v1/lots/{lot_id}/bids?page=2&page_size=2")
    assert page1.status == page2.status == 200
    assert page1.json["total"] == total
    rows = page1.json["items"] + page2.json["items"]
    expected = list(reversed(range(total)))[:4]
    assert [row["price"] for row in rows] == [lot.bids.line(i)[1] for i in expected]
    names = {app_server.ctx.pseudonym(session_id, alice), app_server.ctx.pseudonym(session_id, bob)}
    assert {row["bidder"] for row in rows} <= names
    assert rows[0]["bidder"] == app_server.ctx.pseudonym(session_id, alice)  # the proxy answered last
    assert rows[0]["auto"] is True
    assert rows[0]["at_ms"] == app_server.clock.now_ms()
    beyond = await app_server.call("GET", f"/api/v1/lots/{lot_id}/bids?page=99")
    assert beyond.status == 200 and beyond.json["items"] == [] and beyond.json["total"] == total


async def test_a_compacted_lot_reads_its_bids_and_results_from_the_archive(app_server: AppServer) -> None:
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id, start_price=1_000, unit=100)
    (alice, alice_token), (bob, bob_token), (_carol, carol_token) = [
        await app_server.register() for _ in range(3)
    ]
    await app_server.start_bidding(session_id)
    assert (await app_server.engine.execute(SetMaxBid(lot_id, alice, 2_000))).ok
    for price in (1_200, 1_500):
        assert (await app_server.engine.execute(PlaceBid(lot_id, bob, price))).ok
    assert (await app_server.engine.execute(CloseLot(lot_id))).ok
    paths = [f"/api/v1/lots/{lot_id}/bids?page_size=3", f"/api/v1/lots/{lot_id}/bids?page=2&page_size=3"]
    before = [(await app_server.call("GET", path)).json for path in paths]
    view_before = (await app_server.call("GET", f"/api/v1/lots/{lot_id}")).json

    await archive_and_compact(app_server, lot_id)
    assert app_server.engine.book.lots[lot_id].compacted
    assert [(await app_server.call("GET", path)).json for path in paths] == before
    view = (await app_server.call("GET", f"/api/v1/lots/{lot_id}")).json
    assert {k: view[k] for k in ("state", "price", "leader", "bid_count", "closed")} == {
        k: view_before[k] for k in ("state", "price", "leader", "bid_count", "closed")
    }
    outcomes = [
        (await app_server.call("GET", f"/api/v1/lots/{lot_id}/result", token=token)).json["outcome"]
        for token in (alice_token, bob_token, carol_token)
    ]
    assert outcomes == ["won", "lost", "not_bidding"]
    late = await app_server.engine.execute(PlaceBid(lot_id, bob, 5_000))
    assert late.code == "CLOSED"


async def test_pseudonyms_differ_between_sessions(app_server: AppServer) -> None:
    pseudonym = app_server.ctx.pseudonym
    assert pseudonym(1, 7) == pseudonym(1, 7)
    assert pseudonym(1, 7) != pseudonym(2, 7)
    assert pseudonym(1, 0) == ""


async def test_unknown_ids(app_server: AppServer) -> None:
    for path in ("/api/v1/sessions/77", "/api/v1/lots/77", "/api/v1/lots/77/bids"):
        answer = await app_server.call("GET", path)
        assert answer.status == 404 and answer.code == "NOT_FOUND", path


async def test_health(app_server: AppServer) -> None:
    answer = await app_server.call("GET", "/healthz")
    assert answer.status == 200 and answer.json == {"ok": True}
