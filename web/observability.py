"""Health, readiness and Prometheus metrics (text exposition format, no dependency).

`/metrics` is scraped by Prometheus; `/healthz` and `/readyz` are in web/http.py and
web/health.py.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson
import tornado.httputil
import tornado.web

if TYPE_CHECKING:
    from web.context import AppContext

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value

    def exposition(self, name: str) -> list[str]:
        lines = []
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.count}")
        return lines


class Metrics:
    """Process-wide counters and histograms; gauges are read from the live objects when scraped."""

    def __init__(self) -> None:
        self.bids = Counter[tuple[str, str]]()  # (outcome, code)
        self.ack_latency = Histogram()
        self.fsync_latency = Histogram()
        self.fsync_records = 0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def bid_answered(self, code: str | None, seconds: float) -> None:
        self.bids["accepted" if code is None else "rejected", code or ""] += 1
        self.ack_latency.observe(seconds)

    def committed(self, records: int, seconds: float) -> None:
        self.fsync_records += records
        self.fsync_latency.observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def exposition(self) -> str:
        lines = [
            "# HELP gavel_bids_total Bids answered, by outcome and rejection code.",
            "# TYPE gavel_bids_total counter",
        ]
        for (outcome, code), count in sorted(self.bids.items()):
            lines.append(f'gavel_bids_total{{outcome="{outcome}",code="{code}"}} {count}')
        lines += [
            "# HELP gavel_bid_ack_seconds Time from a bid frame to its answer.",
            "# TYPE gavel_bid_ack_seconds histogram",
        ]
        lines += self.ack_latency.exposition("gavel_bid_ack_seconds")
        lines += [
            "# HELP gavel_journal_fsync_seconds Journal write + fsync per group commit.",
            "# TYPE gavel_journal_fsync_seconds histogram",
        ]
        lines += self.fsync_latency.exposition("gavel_journal_fsync_seconds")
        lines += [
            "# TYPE gavel_journal_records_total counter",
            f"gavel_journal_records_total {self.fsync_records}",
        ]
        for name, (help_text, read) in sorted(self.gauges.items()):
            try:
                value = float(read())
            except Exception:  # a gauge that cannot be read is left out, never a failed scrape
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"


def metrics_of(ctx: AppContext) -> Metrics:
    """The process's metrics, made (with their gauges) on first use: one registry per context."""
    if ctx.metrics is None:
        ctx.metrics = Metrics()
        install_gauges(ctx, ctx.metrics)
    return ctx.metrics


def install_gauges(ctx: AppContext, metrics: Metrics) -> None:
    """Gauges every process has: engine queue, sockets, write-behind lag (when wired)."""
    engine = ctx.engine
    metrics.gauge("gavel_engine_queue_depth", "Commands waiting for the engine.", lambda: engine.queue_depth)
    metrics.gauge("gavel_engine_last_seq", "Highest journal sequence applied.", lambda: engine.last_seq)
    metrics.gauge("gavel_websockets_open", "Open websocket connections.", lambda: ctx.hub.socket_count)
    metrics.gauge(
        "gavel_websocket_frames_sent", "Fan-out frames written (total).", lambda: ctx.hub.frames_sent
    )
    archiver = ctx.archiver
    if archiver is not None:
        metrics.gauge(
            "gavel_write_behind_lag_events", "Committed events not yet in MongoDB.", lambda: archiver.lag
        )
        metrics.gauge(
            "gavel_write_behind_lag_seq",
            "Journal seqs applied but not yet archived.",
            lambda: engine.last_seq - archiver.archived_seq,
        )
    bus = ctx.price_bus
    if bus is not None:
        metrics.gauge("gavel_pubsub_pending_frames", "Frames waiting for Redis PUBLISH.", lambda: bus.pending)


def metrics_refusal(
    request: tornado.httputil.HTTPServerRequest, token: str | None
) -> tuple[int, str, str] | None:
    """Why `/metrics` is not for this request (status, code, message), or None.

    With METRICS_TOKEN: `Authorization: Bearer <token>`, compared in constant time. Without it:
    loopback clients only; `remote_ip` is the client a trusted proxy named (gateway/edge.py), and
    a request that carries X-Forwarded-For from an untrusted local proxy is not a local client.
    """
    if token:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return 401, "UNAUTHORIZED", "send Authorization: Bearer <METRICS_TOKEN>"
    try:
        loopback = ipaddress.ip_address(request.remote_ip or "").is_loopback
    except ValueError:
        loopback = False
    if loopback and "X-Forwarded-For" not in request.headers:
        return None
    return 404, "NOT_FOUND", "no such endpoint: /metrics"


class MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def get(self) -> None:
        refusal = metrics_refusal(self.request, self.ctx.limits.metrics_token)
        if refusal is not None:
            status, code, message = refusal
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            if status == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.finish(orjson.dumps({"error": {"code": code, "message": message}}))
            return
        metrics = metrics_of(self.ctx)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(metrics.exposition())
        # The settlement backlog lives in MongoDB; a scrape during an outage simply leaves it out.
        try:
            backlog = await asyncio.wait_for(
                self.ctx.db.settlement_outbox.count_documents({"status": "pending"}), 1.0
            )
        except Exception:
            return
        self.write(
            "# HELP gavel_settlement_backlog Closed lots not yet settled.\n"
            "# TYPE gavel_settlement_backlog gauge\n"
            f"gavel_settlement_backlog {backlog}\n"
        )
