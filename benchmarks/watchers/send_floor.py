"""The kernel's floor under a broadcast: one write of a price frame's size to each of N loopback
TCP sockets from one uvloop process, as the hub's sweep does. Prints one JSON object.

    .venv/bin/python benchmarks/watchers/send_floor.py [--sockets 10000] [--bytes 300] [--rounds 20]
                                                       [--threads 2]

A reader process (this script, `--reader PORT N`) opens the N connections and reads them. The
writer times `--rounds` passes of one `transport.write` per socket (CPU time of the process and
wall time, per socket), then the same with the reader stopped (SIGSTOP: no reader to wake), and
a pass of bare `os.write` on the sockets' descriptors (no transport). Medians of the rounds.
Whatever the gateway's Python does per socket comes on top of this (bench_watchers.py measures
the whole).

With `--threads 2`, the same sends through `gateway._fanout.write_many` (the C loop the hub's sweep
uses, GIL released), first on one thread, then split between this thread and the module's worker
thread; `two_threads_wall_ratio` is the second's wall time per round ÷ the first's (the gain the
sweep can get from the second core, with the reader process reading on the same two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def raise_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Held(asyncio.Protocol):
    def __init__(self, transports: list[Any]) -> None:
        self.transports = transports

    def connection_made(self, transport: Any) -> None:
        self.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        pass


async def read_all(port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    held: list[Any] = []
    for start in range(0, count, 200):
        batch = min(200, count - start)
        await asyncio.gather(
            *(loop.create_connection(lambda: Held(held), "127.0.0.1", port) for _ in range(batch))
        )
    await asyncio.sleep(3600)


def timed(rounds: int, count: int, write_all: Any) -> dict[str, float]:
    cpu, wall = [], []
    for _ in range(rounds):
        wall_0, cpu_0 = time.perf_counter(), time.process_time()
        write_all()
        wall.append((time.perf_counter() - wall_0) * 1e6 / count)
        cpu.append((time.process_time() - cpu_0) * 1e6 / count)
        time.sleep(0.1)  # the reader drains; the socket buffers never fill
    return {
        "cpu_us_per_send": round(statistics.median(cpu), 2),
        "wall_us_per_send": round(statistics.median(wall), 2),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    transports: list[Any] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: Held(transports), "127.0.0.1", 0, backlog=4096
    )
    port = server.sockets[0].getsockname()[1]
    reader = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--reader", str(port), str(args.sockets)
    )
    try:
        while len(transports) < args.sockets:
            if reader.returncode is not None:
                raise RuntimeError("the reader exited")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        data = b"x" * args.bytes
        fds = [t.get_extra_info("socket").fileno() for t in transports]

        def by_transport() -> None:
            for transport in transports:
                transport.write(data)

        def by_os_write() -> None:
            for fd in fds:
                os.write(fd, data)

        result: dict[str, Any] = {"transport_write": timed(args.rounds, args.sockets, by_transport)}
        if args.threads > 1:
            from gateway._fanout import write_many

            payloads = [data] * len(fds)

            def by_write_many(threads: int) -> None:
                if write_many(fds, payloads, threads):
                    raise RuntimeError("a send did not take the whole payload")

            for threads in (1, args.threads):
                await asyncio.sleep(0.5)
                result[f"write_many_{threads}_thread"] = timed(
                    args.rounds, args.sockets, functools.partial(by_write_many, threads)
                )
            one, two = result["write_many_1_thread"], result[f"write_many_{args.threads}_thread"]
            result["two_threads_wall_ratio"] = round(two["wall_us_per_send"] / one["wall_us_per_send"], 3)
            result["two_threads_cpu_ratio"] = round(two["cpu_us_per_send"] / one["cpu_us_per_send"], 3)
        await asyncio.sleep(0.5)
        result["os_write"] = timed(args.rounds, args.sockets, by_os_write)
        await asyncio.sleep(0.5)
        reader.send_signal(signal.SIGSTOP)
        try:
            result["transport_write_reader_stopped"] = timed(args.rounds, args.sockets, by_transport)
        finally:
            reader.send_signal(signal.SIGCONT)
        return result
    finally:
        reader.kill()
        await reader.wait()
        server.close()


def main() -> None:
    raise_nofile()
    if len(sys.argv) == 4 and sys.argv[1] == "--reader":
        uvloop.run(read_all(int(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=300, help="bytes per write (a price frame is ~260)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=1, help="2: also time gateway._fanout.write_many on 1 and 2 threads"
    )
    args = parser.parse_args()
    started = time.monotonic()
    result = uvloop.run(measure(args))
    result.update(
        {
            "sockets": args.sockets,
            "bytes": args.bytes,
            "rounds": args.rounds,
            "threads": args.threads,
            "machine": {"cores": os.cpu_count(), "loadavg_after": os.getloadavg()},
            "command": " ".join([".venv/bin/python", "benchmarks/watchers/send_floor.py", *sys.argv[1:]]),
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
