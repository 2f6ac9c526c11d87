"""How long `gateway._fanout.begin()` holds its caller, and `end()` after it (a diagnostic).

    .venv/bin/python benchmarks/watchers/begin_probe.py [--module-dir DIR] [--cpus 0]

The hub's sweep calls `begin(fds, payloads)` (the worker thread starts sending a batch), prepares
the next batch in Python, then calls `end()` (the loop thread sends what is left and waits for the
last send). `begin()` should return at once: a worker that preempts the thread that woke it (on a
core shared with other work) makes the loop thread wait while the worker sends. This sends
`--batch` (256) payloads of 300 bytes to as many socketpairs, `--calls` (300) times, some Python
work between `begin()` and `end()`, and prints one JSON object: `begin()` and `end()` wall µs
(p50, p90). `--cpus 0` pins the process to CPU 0 (both threads on one core: the loaded machine's
case). `--module-dir DIR` imports `gateway._fanout` from DIR (e.g. a build of another commit's
gateway/_fanout.c with build_fanout.py) instead of this checkout's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 1), "p90": round(ordered[int(len(ordered) * 0.9)], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--module-dir", type=Path, default=ROOT)
    parser.add_argument("--cpus", default="", help="pin to these CPUs, e.g. 0")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    sys.path.insert(0, str(args.module_dir))
    import gateway._fanout as fanout

    pairs = [socket.socketpair() for _ in range(args.batch)]
    for a, b in pairs:
        a.setblocking(False)
        b.setblocking(False)
    fds = [a.fileno() for a, _ in pairs]
    payloads = [b"x" * 300] * args.batch
    begins: list[float] = []
    ends: list[float] = []
    for call in range(args.calls):
        started = time.perf_counter()
        fanout.begin(fds, payloads, 2)
        begun = time.perf_counter()
        sum(range(2000))  # the caller's Python between the two (~20 µs: a batch's preparation)
        ending = time.perf_counter()
        fanout.end()
        ended = time.perf_counter()
        begins.append((begun - started) * 1e6)
        ends.append((ended - ending) * 1e6)
        if call % 20 == 0:  # drain the readers before their buffers fill
            for _, b in pairs:
                try:
                    while b.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
    print(
        json.dumps(
            {
                "begin_us": percentiles(begins),
                "end_us": percentiles(ends),
                "batch": args.batch,
                "calls": args.calls,
                "cpus": sorted(os.sched_getaffinity(0)),
                "module": str(Path(fanout.__file__).resolve()),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
                "command": " ".join(
                    [".venv/bin/python", "benchmarks/watchers/begin_probe.py", *sys.argv[1:]]
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
