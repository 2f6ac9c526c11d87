"""The bidder websocket end to end: real app, real MongoDB and Redis, the engine with a fake clock."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from engine.book.book import Book
from engine.book.increments import FixedIncrement
from engine.book.states import LotState
from gateway.ws import deposit_state
from tests.gateway.conftest import AppServer


class Bidder:
    """A websocket client that keeps every frame it receives, for assertions."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, server: AppServer, token: str | None = None) -> Bidder:
        url = server.ws_url + (f"?token={token}" if token else "")
        bidder = cls(await tornado.websocket.websocket_connect(url))
        hello = await bidder.next()
        assert hello["type"] == "hello" and hello["user"] is bool(token)
        return bidder

    async def next(self, within_s: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.read_message(), within_s)
        assert raw is not None, "the server closed the socket"
        frame = orjson.loads(raw)
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, within_s: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Read until a frame of `kind` (with the given field values) arrives."""
        while True:
            frame = await self.next(within_s)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    def send(self, message: Any) -> None:
        """bytes go as a binary frame, str as text, anything else as JSON text."""
        if isinstance(message, bytes):
            self.conn.write_message(message, binary=True)
        else:
            self.conn.write_message(message if isinstance(message, str) else json.dumps(message))

    async def request(self, message: Any) -> dict[str, Any]:
        self.send(message)
        return await self.next()

    async def bid(self, lot_id: int, price: int, ref: str, op: str = "bid") -> dict[str, Any]:
        key = "max" if op == "max_bid" else "price"
        self.send({"op": op, "lot_id": lot_id, key: price, "ref": ref})
        while True:
            frame = await self.next()
            if frame.get("ref") == ref and frame["type"] in ("accepted", "rejected"):
                return frame

    def close(self) -> None:
        self.conn.close()


async def open_lot(
    server: AppServer, *, deposit: int = 0, reserve: int = 0, session_deposit: int = 0
) -> tuple[int, int]:
    session_id = await server.create_session(deposit=session_deposit)
    lot_id = await server.create_lot(session_id, deposit=deposit, reserve_price=reserve)
    await server.start_bidding(session_id)
    return session_id, lot_id


async def funded_bidder(server: AppServer, session_id: int, lot_id: int | None) -> tuple[int, str]:
    user_id, token = await server.register()
    await server.credit(user_id, 1_000_000)
    answer = await server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
        token=token,
    )
    assert answer.status == 201 and answer.json["status"] == "paid", answer.body
    return user_id, token


async def test_two_bidders_race_the_leader_wins_the_other_is_outbid_and_no_deposit_is_refused(
    app_server: AppServer,
) -> None:
    session_id, lot_id = await open_lot(app_server, deposit=5_000, session_deposit=20_000)
    _alice_id, alice_token = await funded_bidder(app_server, session_id, lot_id)
    _bob_id, bob_token = await funded_bidder(app_server, session_id, None)  # whole-session deposit
    _carol_id, carol_token = await app_server.register()
    alice = await Bidder.connect(app_server, alice_token)
    bob = await Bidder.connect(app_server, bob_token)
    carol = await Bidder.connect(app_server, carol_token)
    watcher = await Bidder.connect(app_server)
    snapshot = await watcher.request({"op": "subscribe", "session_id": session_id})
    assert snapshot["type"] == "snapshot"
    assert snapshot["lots"][0] | {"ends_at": 0, "leader": ""} == {
        "lot_id": lot_id,
        "state": int(LotState.BIDDING),
        "price": 0,
        "leader": "",
        "bid_count": 0,
        "next_min": 10_000,
        "ends_at": 0,
        "no_bids": True,
        "increment": 1_000,
        "paused": False,
    }

    # Alice leaves a hidden maximum; Bob's plain bids are answered by her proxy at once.
    first = await alice.bid(lot_id, 15_000, "a1", op="max_bid")
    assert first["type"] == "accepted" and first["price"] == 10_000 and first["leading"] is True
    beaten = await bob.bid(lot_id, 12_000, "b1")
    assert beaten["type"] == "accepted" and beaten["leading"] is False and beaten["price"] == 13_000
    assert (await bob.until("outbid", lot_id=lot_id))["price"] == 13_000
    winning = await bob.bid(lot_id, 16_000, "b2")
    assert winning["type"] == "accepted" and winning["leading"] is True and winning["price"] == 16_000
    assert (await alice.until("outbid", lot_id=lot_id))["price"] == 16_000
    refused = await carol.bid(lot_id, 17_000, "c1")
    assert refused == {
        "type": "rejected",
        "ref": "c1",
        "lot_id": lot_id,
        "code": "NO_DEPOSIT",
        "next_min": 17_000,
    }

    price = await watcher.until("price", lot_id=lot_id, price=16_000)
    bob_name = app_server.ctx.pseudonym(session_id, _bob_id)
    # alice 10,000 (max), bob 12,000, alice 13,000 (proxy), alice 15,000 (proxy, her max), bob 16,000
    assert price["leader"] == bob_name and price["bid_count"] == 5
    assert "bidder" not in json.dumps(price) and "user" not in price  # a pseudonym, never an id or name

    # A late bid extends the lot; at its end it sells to Bob.
    lot = app_server.engine.book.lots[lot_id]
    end = lot.ends_at
    await app_server.advance_to(end - 10_000)
    late = await alice.bid(lot_id, 17_000, "a2")
    assert late["type"] == "accepted"
    extended = await watcher.until("extended", lot_id=lot_id)
    assert extended["ends_at"] == end - 10_000 + 60_000
    await app_server.advance_to(extended["ends_at"])
    closed = await watcher.until("closed", lot_id=lot_id)
    assert closed["result"] == "sold" and closed["price"] == 17_000
    assert closed["winner"] == app_server.ctx.pseudonym(session_id, _alice_id)
    after = await bob.bid(lot_id, 18_000, "b3")
    assert after["code"] == "CLOSED"
    for client in (alice, bob, carol, watcher):
        client.close()


async def test_a_lot_below_its_reserve_closes_unsold(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server, reserve=50_000)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    await bidder.request({"op": "subscribe", "session_id": session_id})
    assert (await bidder.bid(lot_id, 20_000, "r1"))["type"] == "accepted"
    await app_server.advance_to(app_server.engine.book.lots[lot_id].ends_at)
    closed = await bidder.until("closed", lot_id=lot_id)
    assert closed["result"] == "unsold" and closed["winner"] == "" and closed["withdrawn"] is False
    bidder.close()


async def test_a_retried_ref_gets_the_first_answer_and_bids_once(app_server: AppServer) -> None:
    _session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    first = await bidder.bid(lot_id, 10_000, "same")
    again = await bidder.bid(lot_id, 10_000, "same")
    assert first["type"] == "accepted" and again == first
    # A reconnect (the phone changed networks) and the same retry: still one bid.
    bidder.close()
    bidder = await Bidder.connect(app_server, token)
    assert await bidder.bid(lot_id, 10_000, "same") == first
    assert app_server.engine.book.lots[lot_id].bid_count == 1
    bidder.close()


async def test_a_ref_reused_for_a_different_bid_is_rejected_and_others_are_unaffected(
    app_server: AppServer,
) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    _other, other_token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    other = await Bidder.connect(app_server, other_token)
    watcher = await Bidder.connect(app_server)
    await watcher.request({"op": "subscribe", "session_id": session_id})
    first = await bidder.bid(lot_id, 10_000, "same")
    assert first["type"] == "accepted"
    await watcher.until("price", lot_id=lot_id, price=10_000)
    seq = app_server.engine.last_seq
    reused = await bidder.bid(lot_id, 12_000, "same")
    assert reused == {
        "type": "rejected",
        "ref": "same",
        "lot_id": lot_id,
        "code": "REF_REUSED",
        "next_min": first["next_min"],
    }
    assert (await bidder.bid(lot_id, 11_000, "same", op="max_bid"))["code"] == "REF_REUSED"
    assert app_server.engine.last_seq == seq and app_server.engine.book.lots[lot_id].bid_count == 1
    assert await bidder.bid(lot_id, 10_000, "same") == first  # the real retry, as before
    # Another bidder's "same" is its own ref; its bid and the watcher's feed go on as usual.
    theirs = await other.bid(lot_id, 12_000, "same")
    assert theirs["type"] == "accepted" and theirs["leading"] is True
    price = await watcher.until("price", lot_id=lot_id)
    assert price["price"] == 12_000 and price["bid_count"] == 2
    assert (await bidder.until("outbid", lot_id=lot_id))["price"] == 12_000
    for client in (bidder, other, watcher):
        client.close()


async def test_anonymous_sockets_watch_but_cannot_bid_and_bad_tokens_are_refused(
    app_server: AppServer,
) -> None:
    _session_id, lot_id = await open_lot(app_server)
    anonymous = await Bidder.connect(app_server)
    answer = await anonymous.bid(lot_id, 10_000, "anon")
    assert answer["type"] == "rejected" and answer["code"] == "NOT_AUTHENTICATED"
    assert app_server.engine.book.lots[lot_id].bid_count == 0
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(app_server.ws_url + "?token=not-a-token")
    assert refused.value.code == 401
    anonymous.close()


BAD_FRAMES: list[tuple[Any, str]] = [
    ("not json", "BAD_JSON"),
    (b"\xff\xfe\x00binary", "BINARY_FRAME"),
    (b'{"op":"ping"}', "BINARY_FRAME"),
    ("[1, 2, 3]", "BAD_REQUEST"),
    ('"just a string"', "BAD_REQUEST"),
    ({"op": "fly"}, "UNKNOWN_OP"),
    ({"no_op": 1}, "UNKNOWN_OP"),
    ({"op": 7}, "UNKNOWN_OP"),
    ({"op": "subscribe"}, "BAD_REQUEST"),
    ({"op": "subscribe", "session_id": "1"}, "BAD_REQUEST"),
    ({"op": "subscribe", "session_id": 999_999}, "NOT_FOUND"),
    ({"op": "bid", "lot_id": 1, "price": 10_000}, "BAD_REQUEST"),  # no ref
    ({"op": "bid", "lot_id": 1, "price": 10_000, "ref": ""}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": 10_000, "ref": "r" * 65}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": 10_000, "ref": 5}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": "LOT", "price": 10_000, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": 100.5, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": 10_000.0, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": -10_000, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": 0, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": True, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "price": None, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "bid", "lot_id": 1, "ref": "x"}, "BAD_REQUEST"),
    ('{"op":"bid","lot_id":1,"price":1180591620717411303424,"ref":"x"}', "BAD_REQUEST"),  # 2**70
    ({"op": "bid", "lot_id": 1, "price": 2**60, "ref": "x"}, "BAD_REQUEST"),
    ({"op": "max_bid", "lot_id": 1, "price": 10_000, "ref": "x"}, "BAD_REQUEST"),  # max, not price
    ('{"op":"bid","lot_id":1,"price":NaN,"ref":"x"}', "BAD_JSON"),
    ('{"op":"bid","lot_id":1,"price":1e400,"ref":"x"}', "BAD_JSON"),
    ({"op": "bid", "lot_id": [1], "price": {"a": 1}, "ref": "x"}, "BAD_REQUEST"),
    ("[" * 10_000 + "]" * 10_000, "BAD_JSON"),
    ({"op": "bid", "lot_id": 1, "price": 10_000, "ref": "x", "pad": "x" * 70_000}, "FRAME_TOO_LARGE"),
]


async def test_every_bad_frame_gets_a_coded_error_and_touches_nothing(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    attacker = await Bidder.connect(app_server, token)
    bystander = await Bidder.connect(app_server)
    await bystander.request({"op": "subscribe", "session_id": session_id})
    state_before = app_server.engine.book.to_state()
    seq_before = app_server.engine.last_seq
    for frame, code in BAD_FRAMES:
        if isinstance(frame, dict) and frame.get("lot_id") == 1:
            frame = frame | {"lot_id": lot_id}
        answer = await attacker.request(frame)
        assert answer["type"] in ("error", "rejected"), (frame, answer)
        assert answer["code"] == code, (str(frame)[:80], answer)
    assert app_server.engine.book.to_state() == state_before
    assert app_server.engine.last_seq == seq_before
    # The same socket still bids, and the bystander sees only the real bid.
    assert (await attacker.bid(lot_id, 10_000, "good"))["type"] == "accepted"
    price = await bystander.until("price", lot_id=lot_id)
    assert price["price"] == 10_000
    assert all(frame["type"] in ("hello", "snapshot", "price") for frame in bystander.frames)
    attacker.close()
    bystander.close()


async def test_a_frame_over_a_mebibyte_closes_only_that_socket(app_server: AppServer) -> None:
    _session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    flooder = await Bidder.connect(app_server, token)
    other = await Bidder.connect(app_server, token)
    flooder.send("x" * (2 << 20))
    assert await asyncio.wait_for(flooder.conn.read_message(), 5) is None
    assert (await other.bid(lot_id, 10_000, "still-fine"))["type"] == "accepted"
    other.close()


async def test_subscribe_unsubscribe_and_ping(app_server: AppServer) -> None:
    session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    watcher = await Bidder.connect(app_server)
    assert (await watcher.request({"op": "ping"}))["type"] == "pong"
    await watcher.request({"op": "subscribe", "session_id": session_id})
    assert await watcher.request({"op": "unsubscribe", "session_id": session_id}) == {
        "type": "unsubscribed",
        "session_id": session_id,
    }
    await bidder.bid(lot_id, 10_000, "p1")
    assert (await watcher.request({"op": "ping"}))["type"] == "pong"  # no price frame came first
    bidder.close()
    watcher.close()


async def test_bids_beyond_the_rate_limit_are_rejected_with_a_code(app_server: AppServer) -> None:
    _session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    for n in range(60):
        bidder.send({"op": "bid", "lot_id": lot_id, "price": 10_000 + 1_000 * n, "ref": f"burst{n}"})
    answers = [await bidder.next() for _ in range(60)]
    codes = [a.get("code") for a in answers if a["type"] == "rejected"]
    assert "RATE_LIMITED" in codes
    assert sum(1 for a in answers if a["type"] == "accepted") <= 41
    bidder.close()


async def test_health_readiness_and_metrics(app_server: AppServer) -> None:
    _session_id, lot_id = await open_lot(app_server)
    _user, token = await app_server.register()
    bidder = await Bidder.connect(app_server, token)
    await bidder.bid(lot_id, 10_000, "m1")
    await bidder.bid(lot_id, 10_000, "m2")  # SELF_OUTBID
    assert (await app_server.call("GET", "/healthz")).status == 200
    ready = await app_server.call("GET", "/readyz")
    assert ready.status == 200 and ready.json == {
        "ready": True,
        "checks": {"engine": True, "mongodb": True, "redis": True},
    }
    answer = await app_server.call("GET", "/metrics")
    text = answer.body.decode()
    assert 'gavel_bids_total{outcome="accepted",code=""} 1' in text
    assert 'gavel_bids_total{outcome="rejected",code="SELF_OUTBID"} 1' in text
    assert "gavel_bid_ack_seconds_count 2" in text
    assert "gavel_websockets_open 1" in text
    assert "gavel_settlement_backlog 0" in text
    me = await app_server.call("GET", "/api/v1/me", token=token, headers={"X-Request-Id": "trace-42"})
    assert me.headers["X-Request-Id"] == "trace-42"
    bidder.close()


async def test_connections_per_address_are_limited(app_server: AppServer) -> None:
    app_server.ctx.limits.ws_connections_per_ip = 3
    sockets = [await Bidder.connect(app_server) for _ in range(3)]
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(app_server.ws_url)
    assert refused.value.code == 429
    sockets.pop().close()
    await app_server.wait_for(lambda: app_server.ctx.hub.by_ip.get("127.0.0.1") == 2)
    sockets.append(await Bidder.connect(app_server))  # a freed place can be taken again
    for socket in sockets:
        socket.close()


async def test_a_lagging_subscriber_gets_only_the_latest_price_and_is_closed_if_it_stays_behind(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.ws

    slow = await Bidder.connect(app_server)  # it stops reading from here on
    (handler,) = app_server.ctx.hub.sockets
    filler = orjson.dumps({"type": "state", "lot_id": 0, "pad": "x" * 200_000})
    sent = 0
    while handler._latest is None:  # fill the socket buffers until the server sees it lagging
        handler.send(filler)
        sent += 1
        assert sent < 2_000, "the socket never filled up"
    for lot_id, price in ((1, 100), (1, 200), (2, 50), (1, 300)):
        handler.send(orjson.dumps({"type": "price", "lot_id": lot_id, "price": price}))
    # It reads again: everything written arrives, then only the newest price of each lot.
    prices = []
    while len(prices) < 2:
        frame = await slow.next(within_s=20)
        if frame["type"] == "price":
            prices.append((frame["lot_id"], frame["price"]))
    assert prices == [(1, 300), (2, 50)]

    # A subscriber still behind after the grace period is closed with 4008.
    monkeypatch.setattr(gateway.ws, "SLOW_CONSUMER_GRACE_S", 0.0)
    while handler._latest is None:
        handler.send(filler)
    handler.send(filler)
    assert handler.ws_connection is None or handler.ws_connection.is_closing()
    slow.close()


def one_socket_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hub step writes one socket and hands the loop back: a sweep over a few sockets then
    behaves as one over ten thousand, with bids and closes landing in the middle of it."""
    import gateway.ws

    monkeypatch.setattr(gateway.ws, "FANOUT_CHUNK_S", 0.0)
    monkeypatch.setattr(gateway.ws, "FANOUT_BATCH", 1)


