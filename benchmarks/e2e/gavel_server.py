"""Gavel under test: `python run.py` (its `main()`, same configuration by environment) plus
benchmark settings in `ctx.options`.

    GAVEL_BENCH_OPTIONS='{"bids_per_second": 1e9}' GAVEL_LOOP=asyncio python -m benchmarks.e2e.gavel_server

- `GAVEL_BENCH_OPTIONS`: a JSON object merged into `ctx.options` once the service has started
  (before its first connection is read), e.g. `bids_per_second` / `bid_burst` (the per-user bid
  rate limit: the load client's closed-loop bidders bid far faster than 20/s),
  `ws_connections_per_ip` (thousands of watchers come from 127.0.0.1), `ws_frame_once`.
- `GAVEL_LOOP=asyncio`: run on the standard asyncio loop instead of uvloop.
- `GAVEL_BENCH_NO_WRITE_BEHIND=1`: a diagnostic, never a way to run Gavel: detach the write-behind
  archiver from the engine, to see what the bids' MongoDB writes cost on this machine (where the
  embedded MongoDB shares the two cores with everything else).
- `GAVEL_PROFILE=PATH`: profile with cProfile between SIGUSR1 (start) and SIGUSR2 (stop, write
  the stats to PATH), e.g. around one measurement window. It slows the server down: never for
  figures, only to see where the CPU goes.

Nothing else differs from `python run.py`: the same `Service`, wiring, journal, write-behind and
Redis price bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

import run  # noqa: E402  (the composition root)

OPTIONS = json.loads(os.environ.get("GAVEL_BENCH_OPTIONS") or "{}")


class BenchService(run.Service):
    async def start(self) -> None:
        await super().start()
        # No await between the listen() at the end of start() and here: no socket is read before.
        self.ctx.options.update(OPTIONS)
        if os.environ.get("GAVEL_BENCH_NO_WRITE_BEHIND") == "1":
            self.engine.listeners.remove(self.archiver.on_batch)


def main() -> int:
    run.Service = BenchService  # type: ignore[misc]
    if os.environ.get("GAVEL_LOOP", "uvloop") == "asyncio":
        run.uvloop = types.SimpleNamespace(run=asyncio.run)  # type: ignore[assignment]
    profile_path = os.environ.get("GAVEL_PROFILE")
    if profile_path:
        import cProfile
        import signal

        profiler = cProfile.Profile()

        def stop(*_: object) -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGUSR2, stop)
    return run.main([])


if __name__ == "__main__":
    sys.exit(main())
