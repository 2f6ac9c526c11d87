"""Hostile input on the websocket: 100,000 frames of garbage, wrong types, extreme numbers, deep
nesting, odd Unicode and oversized frames. No crash, one coded answer per frame, no effect on a
bystander socket, and the engine's state unchanged (the target session is in preview, so even a
well-formed bid is refused)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import AppServer
from tests.gateway.test_ws import Bidder

TOTAL_FRAMES = 100_000
ANSWER_TYPES = {"error", "rejected", "pong", "snapshot", "unsubscribed"}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ops = st.sampled_from(
    ["bid", "max_bid", "subscribe", "unsubscribe", "ping", "BID", "", "bid ", "💥", "__proto__"]
)
frames = st.one_of(
    st.fixed_dictionaries(
        {"op": ops},
        optional={
            "lot_id": json_values,
            "session_id": json_values,
            "price": json_values,
            "max": json_values,
            "ref": json_values,
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(
        [
            '{"op":"bid","lot_id":1,"price":NaN,"ref":"n"}',
            '{"op":"bid","lot_id":1,"price":Infinity,"ref":"n"}',
            '{"op":"bid","lot_id":1,"price":1e309,"ref":"n"}',
            "[" * 5000 + "]" * 5000,
            '{"a":' * 3000 + "1" + "}" * 3000,
            "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
            "\u202e\u0000\ufeff",
        ]
    ),
)


def mutate(frame: str, rng: random.Random) -> str:
    """Cheap variations of a generated frame: hypothesis seeds the corpus, this scales it up."""
    choice = rng.random()
    if choice < 0.3 and frame:
        position = rng.randrange(len(frame))
        return frame[:position] + chr(rng.randrange(32, 0x2FFF)) + frame[position + 1 :]
    if choice < 0.5:
        return frame[: rng.randrange(len(frame) + 1)]
    if choice < 0.6:
        return frame + "x" * rng.choice((1, 1000, 70_000))  # the last is over the 64 KiB limit
    if choice < 0.8:
        return frame.replace("1", str(rng.choice((-1, 0, 2**63, 2**53, -(2**70), 10**400))), 1)
    return frame


EXAMPLES = 50
FRAMES_PER_EXAMPLE = TOTAL_FRAMES // EXAMPLES


class Target:
    """One app, sockets and a preview-only lot shared by every Hypothesis example."""

    attacker: Bidder
    bystander: Bidder
    lot_id: int
    session_id: int
    codes: dict[str, int]


async def hostile_round(server: AppServer, target: Target, seeds: list[str], rng: random.Random) -> None:
    """Send FRAMES_PER_EXAMPLE frames: Hypothesis's seeds, then cheap mutations of them."""
    batch = 500
    sent = 0
    while sent < FRAMES_PER_EXAMPLE:
        for _ in range(batch):
            frame = seeds[sent % len(seeds)]
            if sent >= len(seeds):
                frame = mutate(frame, rng)
            target.attacker.send(frame.replace('"lot_id": 1', f'"lot_id": {target.lot_id}'))
            sent += 1
        for _ in range(batch):
            answer: dict[str, Any] = await target.attacker.next(within_s=20)
            assert answer["type"] in ANSWER_TYPES, answer
            code = answer.get("code") or answer["type"]
            target.codes[code] = target.codes.get(code, 0) + 1


async def test_a_hundred_thousand_hostile_frames(app_server: AppServer) -> None:
    target = Target()
    target.session_id = await app_server.create_session()  # preview in 1 h: every bid is NOT_OPEN at best
    target.lot_id = await app_server.create_lot(target.session_id)
    _user, token = await app_server.register()
    target.attacker = await Bidder.connect(app_server, token)
    target.bystander = await Bidder.connect(app_server)
    await target.bystander.request({"op": "subscribe", "session_id": target.session_id})
    target.codes = {}
    state_before = app_server.engine.book.to_state()
    seq_before = app_server.engine.last_seq
    rng = random.Random(7)
    seeds_seen: list[list[str]] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(seeds=st.lists(frames, min_size=1, max_size=40))
    def collect(seeds: list[str]) -> None:
        seeds_seen.append(seeds)

    collect()  # Hypothesis draws the seeds (sync); the rounds then run on the test's event loop
    for seeds in seeds_seen[:EXAMPLES]:
        await hostile_round(app_server, target, seeds, rng)
    rounds = min(len(seeds_seen), EXAMPLES)
    assert rounds * FRAMES_PER_EXAMPLE >= TOTAL_FRAMES * 0.9
    assert app_server.engine.book.to_state() == state_before
    assert app_server.engine.last_seq == seq_before
    assert (await target.bystander.request({"op": "ping"}))["type"] == "pong"
    assert [f["type"] for f in target.bystander.frames] == ["hello", "snapshot", "pong"]
    codes = target.codes
    assert codes.get("BAD_JSON", 0) > 0 and codes.get("BAD_REQUEST", 0) > 0, codes
    assert codes.get("FRAME_TOO_LARGE", 0) > 0, codes
    target.attacker.close()
    target.bystander.close()