@pytest.fixture(params=["direct", "transport"])
def fanout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sweep's two write paths: the sweep and its sends in C where gateway/_fanout.c is built,
    and the transports' writes (the Python roster, as on a machine that could not build it)."""
    import gateway.roster
    import gateway.ws

    if request.param == "transport":
        monkeypatch.setattr(gateway.ws, "new_roster", gateway.roster.PyRoster)
    elif not gateway.roster.SWEEPS_FROM_C:
        pytest.skip("gateway/_fanout.c not built (build_fanout.py)")
    return str(request.param)


async def test_a_sweep_in_chunks_gives_every_subscriber_every_price_in_order_and_forgets_them(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch, fanout: str
) -> None:
    one_socket_per_step(monkeypatch)
    session_id, lot_id = await open_lot(app_server)
    bidders = [await Bidder.connect(app_server, (await app_server.register())[1]) for _ in range(2)]
    watchers = [await Bidder.connect(app_server) for _ in range(6)]
    for watcher in watchers:
        assert (await watcher.request({"op": "subscribe", "session_id": session_id}))["type"] == "snapshot"
    answers = []
    price = 10_000
    for n in range(4):  # each acknowledged before the next: they land in successive sweeps
        answer = await bidders[n % 2].bid(lot_id, price, f"s{n}")
        assert answer["type"] == "accepted"
        answers.append(answer)
        price = answer["next_min"]
    for watcher in watchers:
        await watcher.until("price", lot_id=lot_id, price=answers[-1]["price"])
        seqs = [f["seq"] for f in watcher.frames if f["type"] == "price"]
        assert seqs == sorted(set(seqs)) and seqs[-1] == answers[-1]["seq"]
        assert set(seqs) <= {a["seq"] for a in answers}  # only the bids' own prices
    hub = app_server.ctx.hub
    await app_server.wait_for(lambda: hub._sweep is None and not hub._behind)
    # Every subscriber is up to date, so the session keeps none of the frames already written.
    log = hub._logs[session_id]
    assert log.frames == [] and {hub.position(s, session_id) for s in hub.by_session[session_id]} == {log.end}
    for socket in (*bidders, *watchers):
        socket.close()


