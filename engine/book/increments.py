"""Increment rules (加价幅度): which prices a bid may name and what the next step is.

A rule is pluggable: a fixed unit on the grid `start + k*unit` (the seed's rule), or a banded
table in which the step depends on the current price band (as eBay's table).
"""

from collections.abc import Sequence
from typing import Protocol

from engine.book.errors import InvalidCommand
from engine.book.types import Fen


class IncrementRule(Protocol):
    start: Fen

    def on_ladder(self, price: Fen) -> bool:
        """True if `price` is a price a bid may name."""
        ...

    def next_up(self, price: Fen) -> Fen:
        """The ladder price one step above the ladder price `price`."""
        ...

    def at_or_above(self, price: Fen) -> Fen:
        """The lowest ladder price that is >= `price`."""
        ...

    def spec(self) -> list[object]:
        """A plain, msgpack-able description from which `rule_from_spec` rebuilds the rule."""
        ...


class FixedIncrement:
    """Every valid price is start + k*unit, k >= 0."""

    __slots__ = ("start", "unit")

    def __init__(self, start: Fen, unit: Fen) -> None:
        if start <= 0 or unit <= 0:
            raise InvalidCommand("start price and increment unit must be positive")
        self.start = start
        self.unit = unit

    def on_ladder(self, price: Fen) -> bool:
        return price >= self.start and (price - self.start) % self.unit == 0

    def next_up(self, price: Fen) -> Fen:
        return price + self.unit

    def at_or_above(self, price: Fen) -> Fen:
        if price <= self.start:
            return self.start
        steps = -(-(price - self.start) // self.unit)
        return self.start + steps * self.unit

    def spec(self) -> list[object]:
        return ["fixed", self.start, self.unit]


class BandedIncrement:
    """The step is chosen by the band the current price lies in.

    `bands` is a sequence of (upper_exclusive, step) with increasing bounds; the last band's bound
    is None (no upper limit). The ladder is start, then price + step(price) repeatedly; the ladder
    is precomputed as segments (anchor, upper, step) so membership is O(number of bands).
    """

    __slots__ = ("_segments", "bands", "start")

    def __init__(self, start: Fen, bands: Sequence[tuple[Fen | None, Fen]]) -> None:
        if start <= 0 or not bands:
            raise InvalidCommand("start price must be positive and at least one band given")
        previous = 0
        for index, (upper, step) in enumerate(bands):
            if step <= 0:
                raise InvalidCommand("every band step must be positive")
            last = index == len(bands) - 1
            if (upper is None) != last or (upper is not None and upper <= previous):
                raise InvalidCommand("band bounds must increase and only the last may be open")
            previous = upper or previous
        self.start = start
        self.bands = tuple((upper, step) for upper, step in bands)
        self._segments = self._build_segments()

    def _build_segments(self) -> list[tuple[Fen, Fen | None, Fen]]:
        segments: list[tuple[Fen, Fen | None, Fen]] = []
        anchor = self.start
        for upper, step in self.bands:
            if upper is not None and anchor >= upper:
                continue
            segments.append((anchor, upper, step))
            if upper is None:
                break
            anchor += -(-(upper - anchor) // step) * step
        return segments

    def _segment(self, price: Fen) -> tuple[Fen, Fen | None, Fen] | None:
        found = None
        for segment in self._segments:
            if price < segment[0]:
                break
            found = segment
        return found

    def on_ladder(self, price: Fen) -> bool:
        segment = self._segment(price)
        if segment is None:
            return False
        anchor, _upper, step = segment
        return (price - anchor) % step == 0

    def next_up(self, price: Fen) -> Fen:
        segment = self._segment(price)
        if segment is None:
            return self.start
        return price + segment[2]

    def at_or_above(self, price: Fen) -> Fen:
        segment = self._segment(price)
        if segment is None:
            return self.start
        anchor, upper, step = segment
        candidate = anchor + -(-(price - anchor) // step) * step
        if upper is not None and candidate >= upper:
            # The next segment's anchor is exactly where this segment's ladder leaves the band.
            return anchor + -(-(upper - anchor) // step) * step
        return candidate

    def spec(self) -> list[object]:
        return ["banded", self.start, [[upper, step] for upper, step in self.bands]]


def rule_from_spec(spec: Sequence[object]) -> IncrementRule:
    kind = spec[0]
    if kind == "fixed":
        start, unit = spec[1], spec[2]
        assert isinstance(start, int) and isinstance(unit, int)
        return FixedIncrement(start, unit)
    if kind == "banded":
        start, raw_bands = spec[1], spec[2]
        assert isinstance(start, int) and isinstance(raw_bands, list)
        return BandedIncrement(start, [(band[0], band[1]) for band in raw_bands])
    raise InvalidCommand(f"unknown increment rule {kind!r}")
