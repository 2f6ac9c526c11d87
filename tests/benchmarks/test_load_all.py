"""benchmarks/load_all.py's arithmetic on the per-scenario statistics the locust processes write
(the script itself runs for minutes: it has no smoke test here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.load_all import by_scenario, merge_scenarios, percentile, spawned


def test_percentiles_follow_locusts_rule() -> None:
    # 100 requests: 90 at 10 ms, 9 at 100 ms, 1 at 1000 ms; locust's CSV gives p50 10, p95 100 and
    # p99 1000 for these (the largest time with at most 99 % of the requests below it).
    times = {10: 90, 100: 9, 1000: 1}
    assert percentile(times, 0.50) == 10.0
    assert percentile(times, 0.95) == 100.0
    assert percentile(times, 0.99) == 1000.0
    assert percentile(times, 0.90) == 100.0
    assert percentile(times, 1.0) == 1000.0
    assert percentile({}, 0.95) is None


def test_the_files_of_every_locust_process_are_merged_per_scenario(tmp_path: Path) -> None:
    (tmp_path / "scenarios-1.json").write_text(
        json.dumps({"Bidder": {"WS bid accepted": {"count": 2, "failures": 0, "times": {"5": 2}}}})
    )
    (tmp_path / "scenarios-2.json").write_text(
        json.dumps(
            {
                "Bidder": {"WS bid accepted": {"count": 3, "failures": 1, "times": {"5": 1, "40": 2}}},
                "Student": {"GET /api/v1/courses": {"count": 1, "failures": 0, "times": {"12": 1}}},
            }
        )
    )
    merged = merge_scenarios(tmp_path)
    assert merged["Bidder"]["WS bid accepted"] == {"count": 5, "failures": 1, "times": {5: 3, 40: 2}}
    assert merged["Student"]["GET /api/v1/courses"]["count"] == 1


def test_a_scenarios_socket_delays_are_kept_apart_from_its_page_loads() -> None:
    merged = {
        "AppUser": {
            "GET /api/v1/me": {"count": 4, "failures": 0, "times": {20: 4}},
            "WS app frame": {"count": 10, "failures": 0, "times": {3: 10}},
        }
    }
    scenario = by_scenario(merged, seconds=2.0)["AppUser"]
    assert scenario["http"]["p95_ms"] == 20.0 and scenario["http"]["rps"] == pytest.approx(2.0)
    assert scenario["ws"]["p95_ms"] == 3.0 and scenario["ws"]["count"] == 10
    assert set(scenario["requests"]) == {"GET /api/v1/me", "WS app frame"}


def test_the_users_of_each_class_are_read_from_locusts_log(tmp_path: Path) -> None:
    log = tmp_path / "all-locust.log"
    log.write_text(
        "[2026-12-07 02:18:17,087] vm/INFO/locust.runners: Ramping to 7 users at a rate of 1.00 per second\n"
        '[2026-12-07 02:18:24,087] vm/INFO/locust.runners: All users spawned: {"AppUser": 3, "Bidder": 4}'
        " (7 total users)\n"
    )
    assert spawned(log) == {"AppUser": 3, "Bidder": 4}
    log.write_text("nothing spawned\n")
    assert spawned(log) is None