async def test_a_result_never_overtakes_the_closed_frame_a_sweep_has_not_yet_written(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch, fanout: str
) -> None:
    one_socket_per_step(monkeypatch)
    session_id, lot_id = await open_lot(app_server)
    watchers = [await Bidder.connect(app_server) for _ in range(5)]
    for watcher in watchers:
        await watcher.request({"op": "subscribe", "session_id": session_id})
    _winner_id, winner_token = await app_server.register()
    _loser_id, loser_token = await app_server.register()
    winner = await Bidder.connect(app_server, winner_token)
    loser = await Bidder.connect(app_server, loser_token)
    await loser.request({"op": "subscribe", "session_id": session_id})  # last in the sweep's order
    first = await loser.bid(lot_id, 10_000, "l1")
    assert (await winner.bid(lot_id, first["next_min"], "w1"))["type"] == "accepted"
    await app_server.advance_to(app_server.engine.book.lots[lot_id].ends_at)
    result = await loser.until("result", lot_id=lot_id)
    assert result["outcome"] == "lost"
    kinds = [f["type"] for f in loser.frames if f.get("lot_id") == lot_id]
    assert "closed" in kinds and kinds.index("closed") < kinds.index("result")
    for socket in (winner, loser, *watchers):
        socket.close()


def test_a_session_log_frames_each_suffix_once_and_forgets_what_everyone_has() -> None:
    from gateway.ws import SessionLog, text_frame

    log = SessionLog()
    for frame in (b'{"n":0}', b'{"n":1}', b'{"n":2}'):
        log.append(frame)
    frames, wire = log.since(1)
    assert frames == [b'{"n":1}', b'{"n":2}'] and wire == text_frame(b'{"n":1}') + text_frame(b'{"n":2}')
    assert log.since(1)[1] is wire  # built once for every subscriber at that position
    log.forget_before(2)
    assert (log.base, log.end, log.frames) == (2, 3, [b'{"n":2}'])
    log.append(b'{"n":3}')
    assert log.since(2)[0] == [b'{"n":2}', b'{"n":3}'] and log.since(4) == ([], b"")
    log.forget_before(10)  # never past the end
    assert (log.base, log.end, log.frames) == (4, 4, [])


