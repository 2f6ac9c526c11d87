"""Property tests for the auction core: random bid sequences against an independent model of the rules.

Every step is checked against the spec: the visible price is on the ladder and never above the
leader's maximum; the leader holds the highest accepted maximum (the earliest on ties); a rejected
bid changes nothing; bid_count matches the BidPlaced events; the price and the end never go back;
the end never passes the soft-close cap. A snapshot taken at a random point must then decide the
rest of the sequence exactly as the original.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.book.book import Book
from engine.book.errors import RejectCode
from engine.book.events import BidPlaced, Event, LotClosed, LotExtended, PriceChanged
from engine.book.increments import BandedIncrement, FixedIncrement, IncrementRule
from engine.book.lot import Decision
from engine.book.states import LotState
from engine.book.types import NO_USER

S, L = 1, 10
PREVIEW_AT, OPEN_AT, END = 0, 1000, 11_000
BIDDERS = (1, 2, 3, 4)
NO_DEPOSIT_BIDDER = 4  # never pays a deposit
LADDER_SIZE = 400

Bands = list[tuple[int | None, int]]


# -- an independent ladder, built from the spec's wording -----------------------------------------
class Ladder:
    def __init__(self, start: int, bands: Bands) -> None:
        prices = [start]
        while len(prices) < LADDER_SIZE:
            price = prices[-1]
            step = next(step for upper, step in bands if upper is None or price < upper)
            prices.append(price + step)
        self.prices = prices
        self.members = set(prices)

    def on(self, price: int) -> bool:
        assert price <= self.prices[-1], "ladder too short for this test"
        return price in self.members

    def next_up(self, price: int) -> int:
        return self.prices[self.prices.index(price) + 1]

    def at_or_above(self, price: int) -> int:
        return self.prices[bisect.bisect_left(self.prices, price)]

    def index_at_or_above(self, price: int) -> int:
        return bisect.bisect_left(self.prices, price)


@dataclass
class Setup:
    rule: IncrementRule
    ladder: Ladder
    reserve: int
    soft: int
    cap: int
    deposit: int
    session_deposit: bool  # depositors pay for the whole session rather than the lot

    def build(self) -> Book:
        book = Book()
        book.put_session(
            S,
            preview_start=PREVIEW_AT,
            preview_end=OPEN_AT,
            bidding_start=OPEN_AT,
            bidding_end=END,
            soft_close_ms=self.soft,
            soft_close_cap_ms=self.cap,
        )
        book.put_lot(L, S, self.rule, reserve=self.reserve, deposit=self.deposit)
        for bidder in BIDDERS:
            if bidder != NO_DEPOSIT_BIDDER:
                book.register_deposit(S, None if self.session_deposit else L, bidder)
        return book


@st.composite
def fixed_setups(draw: st.DrawFn) -> Setup:
    start = draw(st.integers(1, 2000))
    unit = draw(st.integers(1, 500))
    return draw(_setups(FixedIncrement(start, unit), Ladder(start, [(None, unit)])))


@st.composite
def banded_setups(draw: st.DrawFn) -> Setup:
    start = draw(st.integers(1, 500))
    uppers = sorted(draw(st.sets(st.integers(1, 4000), max_size=3)))
    steps = draw(st.lists(st.integers(1, 300), min_size=len(uppers) + 1, max_size=len(uppers) + 1))
    bands: Bands = [(upper, step) for upper, step in zip(uppers, steps[:-1], strict=True)]
    bands.append((None, steps[-1]))
    return draw(_setups(BandedIncrement(start, bands), Ladder(start, bands)))


@st.composite
def _setups(draw: st.DrawFn, rule: IncrementRule, ladder: Ladder) -> Setup:
    reserve = draw(st.one_of(st.just(0), st.integers(1, ladder.prices[30])))
    soft = draw(st.sampled_from([0, 300, 2000, 6000]))
    cap = draw(st.sampled_from([0, 700, 4000])) if soft else 0
    deposit = draw(st.sampled_from([0, 0, 500]))
    session_deposit = draw(st.booleans())
    return Setup(rule, ladder, reserve, soft, cap, deposit, session_deposit)


# -- the model ------------------------------------------------------------------------------------
@dataclass
class Model:
    setup: Setup
    maxima: dict[int, tuple[int, int]] = field(default_factory=dict)  # bidder -> (max, seq accepted)
    history: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # bidder -> [(amount, seq)]
    all_max: bool = True  # every accepted bid so far was a maximum (then the exact formula holds)
    bid_events: int = 0
    price: int = 0
    ends_at: int = END
    seq: int = 0

    def accept(self, bidder: int, amount: int, is_max: bool) -> None:
        self.seq += 1
        self.history.setdefault(bidder, []).append((amount, self.seq))
        held = self.maxima.get(bidder)
        if held is None or amount > held[0]:
            self.maxima[bidder] = (amount, self.seq)
        self.all_max = self.all_max and is_max

    def expected_leader(self) -> tuple[int, int]:
        """(bidder, maximum): the highest accepted maximum, the earliest on ties."""
        bidder, (amount, _seq) = min(self.maxima.items(), key=lambda item: (-item[1][0], item[1][1]))
        return bidder, amount

    def expected_price(self) -> int:
        """Second-price rule for a history of maxima only, with the reserve jump.

        The price is one step above the second-highest maximum, capped at the leader's; except that
        a leader who already held exactly that maximum when it was matched wins at it (earlier wins
        ties) and keeps that price when raising later (a raise never lifts the price).
        """
        ladder, reserve = self.setup.ladder, self.setup.reserve
        leader, top = self.expected_leader()
        others = [(amount, seq) for bidder, (amount, seq) in self.maxima.items() if bidder != leader]
        if others:
            second = max(amount for amount, _seq in others)
            matched_at = min(seq for amount, seq in others if amount == second)
            held = max((amount for amount, seq in self.history[leader] if seq < matched_at), default=0)
            beat = second if held == second else min(top, ladder.next_up(second))
        else:
            beat = ladder.prices[0]
        if reserve and top >= reserve:
            beat = max(beat, min(top, ladder.at_or_above(reserve)))
        return beat


@dataclass
class Step:
    kind: str  # "bid" or "tick"
    bidder: int = 0
    amount: int = 0
    is_max: bool = False
    dt: int = 0
    advance: bool = True


def draw_step(data: st.DataObject, book: Book, ladder: Ladder) -> Step:
    if data.draw(st.integers(0, 5), label="tick?") == 0:
        return Step("tick", dt=data.draw(st.integers(0, 4000), label="dt"))
    lot = book.lot(L)
    bidder = data.draw(st.sampled_from(BIDDERS), label="bidder")
    is_max = data.draw(st.booleans(), label="is_max")
    if data.draw(st.integers(0, 3), label="off-ladder?") == 0:
        amount = data.draw(st.integers(1, ladder.prices[min(60, LADDER_SIZE - 1)]), label="amount")
    else:
        base = data.draw(st.sampled_from([lot.price, lot.leader_max]), label="base")
        index = ladder.index_at_or_above(base) + data.draw(st.integers(-2, 8), label="steps")
        amount = ladder.prices[max(0, min(index, LADDER_SIZE - 50))]
    dt = data.draw(st.sampled_from([0, 0, 1, 50, 400, 1500]), label="dt")
    return Step("bid", bidder, amount, is_max, dt, advance=data.draw(st.booleans(), label="advance"))


def apply(book: Book, step: Step, now: int) -> tuple[list[Event], dict[str, object], Decision | None]:
    """Run one step: the timers (when this step runs them; they may run late), then the bid.

    Returns the timers' events, the state just before the bid, and the decision.
    """
    if step.kind == "tick" or step.advance:
        book.advance(now)
    timer_events = book.drain_events()
    before = book.to_state()
    if step.kind == "tick":
        return timer_events, before, None
    return timer_events, before, book.place(L, step.bidder, step.amount, step.is_max, now)


def check_step(
    book: Book,
    model: Model,
    step: Step,
    now: int,
    decision: Decision | None,
    before: dict[str, object],
    timer_events: list[Event],
    bid_events: list[Event],
) -> None:
    """Check one step of `book` against the model."""
    setup, ladder = model.setup, model.setup.ladder
    lot = book.lot(L)
    placed = [event for event in bid_events if isinstance(event, BidPlaced)]
    assert not any(isinstance(event, BidPlaced) for event in timer_events)
    if decision is not None:
        assert decision.lot_id == L
        assert (decision.price, decision.leader) == (lot.price, lot.leader)
        code, next_min = expected_answer(setup, before, step, now)
        assert decision.code == code
        assert decision.accepted is (code is None)
        if decision.accepted:
            assert decision.next_min == ladder.next_up(lot.price)
            assert placed or step.bidder == lot.leader  # only a leader's raise may be invisible
            model.accept(step.bidder, step.amount, step.is_max)
        else:
            # A rejected bid changes nothing and says nothing.
            assert decision.next_min == next_min
            assert bid_events == []
            assert book.to_state() == before

    # bid_count equals the number of BidPlaced events and of history lines.
    model.bid_events += len(placed)
    assert lot.bid_count == model.bid_events == len(lot.bids)

    # Leader, maximum and visible price.
    if model.maxima:
        leader, top = model.expected_leader()
        assert (lot.leader, lot.leader_max) == (leader, top)
        assert ladder.on(lot.price)
        assert lot.price <= lot.leader_max
        for bidder, (amount, _seq) in model.maxima.items():
            if bidder != leader:
                assert amount <= lot.price, "a losing maximum must be matched or beaten"
        if model.all_max:
            assert lot.price == model.expected_price()
    else:
        assert (lot.leader, lot.leader_max, lot.price) == (NO_USER, 0, 0)

    # The price never goes down; the end never goes back nor past the cap, and moves only for a
    # visible bid inside the soft-close window.
    assert lot.price >= model.price
    if placed and setup.soft and model.ends_at - now < setup.soft:
        cap = END + setup.cap if setup.cap else now + setup.soft
        assert lot.ends_at == max(model.ends_at, min(now + setup.soft, cap))
        assert (LotExtended(L, S, lot.ends_at) in bid_events) is (lot.ends_at > model.ends_at)
    else:
        assert lot.ends_at == model.ends_at
        assert not any(isinstance(event, LotExtended) for event in bid_events)
    if setup.cap:
        assert lot.ends_at <= END + setup.cap
    if placed:
        assert bid_events[-1] == PriceChanged(
            L, S, lot.price, lot.leader, lot.bid_count, ladder.next_up(lot.price), lot.ends_at, now
        )
    model.price, model.ends_at = lot.price, lot.ends_at

    # Closing: only by the timers, at or after the end, sold iff someone leads at the reserve.
    for closed in (event for event in timer_events if isinstance(event, LotClosed)):
        sold = lot.leader != NO_USER and lot.price >= setup.reserve
        assert closed.result is (LotState.SOLD if sold else LotState.UNSOLD)
        assert closed.winner == lot.winner == (lot.leader if sold else NO_USER)
        assert (closed.price, closed.bid_count, closed.at) == (lot.price, lot.bid_count, now)
        assert now >= lot.ends_at
    if lot.state in (LotState.SOLD, LotState.UNSOLD):
        assert now >= lot.ends_at


def expected_answer(
    setup: Setup, before: dict[str, object], step: Step, now: int
) -> tuple[RejectCode | None, int]:
    """(code, next_min) the spec gives for `step` on the lot as it was just before the bid;
    code None means accepted (next_min then depends on the new price)."""
    ladder = setup.ladder
    lots = before["lots"]
    assert isinstance(lots, list)
    state, ends_at, price, leader, leader_max = lots[0][5:10]
    floor = ladder.next_up(price) if leader else ladder.prices[0]
    code: RejectCode | None = None
    if state in (LotState.SCHEDULED, LotState.PREVIEW):
        code = RejectCode.NOT_OPEN
    elif state != LotState.BIDDING or now >= ends_at:
        code = RejectCode.CLOSED
    elif setup.deposit and step.bidder == NO_DEPOSIT_BIDDER:
        code = RejectCode.NO_DEPOSIT
    elif step.bidder == leader:
        raise_floor = ladder.next_up(leader_max)
        if not step.is_max:
            code = RejectCode.SELF_OUTBID
        elif step.amount < raise_floor:
            return RejectCode.TOO_LOW, raise_floor
        elif not ladder.on(step.amount):
            return RejectCode.OFF_INCREMENT, raise_floor
    elif step.amount < floor:
        code = RejectCode.TOO_LOW
    elif not ladder.on(step.amount):
        code = RejectCode.OFF_INCREMENT
    return code, floor


def run_sequence(data: st.DataObject, setup: Setup, steps: int, snapshot_at: int | None) -> None:
    book = setup.build()
    model = Model(setup)
    twin: Book | None = None
    now = 0
    for index in range(steps):
        if index == snapshot_at:
            book.drain_events()
            twin = Book.from_state(book.to_state())
            assert twin.to_state() == book.to_state()
        step = draw_step(data, book, setup.ladder)
        now += step.dt
        timer_events, before, decision = apply(book, step, now)
        bid_events = book.drain_events()
        check_step(book, model, step, now, decision, before, timer_events, bid_events)
        if twin is not None:
            assert apply(twin, step, now)[::2] == (timer_events, decision)
            assert twin.drain_events() == bid_events
            assert twin.to_state() == book.to_state()
            assert twin.next_due() == book.next_due()


PROPERTY_SETTINGS = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@PROPERTY_SETTINGS
@given(setup=fixed_setups(), data=st.data())
def test_fixed_rule_invariants(setup: Setup, data: st.DataObject) -> None:
    run_sequence(data, setup, steps=30, snapshot_at=None)


@PROPERTY_SETTINGS
@given(setup=banded_setups(), data=st.data())
def test_banded_rule_invariants(setup: Setup, data: st.DataObject) -> None:
    run_sequence(data, setup, steps=30, snapshot_at=None)


@PROPERTY_SETTINGS
@given(setup=st.one_of(fixed_setups(), banded_setups()), snapshot_at=st.integers(0, 24), data=st.data())
def test_snapshot_then_identical_decisions(setup: Setup, snapshot_at: int, data: st.DataObject) -> None:
    run_sequence(data, setup, steps=25, snapshot_at=snapshot_at)


@settings(max_examples=80, deadline=None)
@given(setup=st.one_of(fixed_setups(), banded_setups()), data=st.data())
def test_maximum_only_bidding_follows_the_second_price_rule(setup: Setup, data: st.DataObject) -> None:
    """With maxima only, the visible price is fully determined by the accepted maxima."""
    book = setup.build()
    book.advance(OPEN_AT)
    book.drain_events()
    model = Model(setup)
    ladder = setup.ladder
    for _ in range(15):
        bidder = data.draw(st.sampled_from(BIDDERS[:3]))
        index = ladder.index_at_or_above(book.lot(L).price) + data.draw(st.integers(0, 12))
        amount = ladder.prices[index]
        decision = book.place(L, bidder, amount, True, OPEN_AT + 1)
        if decision.accepted:
            model.accept(bidder, amount, True)
        leader, top = model.expected_leader()
        assert (decision.leader, decision.price) == (leader, model.expected_price())
        assert book.lot(L).leader_max == top
