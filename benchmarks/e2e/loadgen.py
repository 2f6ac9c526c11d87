"""The load client of `bench_e2e.py`: bidders and watchers over websockets, from one process.

    python -m benchmarks.e2e.loadgen CONFIG      (CONFIG: a JSON object, a path to one, or - for stdin)

Prints one JSON object (a result per phase). One asyncio + uvloop process holds every connection
with a minimal RFC 6455 client written for this (an `asyncio.Protocol` per socket, no per-message
task or future), so thousands of sockets cost the client little CPU and it is not what limits a
run on a 2-core machine. The same client drives Gavel, the bare echo server and the Redis-Lua peer.

Bidders come in pairs that share two lots and swap them every round: in round r bidder A bids on
lot X and B on lot Y, in round r+1 A on Y and B on X, each at the `next_min` the previous answer on
that lot gave. So every bid is a valid raise (never below the price, never by the current leader)
and is accepted, and each bidder keeps one bid in flight. Refs carry a tag of this run (the
engine answers a ref it knows with its first answer, without bidding again). Before the first
phase every pair is primed: rounds at once until one is accepted on both lots, which brings it in
step with whatever an earlier run left (`next_min` given by the caller may be stale for the peers;
the last leader of a lot decides which bidder may bid there). Watchers connect after priming, so
its bids are not broadcast. A pair starts its next round when both answers are in:

- `closed`: at once (closed loop: the rate is whatever the server sustains);
- `paced`: on a schedule, `rate` bids/s over all bidders, pairs staggered evenly. A pair whose
  answers come late starts its next round late: `send_lag_ms` (actual send time - scheduled time)
  shows when that happened, i.e. when the server did not keep up with the rate.

Ack latency is measured per bid from the moment its frame is written to the moment its answer is
read (`accepted`; rejections are counted by code).

Watchers subscribe to the session and time every `price` frame: broadcast latency = receive time
(wall clock, ms) - the frame's `ts` (the server's wall clock when the bid was accepted; same
machine). `ts` is whole milliseconds, truncated, so figures carry up to +1 ms of rounding.

A phase is measured over `duration` seconds after `warmup`: bids whose (scheduled) send time falls
in the window and frames whose `ts` falls in it, collected until a drain period after it (`drain_s`
in the config, default `DRAIN_S`). CPU of the processes in `pids` (and of this client) is read from
/proc at the window's ends.
"""

from __future__ import annotations

import abc
import array
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from benchmarks.e2e.procstat import cores_used, sample

HANDSHAKE_LIMIT = 16 * 1024
DRAIN_S = 1.5