async def test_price_frames_are_published_on_the_sessions_redis_channel(app_server: AppServer) -> None:
    """Another gateway process would subscribe to `gavel:session:{id}` and fan out what it gets."""
    from persistence.redis_bus import PriceBus

    session_id, lot_id = await open_lot(app_server)
    this_gateway = PriceBus(app_server.ctx.redis, origin="gateway-a")
    other_gateway = PriceBus(app_server.ctx.redis, origin="gateway-b")
    this_gateway.start()
    other_gateway.start()
    received: list[tuple[int, dict[str, Any]]] = []
    await other_gateway.subscribe(
        [session_id], lambda sid, frame: received.append((sid, orjson.loads(frame)))
    )
    app_server.ctx.hub.publish = this_gateway.publish
    try:
        _user, token = await app_server.register()
        bidder = await Bidder.connect(app_server, token)
        assert (await bidder.bid(lot_id, 10_000, "pub"))["type"] == "accepted"
        await app_server.wait_for(lambda: any(f["type"] == "price" for _sid, f in received))
        sid, frame = next((sid, f) for sid, f in received if f["type"] == "price")
        assert sid == session_id and frame["lot_id"] == lot_id and frame["price"] == 10_000
        bidder.close()
    finally:
        app_server.ctx.hub.publish = None
        await this_gateway.stop()
        await other_gateway.stop()


