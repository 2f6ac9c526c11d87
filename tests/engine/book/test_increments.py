"""Tests for engine.book.increments: the fixed grid, the banded (eBay-style) ladder and rule specs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book.errors import InvalidCommand
from engine.book.increments import BandedIncrement, FixedIncrement, IncrementRule, rule_from_spec

Bands = list[tuple[int | None, int]]


# -- reference ladders built straight from the spec's wording -------------------------------------
def reference_step(bands: Bands, price: int) -> int:
    """The step of the band the price lies in: the first band whose (exclusive) upper exceeds it."""
    for upper, step in bands:
        if upper is None or price < upper:
            return step
    raise AssertionError("the last band is open")


def reference_ladder(start: int, bands: Bands, limit: int) -> list[int]:
    """start, then p + step(p) repeatedly, up to and including the first price >= limit."""
    ladder = [start]
    while ladder[-1] < limit:
        ladder.append(ladder[-1] + reference_step(bands, ladder[-1]))
    return ladder


# -- FixedIncrement -------------------------------------------------------------------------------
class TestFixedIncrement:
    rule = FixedIncrement(1000, 100)

    @pytest.mark.parametrize(
        ("price", "expected"),
        [(1000, True), (1100, True), (25_000, True), (900, False), (0, False), (1050, False), (1099, False)],
    )
    def test_on_ladder(self, price: int, expected: bool) -> None:
        assert self.rule.on_ladder(price) is expected

    def test_next_up_adds_one_unit(self) -> None:
        assert self.rule.next_up(1000) == 1100
        assert self.rule.next_up(4500) == 4600

    @pytest.mark.parametrize(
        ("price", "expected"),
        [(-5, 1000), (0, 1000), (999, 1000), (1000, 1000), (1001, 1100), (1099, 1100), (1100, 1100)],
    )
    def test_at_or_above(self, price: int, expected: int) -> None:
        assert self.rule.at_or_above(price) == expected

    def test_grid_is_anchored_at_start_not_at_zero(self) -> None:
        rule = FixedIncrement(150, 100)
        assert rule.on_ladder(250)
        assert not rule.on_ladder(200)
        assert rule.at_or_above(200) == 250

    @pytest.mark.parametrize(("start", "unit"), [(0, 100), (-1, 100), (100, 0), (100, -5)])
    def test_rejects_non_positive_settings(self, start: int, unit: int) -> None:
        with pytest.raises(InvalidCommand) as info:
            FixedIncrement(start, unit)
        assert info.value.code == "BAD_REQUEST"

    def test_spec_round_trip(self) -> None:
        assert self.rule.spec() == ["fixed", 1000, 100]
        rebuilt = rule_from_spec(self.rule.spec())
        assert isinstance(rebuilt, FixedIncrement)
        assert (rebuilt.start, rebuilt.unit) == (1000, 100)

    @settings(max_examples=60, deadline=None)
    @given(
        start=st.integers(1, 5000),
        unit=st.integers(1, 700),
        price=st.integers(-100, 20_000),
    )
    def test_matches_the_grid(self, start: int, unit: int, price: int) -> None:
        rule = FixedIncrement(start, unit)
        on_grid = price >= start and (price - start) % unit == 0
        assert rule.on_ladder(price) is on_grid
        above = rule.at_or_above(price)
        assert rule.on_ladder(above)
        if price <= start:
            assert above == start
        else:
            assert above - unit < price <= above


# -- BandedIncrement ------------------------------------------------------------------------------
EBAY_BANDS: Bands = [(100, 5), (500, 25), (2500, 50), (None, 100)]


class TestBandedIncrement:
    def test_ebay_like_ladder(self) -> None:
        rule = BandedIncrement(50, EBAY_BANDS)
        ladder = [50]
        while ladder[-1] < 3000:
            ladder.append(rule.next_up(ladder[-1]))
        assert ladder[:12] == [50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100, 125]
        assert 475 in ladder and 500 in ladder and 550 in ladder and 525 not in ladder
        assert ladder[ladder.index(2450) + 1] == 2500
        assert ladder[ladder.index(2500) + 1] == 2600
        assert ladder == reference_ladder(50, EBAY_BANDS, 3000)

    def test_ladder_that_overshoots_a_band_bound(self) -> None:
        # 20, 50, 80 (80 < 100: step 30) -> 110, then the second band's step of 50.
        rule = BandedIncrement(20, [(100, 30), (None, 50)])
        assert [p for p in range(300) if rule.on_ladder(p)] == [20, 50, 80, 110, 160, 210, 260]
        assert rule.next_up(80) == 110
        assert rule.next_up(110) == 160
        assert rule.at_or_above(81) == 110
        assert rule.at_or_above(95) == 110
        assert rule.at_or_above(100) == 110
        assert rule.at_or_above(111) == 160
        assert not rule.on_ladder(100)

    def test_a_band_jumped_over_entirely_is_skipped(self) -> None:
        rule = BandedIncrement(20, [(100, 200), (150, 10), (None, 100)])
        assert [p for p in range(600) if rule.on_ladder(p)] == [20, 220, 320, 420, 520]
        assert rule.at_or_above(21) == 220
        assert rule.at_or_above(120) == 220
        assert rule.next_up(20) == 220

    def test_start_above_the_first_bands(self) -> None:
        rule = BandedIncrement(1000, EBAY_BANDS)
        assert not rule.on_ladder(950)
        assert rule.on_ladder(1000)
        assert rule.next_up(1000) == 1050
        assert rule.next_up(2450) == 2500
        assert rule.next_up(2500) == 2600

    @pytest.mark.parametrize("price", [-10, 0, 1, 49])
    def test_below_start(self, price: int) -> None:
        rule = BandedIncrement(50, EBAY_BANDS)
        assert not rule.on_ladder(price)
        assert rule.at_or_above(price) == 50
        assert rule.next_up(price) == 50

    def test_single_open_band_is_a_fixed_grid(self) -> None:
        banded = BandedIncrement(300, [(None, 70)])
        fixed = FixedIncrement(300, 70)
        for price in range(2000):
            assert banded.on_ladder(price) is fixed.on_ladder(price)
            assert banded.at_or_above(price) == fixed.at_or_above(price)

    @pytest.mark.parametrize(
        ("start", "bands"),
        [
            (0, [(None, 10)]),
            (-5, [(None, 10)]),
            (100, []),
            (100, [(None, 0)]),
            (100, [(500, -1), (None, 10)]),
            (100, [(500, 10)]),  # the last band must be open
            (100, [(None, 10), (500, 20)]),  # only the last may be open
            (100, [(500, 10), (500, 20), (None, 30)]),  # bounds must increase
            (100, [(500, 10), (400, 20), (None, 30)]),
        ],
    )
    def test_rejects_bad_tables(self, start: int, bands: Bands) -> None:
        with pytest.raises(InvalidCommand):
            BandedIncrement(start, bands)

    def test_spec_round_trip(self) -> None:
        rule = BandedIncrement(50, EBAY_BANDS)
        spec = rule.spec()
        assert spec == ["banded", 50, [[100, 5], [500, 25], [2500, 50], [None, 100]]]
        rebuilt = rule_from_spec(spec)
        assert isinstance(rebuilt, BandedIncrement)
        assert rebuilt.spec() == spec
        for price in range(0, 3000, 5):
            assert rebuilt.on_ladder(price) is rule.on_ladder(price)


def test_unknown_rule_kind() -> None:
    with pytest.raises(InvalidCommand):
        rule_from_spec(["percent", 100, 5])


@st.composite
def banded_tables(draw: st.DrawFn) -> tuple[int, Bands]:
    start = draw(st.integers(1, 400))
    uppers = sorted(draw(st.sets(st.integers(1, 1500), max_size=4)))
    steps = draw(st.lists(st.integers(1, 120), min_size=len(uppers) + 1, max_size=len(uppers) + 1))
    bands: Bands = [(upper, step) for upper, step in zip(uppers, steps[:-1], strict=True)]
    bands.append((None, steps[-1]))
    return start, bands


@settings(max_examples=80, deadline=None)
@given(banded_tables())
def test_banded_rule_matches_reference_ladder(table: tuple[int, Bands]) -> None:
    start, bands = table
    rule: IncrementRule = BandedIncrement(start, bands)
    limit = 2200
    ladder = reference_ladder(start, bands, limit)
    members = set(ladder)
    for left, right in itertools.pairwise(ladder):
        assert rule.next_up(left) == right
    index = 0
    for price in range(-2, limit + 1):
        while ladder[index] < price:
            index += 1
        assert rule.on_ladder(price) is (price in members), price
        assert rule.at_or_above(price) == ladder[index], price
    assert rule_from_spec(rule.spec()).spec() == rule.spec()