def mask_frame(payload: bytes, opcode: int, key: int) -> bytes:
    """A client frame (FIN, masked as RFC 6455 requires of clients)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size <= 0xFFFF:
        head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    mask = key.to_bytes(4, "little")
    if not size:
        return head + mask
    stream = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(size, "little")
    return head + mask + masked


class Connection(asyncio.Protocol, abc.ABC):
    """One websocket: handshake, frame parsing, masked writes. Subclasses handle text frames."""

    clock = staticmethod(time.perf_counter)

    def __init__(self, run: LoadRun, target: str) -> None:
        self.run = run
        self.target = target
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.buffer = b""
        self.open = False
        self.closing = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.rng = random.Random()

    # -- transport callbacks --------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef") for _ in range(22)) + "=="
        transport.write(
            (
                f"GET {self.target} HTTP/1.1\r\nHost: {self.run.host}:{self.run.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if self.open and not self.closing:
            self.run.disconnects += 1
        self.open = False

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > HANDSHAKE_LIMIT:
                    self._fail("no end of the handshake answer")
                return
            head, data = self.buffer[:end], self.buffer[end + 4 :]
            self.buffer = b""
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            self.open = True
            self.opened.set_result(None)
            if not data:
                return
        now = self.clock()
        buffer = self.buffer + data if self.buffer else data
        size = len(buffer)
        position = 0
        while size - position >= 2:
            first, length = buffer[position], buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode == 0x1:
                self.on_text(buffer[start:end], now)
            elif opcode == 0x9:
                self.write(buffer[start:end], 0xA)
            elif opcode == 0x8:
                self.close()
            position = end
        self.buffer = buffer[position:] if position < size else b""

    # -- writing --------------------------------------------------------------------------------
    def write(self, payload: bytes, opcode: int = 0x1) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(payload, opcode, self.rng.getrandbits(32)))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.write(b"\x03\xe8", 0x8)
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"handshake refused: {why}"))
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    @abc.abstractmethod
    def on_text(self, payload: bytes, now: float) -> None:
        """One text frame from the server, received at `now`."""


class Watcher(Connection):
    """Subscribes to the session and times every price frame against its server `ts`."""

    @staticmethod
    def clock() -> float:
        return time.time() * 1000.0

    def __init__(self, run: LoadRun, target: str) -> None:
        super().__init__(run, target)
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith(b'{"type":"price"'):
            run = self.run
            run.price_frames_seen += 1
            at = payload.rfind(b'"ts":') + 5
            comma = payload.find(b",", at)
            ts = int(payload[at : comma if comma > 0 else len(payload) - 1])
            if run.window_start_ms <= ts < run.window_end_ms:
                latency = now - ts
                run.bcast_latencies.append(latency)
                slowest = run.slowest.get(payload)
                if slowest is None or latency > slowest:
                    run.slowest[payload] = latency
        elif payload.startswith(b'{"type":"hello"'):
            self.write(b'{"op":"subscribe","session_id":%d}' % self.run.session_id)
        elif payload.startswith(b'{"type":"snapshot"') and not self.subscribed.done():
            self.subscribed.set_result(None)


class Bidder(Connection):
    """One account's socket; its pair decides what to bid and when."""

    def __init__(self, run: LoadRun, target: str, number: int) -> None:
        super().__init__(run, target)
        self.number = number
        self.pair: Pair | None = None
        self.sequence = 0
        self.ref = ""
        self.lot_id = 0
        self.intended = 0.0
        self.sent = 0.0

    def bid(self, intended_at: float, lot_id: int, price: int) -> None:
        self.sequence += 1
        self.ref = f"{self.run.tag}.{self.number}.{self.sequence}"
        self.lot_id = lot_id
        self.intended = intended_at
        frame = b'{"op":"bid","lot_id":%d,"price":%d,"ref":"%s"}' % (lot_id, price, self.ref.encode())
        self.sent = time.perf_counter()
        self.write(frame)

    def on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith((b'{"type":"accepted"', b'{"type":"rejected"')):
            answer = orjson.loads(payload)
            if answer.get("ref") == self.ref and self.pair is not None:
                self.ref = ""
                self.pair.answered(self, answer, now)


class Pair:
    """Two bidders on two lots, swapping lots every round (see the module docstring)."""

    def __init__(self, run: LoadRun, a: Bidder, b: Bidder, lots: tuple[int, int], prices: tuple[int, int]):
        self.run = run
        self.bidders = (a, b)
        self.lots = lots
        self.next_min = {lots[0]: prices[0], lots[1]: prices[1]}
        a.pair = b.pair = self
        self.round = 0
        self.waiting = 0
        self.scheduled = 0.0  # paced mode: when this round is due (perf_counter seconds)
        self.interval = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # Priming (before the first phase): rounds at once until one is accepted on both lots, so a
        # run starts in step with the book whatever an earlier run left (who leads which lot).
        self.priming: asyncio.Future[bool] | None = None
        self.attempts = 0
        self.round_ok = True

    @property
    def busy(self) -> bool:
        return self.waiting > 0

    def start(self) -> None:
        self.timer = None
        run = self.run
        if (run.stopping and self.priming is None) or not all(b.open for b in self.bidders):
            return
        a, b = self.bidders
        flip = self.round & 1
        lot_a, lot_b = self.lots[flip], self.lots[1 - flip]
        intended = self.scheduled if run.paced else time.perf_counter()
        self.waiting = 2
        a.bid(intended, lot_a, self.next_min[lot_a])
        b.bid(intended, lot_b, self.next_min[lot_b])

    def answered(self, bidder: Bidder, answer: dict[str, Any], now: float) -> None:
        run = self.run
        next_min = answer.get("next_min")
        if isinstance(next_min, int):
            self.next_min[bidder.lot_id] = next_min
        if run.window_start <= bidder.intended < run.window_end:
            if run.paced:
                run.send_lags.append((bidder.sent - bidder.intended) * 1000.0)
            if answer["type"] == "accepted":
                run.accepted += 1
                run.ack_latencies.append((now - bidder.sent) * 1000.0)
            else:
                code = str(answer.get("code"))
                run.rejected[code] = run.rejected.get(code, 0) + 1
        if answer["type"] != "accepted":
            self.round_ok = False
        self.waiting -= 1
        if self.waiting:
            return
        self.round += 1  # SELF_OUTBID (this bidder leads that lot): the swap fixes it next round
        if self.priming is not None:
            if self.round_ok or self.attempts >= 8:
                self.priming.set_result(self.round_ok)
                self.priming = None
            else:
                self.attempts += 1
                self.round_ok = True
                self.start()
            return
        self.round_ok = True
        if run.stopping:
            return
        if run.paced:
            self.scheduled += self.interval
            delay = self.scheduled - time.perf_counter()
            if delay > 0:
                self.timer = run.loop.call_later(delay, self.start)
                return
        self.start()