def test_a_closed_lot_never_asks_for_a_deposit_and_a_compacted_one_forgets_its_payers() -> None:
    book = Book()
    book.put_session(1, preview_start=0, preview_end=0, bidding_start=10, bidding_end=1_000)
    book.put_lot(1, 1, FixedIncrement(100, 10), deposit=5_000)
    book.register_deposit(1, 1, 7)
    book.advance(10)
    assert book.place(1, 7, 200, False, 20).accepted
    assert (deposit_state(book.lot(1), 7), deposit_state(book.lot(1), 8)) == ("paid", "needed")
    book.close_lot(1, 50)
    assert (deposit_state(book.lot(1), 7), deposit_state(book.lot(1), 8)) == ("paid", "not_needed")
    book.compact_lots([1])
    assert (deposit_state(book.lot(1), 7), deposit_state(book.lot(1), 8)) == ("not_needed", "not_needed")


def test_a_whole_session_deposit_reads_paid_until_the_ended_session_is_compacted() -> None:
    book = Book()
    book.put_session(1, preview_start=0, preview_end=0, bidding_start=10, bidding_end=1_000, deposit=5_000)
    for lot_id in (1, 2):
        book.put_lot(lot_id, 1, FixedIncrement(100, 10))
    book.register_deposit(1, None, 7)
    book.advance(1_000)  # both close: the session ends
    book.compact_lots([1])
    assert [deposit_state(book.lot(lot_id), 7) for lot_id in (1, 2)] == ["paid", "paid"]
    book.compact_lots([2])  # every close settled: the session lets its depositors go
    assert [deposit_state(book.lot(lot_id), 7) for lot_id in (1, 2)] == ["not_needed", "not_needed"]


