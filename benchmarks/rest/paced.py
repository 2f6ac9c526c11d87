"""The paced (open-loop) HTTP/1.1 load client of bench_rest.py: latency at a fixed request rate.

    python benchmarks/rest/paced.py CONFIG      (CONFIG: a JSON object, or - for stdin)

CONFIG: `port`, `requests` (a list of raw HTTP/1.1 requests as text, sent in turn), `rate`
(requests/s), `duration` and `warmup` (s), `connections` (keep-alive sockets). Prints one JSON
object: requests answered in the window, the rate achieved, latency p50/p99/p99.9 (ms), non-2xx
answers, how late the client itself sent (`send_lag_ms` p99) and its CPU (cores).

Request i is due at `start + i / rate`, whatever came back before (open loop). It goes out on an
idle connection at once, or waits for the first one to free up; its latency is counted from when
it was DUE, not sent, so a server that falls behind shows its queue in the figures (no coordinated
omission). One uvloop process, an `asyncio.Protocol` per socket, no task per request: at half of
a path's peak this client costs far less than the server it measures (its CPU is reported).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from benchmarks.e2e.procstat import cpu_seconds


class Client(asyncio.Protocol):
    """One keep-alive connection, one request in flight (Tornado answers in order, no pipelining)."""

    def __init__(self, run: PacedRun) -> None:
        self.run = run
        self.transport: Any = None
        self.buffer = bytearray()
        self.due = 0.0
        self.busy = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's TCPTransport (not an asyncio.Transport subclass)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.failures += 1 if self.busy else 0
        self.busy = True  # never used again
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, request: bytes, due: float) -> None:
        self.busy, self.due = True, due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            start = head.find(b"content-length:")
            length = 0
            if start >= 0:
                stop = head.find(b"\r\n", start)
                length = int(head[start + 15 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            del self.buffer[: end + 4 + length]
            self.busy = False
            self.run.answered(self, status, time.perf_counter())


class PacedRun:
    def __init__(self, config: dict[str, Any]) -> None:
        self.port = int(config["port"])
        self.requests = [r.encode() for r in config["requests"]]
        self.rate = float(config["rate"])
        self.duration = float(config["duration"])
        self.warmup = float(config["warmup"])
        self.connections = int(config["connections"])
        self.clients: list[Client] = []
        self.idle: collections.deque[Client] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.sent = 0
        self.latency_ms = array.array("d")
        self.lag_ms = array.array("d")
        self.bad_status = 0
        self.failures = 0
        self.window = (0.0, 0.0)
        self.drained: asyncio.Event | None = None  # set once every connection is idle after the window

    def next_request(self) -> bytes:
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    def dispatch(self, due: float, now: float) -> None:
        client = self.idle.popleft()
        if self.window[0] <= due < self.window[1]:
            self.lag_ms.append((now - due) * 1000)
        client.send(self.next_request(), due)

    def answered(self, client: Client, status: int, now: float) -> None:
        if self.window[0] <= client.due < self.window[1]:
            self.latency_ms.append((now - client.due) * 1000)
            if not 200 <= status < 300:
                self.bad_status += 1
        self.idle.append(client)
        if self.backlog:
            self.dispatch(self.backlog.popleft(), now)
        elif self.drained is not None and len(self.idle) == len(self.clients):
            self.drained.set()

    async def main(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, client = await loop.create_connection(lambda: Client(self), "127.0.0.1", self.port)
            self.clients.append(client)
            self.idle.append(client)
        start = time.perf_counter() + 0.05
        self.window = (start + self.warmup, start + self.warmup + self.duration)
        end = self.window[1]
        cpu_before = cpu_seconds(os.getpid()) or 0.0
        index = 0
        interval = 1.0 / self.rate
        while True:
            now = time.perf_counter()
            while True:
                due = start + index * interval
                if due > now or due >= end:
                    break
                index += 1
                if self.idle:
                    self.dispatch(due, now)
                else:
                    self.backlog.append(due)
            if start + index * interval >= end:
                break
            await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
        # Answers still owed for the window: wait for them (bounded).
        self.drained = asyncio.Event()
        if self.backlog or len(self.idle) < len(self.clients):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), 5.0)
        cpu_after = cpu_seconds(os.getpid()) or 0.0
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        latency = numpy.frombuffer(self.latency_ms, dtype=numpy.float64)
        lag = numpy.frombuffer(self.lag_ms, dtype=numpy.float64)

        def pct(values: numpy.ndarray[Any, Any], q: float) -> float | None:
            return round(float(numpy.percentile(values, q)), 3) if len(values) else None

        return {
            "rate_asked": self.rate,
            "answered": len(latency),
            "rate_done": round(len(latency) / self.duration, 1),
            "p50_ms": pct(latency, 50),
            "p99_ms": pct(latency, 99),
            "p999_ms": pct(latency, 99.9),
            "non_2xx": self.bad_status,
            "failures": self.failures,
            "unanswered": len(self.backlog) + sum(1 for c in self.clients if c.busy),
            "send_lag_p99_ms": pct(lag, 99),
            "client_cores": round((cpu_after - cpu_before) / (self.duration + self.warmup), 3),
        }


def main() -> None:
    argument = sys.argv[1]
    config = json.loads(sys.stdin.read() if argument == "-" else argument)
    print(json.dumps(uvloop.run(PacedRun(config).main())))


if __name__ == "__main__":
    main()