class LoadRun:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.host: str = config.get("host", "127.0.0.1")
        self.port: int = config["port"]
        self.path: str = config.get("path", "/ws")
        self.session_id: int = config["session_id"]
        self.pids: dict[str, int] = {name: int(pid) for name, pid in config.get("pids", {}).items()}
        self.pids["client"] = os.getpid()
        # Refs must be new in every run: the engine answers a known ref with its first answer
        # (idempotency) without bidding again.
        self.tag = f"{os.getpid():x}{random.getrandbits(24):06x}"
        self.parallel = asyncio.Semaphore(config.get("connect_parallel", 64))
        self.bidders: list[Bidder] = []
        self.watchers: list[Watcher] = []
        self.pairs: list[Pair] = []
        self.disconnects = 0
        self.paced = False
        self.stopping = True
        self._reset()

    def _reset(self) -> None:
        inf = float("inf")
        self.window_start = self.window_end = inf  # perf_counter seconds
        self.window_start_ms = self.window_end_ms = inf  # wall clock ms
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.ack_latencies = array.array("d")
        self.send_lags = array.array("d")
        self.bcast_latencies = array.array("d")
        self.slowest: dict[bytes, float] = {}
        self.price_frames_seen = 0  # in and out of the window, for diagnosis

    async def connect(self) -> None:
        """Bidders first (then `prime`), watchers after: priming's burst of bids is not broadcast."""
        config = self.config
        tokens: list[str | None] = config.get("tokens", [])
        if len(tokens) % 2:
            raise ValueError("bidders come in pairs: give an even number of tokens")
        lots: list[int] = config.get("lots", [])
        prices: list[int] = config.get("next_min", [])
        if len(lots) < len(tokens) or len(prices) < len(tokens):
            raise ValueError("one lot (and its next_min) per bidder")
        jobs = []
        for number, token in enumerate(tokens):
            target = self.path + (f"?token={token}" if token else "")
            bidder = Bidder(self, target, number)
            self.bidders.append(bidder)
            jobs.append(self._open(bidder))
        await asyncio.wait_for(asyncio.gather(*jobs), config.get("connect_timeout", 120))
        for p in range(len(tokens) // 2):
            a, b = self.bidders[2 * p], self.bidders[2 * p + 1]
            self.pairs.append(
                Pair(self, a, b, (lots[2 * p], lots[2 * p + 1]), (prices[2 * p], prices[2 * p + 1]))
            )

    async def _open(self, connection: Connection) -> None:
        async with self.parallel:
            await self.loop.create_connection(lambda: connection, self.host, self.port)
            await connection.opened
            if isinstance(connection, Watcher):
                await connection.subscribed

    async def connect_watchers(self) -> None:
        self.watchers = [Watcher(self, self.path) for _ in range(int(self.config.get("watchers", 0)))]
        jobs = [self._open(watcher) for watcher in self.watchers]
        await asyncio.wait_for(asyncio.gather(*jobs), self.config.get("connect_timeout", 120))

    async def prime(self) -> int:
        """Bring every pair in step with the book; returns how many pairs could not be."""
        futures = []
        for pair in self.pairs:
            pair.priming = self.loop.create_future()
            pair.attempts, pair.round_ok = 0, True
            futures.append(pair.priming)
            pair.start()
        results = await asyncio.wait_for(asyncio.gather(*futures), 60)
        return sum(1 for ok in results if not ok)

    async def phase(self, spec: dict[str, Any], earlier: dict[str, dict[str, Any]]) -> dict[str, Any]:
        self._reset()
        mode = spec.get("mode", "closed")
        rate = spec.get("rate")
        if spec.get("rate_from"):
            source = earlier[spec["rate_from"]["phase"]]
            rate = source["acked_per_s"] * spec["rate_from"].get("fraction", 1.0)
        self.paced = mode == "paced"
        if self.paced and (not rate or rate <= 0):
            raise ValueError("a paced phase needs a positive rate")
        warmup, duration = float(spec.get("warmup", 1.0)), float(spec["duration"])
        self.stopping = False
        now = time.perf_counter()
        if self.pairs:
            interval = len(self.bidders) / rate if self.paced else 0.0
            for index, pair in enumerate(self.pairs):
                pair.interval = interval
                pair.scheduled = now + interval * index / len(self.pairs)
                if self.paced:
                    pair.timer = self.loop.call_at(self.loop.time() + (pair.scheduled - now), pair.start)
                else:
                    pair.start()
        await asyncio.sleep(warmup)
        self.window_start = time.perf_counter()
        self.window_start_ms = time.time() * 1000.0
        self.window_end = self.window_end_ms = float("inf")
        cpu_before = sample(self.pids)
        await asyncio.sleep(duration)
        cpu_after = sample(self.pids)
        self.window_end = time.perf_counter()
        self.window_end_ms = time.time() * 1000.0
        elapsed = self.window_end - self.window_start
        self.stopping = True
        for pair in self.pairs:
            if pair.timer is not None:
                pair.timer.cancel()
                pair.timer = None
        deadline = time.perf_counter() + float(self.config.get("drain_s", DRAIN_S))
        while time.perf_counter() < deadline and any(pair.busy for pair in self.pairs):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()) if self.watchers else 0.0)
        stuck = sum(pair.waiting for pair in self.pairs)
        for pair in self.pairs:
            pair.waiting = 0
            for bidder in pair.bidders:
                bidder.ref = ""  # an answer still on its way is ignored
        frames = len(self.slowest)
        deliveries = len(self.bcast_latencies)
        result: dict[str, Any] = {
            "name": spec.get("name", mode),
            "mode": mode,
            "bidders": len(self.bidders),
            "watchers": len(self.watchers),
            "rate_target": round(rate, 1) if self.paced else None,
            "seconds": round(elapsed, 3),
            "accepted": self.accepted,
            "acked_per_s": round(self.accepted / elapsed, 1),
            "rejected": self.rejected,
            "unanswered": stuck,
            "ack_ms": percentiles(self.ack_latencies, (0.5, 0.99, 0.999)),
            "send_lag_ms": percentiles(self.send_lags, (0.5, 0.99)) if self.paced else None,
            "cpu_cores": cores_used(cpu_before, cpu_after, elapsed),
            "disconnects": self.disconnects,
        }
        if self.watchers:
            result.update(
                {
                    "price_frames": frames,
                    "price_frames_seen": self.price_frames_seen,
                    "deliveries": deliveries,
                    "deliveries_per_s": round(deliveries / elapsed, 1),
                    "delivery_ratio": round(deliveries / (frames * len(self.watchers)), 4)
                    if frames
                    else None,
                    "bcast_ms": percentiles(self.bcast_latencies, (0.5, 0.99, 0.999)),
                    "bcast_all_watchers_ms": percentiles(
                        array.array("d", self.slowest.values()), (0.5, 0.99)
                    ),
                }
            )
        return result

    def close(self) -> None:
        for connection in [*self.bidders, *self.watchers]:
            connection.close()