def test_the_hubs_kept_snapshot_json_holds_its_bytes_not_orjsons_buffer() -> None:
    # A session's per-lot snapshot JSON is kept for up to SNAPSHOT_CACHE_SIZE sessions; orjson's
    # output would hold ~4 KiB of malloc per lot whatever its length (persistence/kept_json.py).
    import tracemalloc
    from types import SimpleNamespace

    from gateway.ws import Hub

    book = Book()
    book.put_session(1, preview_start=0, preview_end=0, bidding_start=10, bidding_end=1_000)
    for lot_id in (1, 2, 3):
        book.put_lot(lot_id, 1, FixedIncrement(100, 10))
    engine = SimpleNamespace(book=book, last_seq=1)
    hub = Hub(SimpleNamespace(engine=engine, pseudonym=lambda session_id, user: ""))  # type: ignore[arg-type]
    tracemalloc.start(1)
    try:
        lots = hub._snapshot_lots(1, [1, 2, 3])
        assert [json.loads(part)["lot_id"] for _lot, part in lots] == [1, 2, 3]
        for _lot, part in lots:
            made_at = tracemalloc.get_object_traceback(part)
            assert made_at is not None and made_at[0].filename.endswith("persistence/kept_json.py")
    finally:
        tracemalloc.stop()
    assert hub._snapshot_lots(1, [1, 2, 3]) is lots  # kept while the engine's seq is the same


class RecordingSocket:
    """What the hub needs of a subscriber, keeping every frame written to it."""

    def __init__(self) -> None:
        self.subscriptions: set[int] = set()
        self.got: list[bytes] = []

    def send_many(self, frames: Any, wire: bytes | None = None) -> None:
        self.got.extend(frames)

    def send(self, frame: bytes) -> None:
        self.got.append(frame)

    def direct_fd(self) -> int:
        return -1  # no descriptor: written through send_many

    def outlet(self) -> Any:
        from gateway.roster import Outlet

        return Outlet(-1)  # never ready: written through send_many


async def test_a_sweep_whose_subscribers_all_left_does_not_drop_the_frames_of_those_who_came_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from gateway.ws import Hub

    one_socket_per_step(monkeypatch)
    hub = Hub(SimpleNamespace())  # type: ignore[arg-type]
    first = [RecordingSocket() for _ in range(3)]
    for socket in first:
        hub.join(socket, 1)  # type: ignore[arg-type]
    hub._frames.append((1, b'{"n":1}'))
    hub.flush()  # writes the first subscriber, then hands the loop back mid-sweep
    for socket in first:
        hub.leave(socket, 1)  # type: ignore[arg-type]
    later = RecordingSocket()
    hub.join(later, 1)  # type: ignore[arg-type]
    hub._frames.append((1, b'{"n":2}'))
    hub.flush()
    for _ in range(50):
        await asyncio.sleep(0)
    assert [s.got for s in first] == [[b'{"n":1}'], [], []]
    assert later.got == [b'{"n":2}']
    assert hub._sweep is None and not hub._behind and hub._logs[1].frames == []


# -- the sweep's direct sends from C on two threads (gateway/_fanout.c) --------------------------------


