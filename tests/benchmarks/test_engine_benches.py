"""bench_book.py and bench_engine.py run with tiny parameters and say which build they measured.

No speed is asserted (the machine is shared): only the shape of the JSON and the mode it reports.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run(script: str, *args: str, pure: bool = False) -> dict[str, Any]:
    env = {**os.environ, "GAVEL_PURE_PYTHON": "1" if pure else ""}
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("pure", [False, True])
def test_bench_book_reports_its_mode(pure: bool) -> None:
    # --memory-bids: the default 300,000 bids placed under tracemalloc took ~30 s interpreted.
    args = shlex.split("--lots 50 --decisions 500 --runs 3 --memory-bids 2000")
    result = run("bench_book.py", *args, pure=pure)
    assert len(result["book_decisions_per_s_runs"]) == 3
    assert result["book_decisions_per_s"] > 0 and result["bytes_per_lot"] > 0 and result["bytes_per_bid"] > 0
    assert result["mode"] in ("compiled", "interpreted")
    assert (result["mode"] == "compiled") == bool(result["compiled_modules"])
    if pure:
        assert result["mode"] == "interpreted"


def test_bench_engine_reports_both_builds_side_by_side() -> None:
    result = run(
        "bench_engine.py",
        *shlex.split("--lots 20 --bids 300 --clients 10 --replay-bids 500 --runs 1 --interpreted-too"),
    )
    assert result["engine_acked_bids_per_s"] > 0 and result["replay_records"] == 500 + 20 + 2
    if result["mode"] == "compiled":
        assert result["interpreted"]["mode"] == "interpreted"
        assert set(result["speedup_vs_interpreted"]) == {
            "engine_acked_bids_per_s",
            "ratio_to_bare_journal",
            "replay_records_per_s",
        }
    else:
        assert "interpreted" not in result