def percentiles(values: array.array[float], quantiles: tuple[float, ...]) -> dict[str, float | int | None]:
    names = {0.5: "p50", 0.99: "p99", 0.999: "p99_9"}
    out: dict[str, float | int | None] = {"n": len(values)}
    if not values:
        out.update({names[q]: None for q in quantiles})
        out["max"] = None
        return out
    data = numpy.frombuffer(values, dtype=numpy.float64)
    for q, value in zip(quantiles, numpy.quantile(data, quantiles), strict=True):
        out[names[q]] = round(float(value), 3)
    out["max"] = round(float(data.max()), 3)
    return out


async def main_async(config: dict[str, Any]) -> dict[str, Any]:
    run = LoadRun(config)
    started = time.perf_counter()
    await run.connect()
    unprimed = await run.prime()
    await run.connect_watchers()
    connected_s = time.perf_counter() - started
    results: dict[str, dict[str, Any]] = {}
    try:
        for spec in config["phases"]:
            result = await run.phase(spec, results)
            results[result["name"]] = result
    finally:
        run.close()
        await asyncio.sleep(0.05)
    return {"connect_s": round(connected_s, 3), "unprimed_pairs": unprimed, "phases": list(results.values())}


def load_config(argument: str) -> dict[str, Any]:
    if argument == "-":
        return json.loads(sys.stdin.read())
    if argument.lstrip().startswith("{"):
        return json.loads(argument)
    return json.loads(Path(argument).read_text())


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    config = load_config(sys.argv[1])
    loop_name = config.get("loop", "uvloop")
    runner = uvloop.run if loop_name == "uvloop" else asyncio.run
    print(json.dumps(runner(main_async(config))), flush=True)


if __name__ == "__main__":
    main()
