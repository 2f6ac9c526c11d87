"""bench_watchers.py's soak slopes: a trimmed process's saw-toothed RSS is read as flat, a real
growth as what it is."""

from __future__ import annotations

import pytest

from benchmarks.bench_watchers import end_minutes_per_min, slope_per_min


def saw(seconds: float) -> float:
    """RSS falling by 20 MiB at each trim (every 60 s) and climbing back until the next."""
    return 150_000 + 20_000 * ((seconds % 60) / 60)


@pytest.mark.parametrize("end", [540, 555, 570, 585, 600])
def test_a_saw_with_no_trend_is_flat_between_the_end_minutes(end: int) -> None:
    points = [(float(t), saw(t)) for t in range(120, end, 5)]  # a soak's tail, teeth cut anywhere
    assert end_minutes_per_min(points) == pytest.approx(0.0, abs=1e-9)


def test_least_squares_tilts_with_where_the_window_cuts_the_teeth() -> None:
    slopes = [slope_per_min([(float(t), saw(t)) for t in range(120, end, 5)]) or 0.0 for end in (570, 600)]
    assert max(abs(s) for s in slopes) > 300


def test_a_steady_growth_is_measured_the_same_both_ways() -> None:
    points = [(float(t), 200_000 + 2.5 * t) for t in range(120, 600, 5)]  # +150 KiB a minute
    assert end_minutes_per_min(points) == pytest.approx(150.0)
    assert slope_per_min(points) == pytest.approx(150.0)
    assert end_minutes_per_min(points[:20]) is None  # under two minutes: no two whole minutes