def test_write_many_reports_only_the_sends_that_did_not_take_their_whole_payload() -> None:
    import socket as sockets

    fanout = pytest.importorskip("gateway._fanout", reason="gateway/_fanout.c not built (build_fanout.py)")
    pairs = [sockets.socketpair() for _ in range(100)]  # past the split threshold: two threads
    try:
        tiny, tiny_peer = pairs[7]
        tiny.setsockopt(sockets.SOL_SOCKET, sockets.SO_SNDBUF, 4096)
        tiny_peer.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
        pairs[9][1].close()  # its peer is gone: EPIPE
        payloads = [b"%d:" % n + b"x" * 100 for n in range(100)]
        payloads[7] = b"y" * 1_000_000
        report = dict(fanout.write_many([a.fileno() for a, _ in pairs], payloads, 2))
        assert set(report) == {7, 9}
        assert 0 < report[7] < len(payloads[7]) and report[9] < 0
        for n, (_, peer) in enumerate(pairs):
            if n not in (7, 9):
                assert peer.recv(1000) == payloads[n]
        assert fanout.write_many([10**6], [b"x"], 1) == [(0, -9)]  # EBADF
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_begin_sends_on_the_worker_while_the_caller_goes_on_and_end_reports_as_write_many() -> None:
    import socket as sockets

    fanout = pytest.importorskip("gateway._fanout", reason="gateway/_fanout.c not built (build_fanout.py)")
    assert fanout.end() == []  # nothing begun
    pairs = [sockets.socketpair() for _ in range(100)]  # past the split threshold: the worker sends
    try:
        pairs[3][1].close()  # its peer is gone: EPIPE
        payloads = [b"%d:" % n + b"x" * 100 for n in range(100)]
        fds = [a.fileno() for a, _ in pairs]
        fanout.begin(fds, payloads, 2)
        with pytest.raises(RuntimeError):
            fanout.begin(fds, payloads, 2)  # one batch in flight at a time
        del payloads[50:]  # the module holds its own references until end()
        report = fanout.end()
        assert [(i, sent < 0) for i, sent in report] == [(3, True)]
        for n, (_, peer) in enumerate(pairs):
            if n != 3:
                assert peer.recv(1000) == b"%d:" % n + b"x" * 100
        assert fanout.end() == []
        for _round in range(200):  # batch after batch, each begun while the worker may still be waking
            fanout.begin(fds[:64], [b"y"] * 64, 2)
            assert [i for i, _ in fanout.end()] == [3]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


class SweepRecorder:
    """Every roster the hub makes is the C one wrapped: each sweep() call's slots written from C
    (`direct`: how many positions it moved), its slow slots and its short sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import gateway.ws

        fanout = pytest.importorskip(
            "gateway._fanout", reason="gateway/_fanout.c not built (build_fanout.py)"
        )
        self.calls: list[tuple[int, int]] = []  # (sockets sent from C, slow slots) per call
        self.short: list[tuple[int, int, int]] = []  # (slot, sent or -errno, wire length)
        recorder = self

        class Recorded:
            def __init__(self) -> None:
                self.real = fanout.Roster()

            def __getattr__(self, name: str) -> Any:
                return getattr(self.real, name)

            def __len__(self) -> int:
                return len(self.real)

            def sweep(self, start: int, end: int, since: Any, *rest: Any) -> Any:
                index, slow, short, frames, sends = self.real.sweep(start, end, since, *rest)
                recorder.calls.append((sends, len(slow)))
                recorder.short += [(slot, sent, len(since(before))) for slot, sent, before in short]
                return index, slow, short, frames, sends

        monkeypatch.setattr(gateway.ws, "new_roster", Recorded)


def price(n: int, pad: int = 0) -> bytes:
    return orjson.dumps({"type": "price", "lot_id": 1, "n": n, "pad": "p" * pad})


async def subscribed_watchers(server: AppServer, count: int) -> tuple[int, list[Bidder]]:
    server.ctx.limits.ws_connections_per_ip = count + 8
    session_id, _lot_id = await open_lot(server)
    watchers = await asyncio.gather(*(Bidder.connect(server) for _ in range(count)))
    for watcher in watchers:
        assert (await watcher.request({"op": "subscribe", "session_id": session_id}))["type"] == "snapshot"
    await server.wait_for(lambda: all(s.direct_fd() >= 0 for s in server.ctx.hub.sockets))
    # What the sweep in C reads is what the handler and its stream say.
    assert all(s.outlet().ready for s in server.ctx.hub.sockets)
    return session_id, list(watchers)


async def test_direct_sends_on_two_threads_give_many_sockets_every_frame_in_order(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = SweepRecorder(monkeypatch)
    session_id, watchers = await subscribed_watchers(app_server, 80)
    hub = app_server.ctx.hub
    for n in range(6):  # a sweep each, frames arriving mid-sweep in the chunked ones
        hub._frames.append((session_id, price(n)))
        hub.flush()
    for watcher in watchers:
        await watcher.until("price", n=5)
        assert [f["n"] for f in watcher.frames if f["type"] == "price"] == list(range(6))
    # Every socket of every sweep was written from C (80 a call: past the size at which the sends
    # split over two threads), none handed back.
    assert recorder.calls[:6] == [(80, 0)] * 6
    assert recorder.short == []
    for watcher in watchers:
        watcher.close()


async def test_a_sweep_in_batches_gives_every_socket_every_frame_in_order(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 64 from C, frames arriving between two steps of a sweep: the frames still in
    order on every socket."""
    import gateway.ws

    monkeypatch.setattr(gateway.ws, "FANOUT_BATCH", 64)
    monkeypatch.setattr(gateway.ws, "FANOUT_CHUNK_S", 0.0)  # one batch a step
    recorder = SweepRecorder(monkeypatch)
    session_id, watchers = await subscribed_watchers(app_server, 150)
    hub = app_server.ctx.hub
    for n in range(4):
        hub._frames.append((session_id, price(n)))
        hub.flush()
        hub._frames.append((session_id, price(n + 100)))  # between two steps of a sweep
    hub.flush()
    for watcher in watchers:
        await watcher.until("price", n=103)
        assert [f["n"] for f in watcher.frames if f["type"] == "price"] == [0, 100, 1, 101, 2, 102, 3, 103]
    assert recorder.calls.count((64, 0)) >= 2 and recorder.short == []
    for watcher in watchers:
        watcher.close()


async def test_a_partial_direct_send_is_finished_by_the_transport_before_the_next_frame(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket as sockets

    recorder = SweepRecorder(monkeypatch)
    session_id, (watcher,) = await subscribed_watchers(app_server, 1)
    (handler,) = app_server.ctx.hub.sockets
    fd = handler.direct_fd()
    # Tiny buffers on both ends; the reader cannot read while the sweep holds the loop.
    server_side = sockets.socket(fileno=sockets.dup(fd))
    server_side.setsockopt(sockets.SOL_SOCKET, sockets.SO_SNDBUF, 4096)
    server_side.close()
    watcher.conn.stream.socket.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
    hub = app_server.ctx.hub
    hub._frames.append((session_id, price(0, pad=100_000)))
    hub.flush()
    assert recorder.short and 0 < recorder.short[0][1] < recorder.short[0][2]  # a partial write
    assert handler.direct_fd() == -1  # the rest waits in the transport: no direct send may pass it
    assert not handler.outlet().ready
    hub._frames.append((session_id, price(1)))
    hub.flush()
    first = await watcher.until("price", within_s=10)
    second = await watcher.until("price")
    assert (first["n"], len(first["pad"]), second["n"]) == (0, 100_000, 1)
    watcher.close()


async def test_what_the_sweep_reads_in_c_follows_each_socket_lagging_closing_and_gone(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outlet's two flags are kept by the code that changes what they stand for; the sweep
    sends from C only to a socket whose own checks (direct_fd) would allow it."""
    recorder = SweepRecorder(monkeypatch)
    session_id, watchers = await subscribed_watchers(app_server, 3)
    hub = app_server.ctx.hub

    def handler_of(watcher: Bidder) -> Any:
        port = watcher.conn.stream.socket.getsockname()[1]
        (handler,) = [
            s for s in hub.sockets if s.ws_connection.stream.outlet.fd >= 0 and peer_port(s) == port
        ]
        return handler

    def peer_port(handler: Any) -> int:
        return int(handler.ws_connection.stream._transport.get_extra_info("peername")[1])

    lagging, closing, healthy = (handler_of(w) for w in watchers)
    filler = orjson.dumps({"type": "state", "lot_id": 0, "pad": "x" * 200_000})
    while lagging._latest is None:  # its client reads nothing while this runs: the buffers fill
        lagging.send(filler)
    closing.close(1000)  # the close frame is written now; the client has not answered yet
    for handler in (lagging, closing, healthy):
        assert handler.outlet().ready == (handler.direct_fd() >= 0)
    assert [h.outlet().ready for h in (lagging, closing, healthy)] == [False, False, True]
    hub._frames.append((session_id, price(0)))
    hub.flush()
    assert recorder.calls[-1] == (1, 2)  # the healthy one from C, the other two handed back
    assert (await watchers[2].until("price"))["n"] == 0
    watchers[2].close()
    await app_server.wait_for(lambda: healthy not in hub.sockets)
    assert healthy.outlet().fd == -1 and not healthy.outlet().ready  # lost: its descriptor forgotten
    for watcher in watchers[:2]:
        watcher.close()


async def test_a_direct_send_to_a_peer_that_reset_closes_that_socket_as_its_transport_would(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket as sockets
    import struct

    recorder = SweepRecorder(monkeypatch)
    session_id, watchers = await subscribed_watchers(app_server, 3)
    hub = app_server.ctx.hub
    gone = watchers.pop(1)
    gone.conn.stream.socket.setsockopt(sockets.SOL_SOCKET, sockets.SO_LINGER, struct.pack("ii", 1, 0))
    gone.conn.stream.close()  # a reset the server has not read yet when the sweep sends
    hub._frames.append((session_id, price(0)))
    hub.flush()  # raises nothing
    assert [sent < 0 for _fd, sent, _size in recorder.short] == [True]
    for watcher in watchers:
        assert (await watcher.until("price"))["n"] == 0
    await app_server.wait_for(lambda: len(hub.sockets) == 2 and len(hub.by_session[session_id]) == 2)
    for watcher in watchers:
        watcher.close()


def test_without_the_c_module_the_hub_writes_through_the_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from gateway.roster import PyOutlet, PyRoster, _types

    monkeypatch.setitem(sys.modules, "gateway._fanout", None)  # its import now raises ImportError
    assert _types() == (PyRoster, PyOutlet, False)
