"""The running service: built step by step in `start` (composition/bootstrap.py builds the typed
context and its services), torn down in reverse, within a budget, in `stop`. run.py only parses the
settings, starts the embedded servers and runs this."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bson
import pymongo.errors
import tornado.httpclient
import tornado.web

from composition.app import make_app, make_engine_app
from composition.bootstrap import build_context, build_payments, edge_config
from composition.demo import seed_demo
from composition.demo_staff import demo_staff_line, seed_demo_staff
from composition.heap import HeapTrimmer, glibc_malloc_trim, install_heap_gauges
from composition.settings import Settings
from engine.clock import SystemClock
from engine.compaction import Compactor
from engine.engine import Engine
from gateway.community import start_community
from gateway.edge import EdgeServer, build_edge_server
from gateway.rest_orders import start_settlement
from gateway.rest_shop import start_shop
from gateway.viewers_live import share_viewers
from gateway.ws import BidderSocket, Hub
from persistence import mongo, redis_client
from persistence.accounts import Accounts
from persistence.archive import BidArchiver
from persistence.archive_process import ArchiverProcess
from persistence.cluster import (
    DEFAULT_ENGINE_ID,
    EngineNode,
    RemoteEngine,
    run_with_lease,
    storage_prefix,
)
from persistence.compaction import MongoSettledCloses
from persistence.embedded import Services
from persistence.media import MediaStore
from persistence.redis_bus import PriceBus
from persistence.snapshots import FileSnapshotSink, LocalFirstSnapshotSink, MongoSnapshotSink
from persistence.viewers import ViewerStore
from web.observability import metrics_of

log = logging.getLogger("gavel")


GC_THRESHOLDS = (7_000, 20, 100)  # CPython's defaults are (700, 10, 10)
# A stop (SIGTERM, Ctrl-C) ends within this, even with MongoDB or Redis stalled or gone: under the
# 5 s an orchestrator usually grants before SIGKILL, with room for the interpreter's own exit.
STOP_BUDGET_SECONDS = 4.0
# How often the snapshot task looks at the journal's growth (SNAPSHOT_RECORDS): a busy engine
# (20k bids/s) passes 100,000 records in 5 s, so a second is fine-grained enough.
SNAPSHOT_CHECK_SECONDS = 1.0


def snapshot_due(records_since: int, seconds_since: float, *, interval: float, every_records: int) -> bool:
    """Is a snapshot due, `records_since` journal records and `seconds_since` seconds after the last?

    Something must have changed; then either the interval has passed or the journal has grown by
    `every_records`. The second bounds what a restart replays (the journal after the newest
    snapshot) however busy the engine is: by time alone, a minute at 20k bids/s is 1.2M records.
    """
    if records_since <= 0:
        return False
    return records_since >= every_records or seconds_since >= interval


def engine_snapshots(data_dir: Path, db: Any, engine_id: str) -> LocalFirstSnapshotSink:
    """Where a local engine's snapshots go: `DATA_DIR/snapshots` (read first at a restart) and MongoDB."""
    return LocalFirstSnapshotSink(
        # Two are enough locally: the journal goes back to the previous snapshot, not further.
        FileSnapshotSink(data_dir / "snapshots", keep=2),
        MongoSnapshotSink(db, prefix=storage_prefix(engine_id)),
    )


async def load_shared_secret(db: Any, legacy_path: Path) -> bytes:
    """The per-installation pseudonym secret, kept in MongoDB so every gateway names bidders alike.

    Created once (insert-if-absent: two processes starting together agree on the first one); an
    older installation's `secret.key` file is adopted so its pseudonyms do not change.
    """
    doc = await db.meta.find_one({"_id": "pseudonym_secret"})
    if doc is None:
        legacy = await asyncio.to_thread(lambda: legacy_path.read_bytes() if legacy_path.exists() else None)
        secret = legacy or secrets.token_bytes(32)
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            await db.meta.insert_one({"_id": "pseudonym_secret", "value": bson.Binary(secret)})
        doc = await db.meta.find_one({"_id": "pseudonym_secret"})
    return bytes(doc["value"])


async def ensure_admin_account(accounts: Accounts, db: Any, password: str | None) -> str | None:
    """Use ADMIN_PASSWORD when given; otherwise generate one only if no admin exists yet.

    Returns a newly generated password (to print once), else None.
    """
    if password:
        await accounts.ensure_admin(password)
        return None
    if await db.users.find_one({"username_key": "admin"}, {"_id": 1}) is not None:
        return None
    generated = secrets.token_urlsafe(12)
    await accounts.ensure_admin(generated)
    return generated


class Service:
    """Everything that runs: built in `start`, torn down in reverse in `stop`."""

    # The websocket side's classes; benchmarks/e2e/gavel_server.py runs its variants through these.
    hub_type: type[Hub] = Hub
    socket_type: type[BidderSocket] = BidderSocket

    def __init__(self, config: Settings, services: Services) -> None:
        self.config = config
        self.services = services
        self.background: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.node: EngineNode | None = None
        self.archiver: BidArchiver | ArchiverProcess | None = None
        self.compactor: Compactor | None = None
        self.remote: RemoteEngine | None = None
        self.bus: PriceBus | None = None
        self.hub: Hub | None = None
        self.generated_admin_password: str | None = None
        self.demo_session: int | None = None
        self.heap = HeapTrimmer(glibc_malloc_trim(), config.malloc_trim_interval_ms / 1000)

    async def start(self) -> None:
        """Each step builds on the ones before; the last one opens the port."""
        await self._connect()
        await self._build_engine()
        await self._build_context()
        # Start-up's garbage is collected before the engine recovers, and the recovered book frozen
        # right after: the last collection (_freeze_the_heap) then never walks the book, which
        # after a long history is millions of objects (downtime: 0.5 s and more per million).
        gc.collect()
        await self._start_engine_side()
        gc.freeze()
        self.http_client = tornado.httpclient.AsyncHTTPClient()
        self.provider, _settlement = build_payments(self.ctx, self.config, self.http_client)
        if self.config.role == "engine":
            self.app = make_engine_app(self.ctx)
        else:
            self.app = await self._start_gateway()
        if self.archiver is not None:
            self.local_engine.commit_observer = metrics_of(self.ctx).committed
        install_heap_gauges(metrics_of(self.ctx), self.heap)
        _freeze_the_heap()
        self._listen()

    async def _connect(self) -> None:
        """MongoDB (a request client and a background client) and Redis, with their bounds."""
        config = self.config
        # Requests wait for MongoDB at most DEPENDENCY_TIMEOUT, then answer 503 UNAVAILABLE; the
        # background work (snapshots, the inline write-behind) has a client that may wait longer.
        idle_ms = config.mongodb_max_idle_ms
        self.client = mongo.connect(
            self.services.mongo_url, timeout_ms=config.dependency_timeout_ms, max_idle_ms=idle_ms
        )
        self.background_client = mongo.connect(
            self.services.mongo_url, app_name="gavel-background", max_idle_ms=idle_ms
        )
        await mongo.check_replica_set(self.background_client)
        self.db = self.client[config.mongodb_db]
        self.background_db = self.background_client[config.mongodb_db]
        await mongo.ensure_indexes(self.background_db)
        redis_timeout_ms = config.dependency_timeout_ms
        if config.role == "engine":
            redis_timeout_ms = max(redis_timeout_ms, 2_000)  # its XREADGROUP blocks 1 s on this client
        self.redis = redis_client.connect(self.services.redis_url, timeout_ms=redis_timeout_ms)

    async def _build_engine(self) -> None:
        """A gateway's RemoteEngine, or the local engine with its write-behind (and, ROLE=engine,
        its lease: taken before the journal is touched, so there are never two owners)."""
        config = self.config
        data_dir = config.data_dir
        lease_ms = int(config.lease_seconds * 1000)
        if config.role == "gateway":
            self.remote = RemoteEngine(
                self.redis,
                SystemClock(),
                lambda engine_id: MongoSnapshotSink(self.background_db, prefix=storage_prefix(engine_id)),
                lease_ms=lease_ms,
            )
            self.engine: Engine | RemoteEngine = self.remote
            return
        # The single-process role is engine "main", whose storage keeps its historical names.
        engine_id = config.engine_id if config.role == "engine" else DEFAULT_ENGINE_ID
        self.local_engine = Engine(
            SystemClock(),
            data_dir / "journal",
            engine_snapshots(data_dir, self.background_db, engine_id),
            sync=config.journal_fsync,
        )
        self.engine = self.local_engine
        archive_id = "" if engine_id == DEFAULT_ENGINE_ID else engine_id
        if config.archiver == "inline":
            self.archiver = BidArchiver(self.background_db, engine_id=archive_id)
        else:
            self.archiver = ArchiverProcess(
                self.background_db,
                mongodb_url=self.services.mongo_url,
                journal_dir=data_dir / "journal",
                snapshot_prefix=storage_prefix(engine_id),
                snapshot_dir=data_dir / "snapshots",
                engine_id=archive_id,
                log_level=config.log_level,
            )
        if config.role == "engine":
            self.node = EngineNode(
                self.redis,
                self.local_engine,
                config.engine_id,
                data_dir,
                lease_ms=lease_ms,
                on_lease_lost=self._lease_lost,
            )
            await self.node.acquire()

    async def _build_context(self) -> None:
        """The admin account (not on an engine) and the typed context every handler receives."""
        config = self.config
        accounts = Accounts(self.client, self.db)
        # Independent round trips to MongoDB: together, not one after the other (start-up time).
        secret = load_shared_secret(self.db, config.data_dir / "secret.key")
        if config.role != "engine":
            self.generated_admin_password, pseudonym_secret = await asyncio.gather(
                ensure_admin_account(accounts, self.db, config.admin_password), secret
            )
        else:
            pseudonym_secret = await secret
        self.ctx = build_context(
            config,
            engine=self.engine,
            client=self.client,
            db=self.db,
            redis_client=self.redis,
            accounts=accounts,
            pseudonym_secret=pseudonym_secret,
        )

    async def _start_engine_side(self) -> None:
        """The local engine recovers and starts; a gateway's RemoteEngine waits for an engine."""
        if self.archiver is not None:
            await self._start_engine(self.archiver)
        if self.remote is not None:
            await self.remote.start()
            if not await self.remote.wait_for_engine(30.0):
                log.warning("no engine is alive yet; sessions answer UNAVAILABLE until one is")

    async def _start_gateway(self) -> tornado.web.Application:
        """The websocket hub (and, ROLE=all, the Redis price bus), the public app, the shop and
        settlement workers, the demo data."""
        config = self.config
        hub_publish = None
        if config.role == "all":
            # Other processes of the same role may serve the same sessions' sockets.
            self.bus = PriceBus(self.redis, origin=f"gw-{os.getpid()}-{secrets.token_hex(3)}")
            self.ctx.price_bus = self.bus
            hub_publish = self.bus.publish
            self.bus.start()
        self.hub = self.hub_type(self.ctx, publish=hub_publish)
        self.ctx.hub = self.hub
        self.engine.listeners.append(self.hub.on_batch)
        # The public reads' cache, kept correct across processes over Redis (persistence/read_cache.py).
        self.background.append(self.ctx.read_cache.start())
        app = make_app(self.ctx, websocket=self.socket_type)
        # Independent of each other (their own collections, indexes and tasks): their round trips
        # to MongoDB overlap instead of adding up, which is most of this step's start-up time.
        started = await asyncio.gather(
            self._resync_engine(),
            start_shop(self.ctx),
            start_community(self.ctx),  # indexes, the article scheduler
            start_settlement(self.ctx) if config.role == "all" else _no_tasks(),
        )
        for tasks in started[1:]:
            self.background += tasks
        if config.role != "all":
            # One settlement worker across the gateways, chosen by a lease.
            lease_ms = int(config.lease_seconds * 1000)
            self.background.append(
                asyncio.create_task(
                    run_with_lease(self.redis, "settlement", lease_ms, lambda: start_settlement(self.ctx)),
                    name="settlement-lease",
                )
            )
        self.demo_session = None
        if config.seed_demo:
            # one staff account per role (composition/demo_staff.py), beside the demo's data
            self.demo_session, _ = await asyncio.gather(seed_demo(self.ctx), seed_demo_staff(self.ctx))
        self.background.append(asyncio.create_task(self._media_backfill(), name="media-backfill"))
        self.background.append(asyncio.create_task(self._recount_watchers(), name="recount-watchers"))
        # Every gateway's viewers in Redis: the back office counts distinct viewers across them all.
        gateway = self.bus.origin if self.bus is not None else f"gw-{os.getpid()}-{secrets.token_hex(3)}"
        self.background.append(
            asyncio.create_task(
                share_viewers(self.ctx, ViewerStore(self.redis), gateway), name="share-viewers"
            )
        )
        return app

    async def _resync_engine(self) -> list[asyncio.Task[None]]:
        """What the catalogue and the deposits hold but the engine may not: lots first, since a
        deposit may name one of them."""
        await self.ctx.catalog.resubmit_unsynced()
        await self.ctx.deposits.reregister_paid()
        return []

    async def _recount_watchers(self) -> None:
        """Lots' 围观 counts equal their distinct viewers (counts from before viewers were recorded
        counted page loads); in the background, so the service answers at once."""
        try:
            changed = await self.ctx.catalog.recount_watchers()
        except Exception:  # a count stays as it was; the next start tries again
            log.exception("watcher recount failed")
            return
        if changed:
            log.info("watcher recount: %d lot(s) set to their distinct viewers", changed)

    async def _media_backfill(self) -> None:
        """Variants for images uploaded before they existed (persistence/media.py; also a command)."""
        if self.ctx.media_dir is None:
            return
        try:
            made = await MediaStore(self.ctx.media_dir).backfill(self.ctx.catalog.media)
        except Exception:  # a bad disk must not stop the service: the images stay as they were
            log.exception("media backfill failed")
            return
        if made:
            log.info("media backfill: variants made for %d image(s)", made)
            # Cached views hold pictures: the new variants show from the next read.
            for domain in ("auction", "shop"):
                await self.ctx.read_cache.changed(domain)

    def _listen(self) -> None:
        """The edge server on PORT, then the periodic work."""
        self.server: EdgeServer = build_edge_server(self.app, edge_config(self.config), websockets=self.hub)
        self.server.listen(self.config.port, self.config.host)
        if isinstance(self.archiver, ArchiverProcess):
            self.archiver.start(durable_seq=self.local_engine.last_seq)
        if self.archiver is not None:
            self.background.append(asyncio.create_task(self._snapshots(), name="snapshots"))
        if self.compactor is not None:
            self.background.append(asyncio.create_task(self.compactor.run(), name="compaction"))
        self.background.append(asyncio.create_task(self._watch_children(), name="watch-children"))
        self.background.append(asyncio.create_task(self.heap.run(), name="heap-trim"))

    async def _start_engine(self, archiver: BidArchiver | ArchiverProcess) -> None:
        engine = self.local_engine
        archived_seq = await archiver.load_archived_seq()
        # A snapshot lets the journal before it go: only once the archive holds all of it.
        engine.before_snapshot = archiver.wait_caught_up
        self.ctx.archiver = archiver
        started = time.perf_counter()
        if isinstance(archiver, BidArchiver):
            engine.listeners.append(archiver.on_batch)
            await engine.start(redeliver_after=archived_seq)
            archiver.start()
        else:
            # The child reads what a crash kept from the archive out of the journal itself. It is
            # started once the service listens (`_listen`): until then the journal holds it all,
            # and its start (an interpreter, a snapshot, a replay) is not needed to serve.
            engine.record_observer = _both(engine.record_observer, archiver.on_records)
            await engine.start()
        # Closed lots lose their bid history once archived and settled (engine/compaction.py).
        self.compactor = Compactor(
            lambda: engine.book,
            lambda: engine.last_seq,
            engine.execute,
            archiver,
            MongoSettledCloses(self.background_db),
            interval=self.config.compact_interval,
        )
        self.compactor.adopt_book()
        engine.listeners.append(self.compactor.on_batch)
        log.info(
            "engine ready",
            extra={"last_seq": engine.last_seq, "recovery_s": round(time.perf_counter() - started, 3)},
        )
        if self.node is not None:
            await self.node.serve()

    def _lease_lost(self) -> None:
        self.exit_code = 1
        self.stopping.set()

    def banner(self) -> str:
        base = self.ctx.base_url
        ws = base.replace("http", "ws", 1)
        if self.config.role == "engine":
            return "\n".join(
                [
                    "",
                    f"Gavel engine {self.config.engine_id!r} is running (its sessions come through Redis):",
                    f"  health             {base}/healthz  {base}/readyz  {base}/metrics",
                    f"  MongoDB            {self.services.mongo_url}",
                    f"  Redis              {self.services.redis_url}",
                    f"  data               {self.config.data_dir.resolve()}",
                    "Press Ctrl-C to stop.",
                ]
            )
        lines = [
            "",
            "Gavel is running:" if self.config.role == "all" else "Gavel gateway is running:",
            f"  bidder app         {base}/",
            f"  community          {base}/#/community   (docs/community.md)",
            f"  REST API           {base}/api/v1/sessions   (docs/openapi.yaml)",
            f"  websocket          {ws}/ws                  (docs/protocol.md)",
            f"  admin UI           {base}/admin/   (user admin)",
            f"  moderation         {base}/admin/community   articles {base}/admin/articles",
            f"  admin API          {base}/api/v1/admin/login",
            f"  health             {base}/healthz",
            f"  MongoDB            {self.services.mongo_url}",
            f"  Redis              {self.services.redis_url}",
            f"  data               {self.config.data_dir.resolve()}",
        ]
        if self.generated_admin_password:
            lines.append(
                f"  admin password     {self.generated_admin_password}   (shown once; set ADMIN_PASSWORD)"
            )
        if self.demo_session is not None:
            lines.append(
                f"  demo session       {self.demo_session}; bidders: "
                "alice / alice-demo-pass, bob / bob-demo-pass; mentors: "
                "mentor1 / mentor1-demo-pass, mentor2 / mentor2-demo-pass"
            )
        if self.config.seed_demo:
            lines.append(f"  demo staff         {demo_staff_line()}   (one per role; admin is the owner)")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)

    async def _snapshots(self) -> None:
        """Snapshot when one is due (`snapshot_due`). A failed one is retried when the next is due
        counting from the attempt (another SNAPSHOT_RECORDS records or the interval): its local
        copy may well be stored (LocalFirstSnapshotSink saves it first), and with MongoDB slow or
        away the restart's replay stays bounded by the local copies."""
        engine = self.local_engine
        config = self.config
        last, taken_at = engine.last_seq, time.monotonic()
        while True:
            await asyncio.sleep(min(SNAPSHOT_CHECK_SECONDS, config.snapshot_interval))
            if not snapshot_due(
                engine.last_seq - last,
                time.monotonic() - taken_at,
                interval=config.snapshot_interval,
                every_records=config.snapshot_records,
            ):
                continue
            previous = engine.snapshot_seq
            taken_at = time.monotonic()
            attempted = engine.last_seq
            try:
                last = await engine.snapshot()
            except Exception:
                log.exception("snapshot failed; the journal keeps everything until the next one")
                last = attempted
                continue
            if self.node is not None:
                # Gateways load the newest snapshot, then the stream after it; keep one spare.
                await self.node.trim(previous)
            if config.malloc_trim_interval_ms:
                # A snapshot's buffers are the process's biggest transient: freed, handed back now.
                await self.heap.trim_now()

    async def _watch_children(self) -> None:
        """An embedded server that dies is reported loudly, and the service stops."""
        while True:
            await asyncio.sleep(2.0)
            dead = self.services.check()
            if dead:
                for description in dead:
                    log.error("embedded server died: %s", description)
                self.exit_code = 1
                self.stopping.set()
                return

    async def stop(self, budget_s: float = STOP_BUDGET_SECONDS) -> None:
        """Stop taking connections, answer what is queued, flush the journal, snapshot, close.

        Within `budget_s` whatever MongoDB and Redis do: the local steps (answers, the journal)
        come first and always run; every step that talks to MongoDB or Redis (the snapshot, the
        write-behind's last flush, the lease, closing the clients) gets what is left of the budget
        and is given up, with one log line, when it runs out. Nothing acknowledged is lost by
        giving up: it is in the journal, which the next start replays.
        """
        budget = StopBudget(budget_s)
        self.server.stop()
        if self.hub is not None:
            self.hub.close_all(1001, "server shutting down")
        for task in self.background:
            task.cancel()
        if self.node is not None:
            await budget.run("stop reading engine commands", self.node.stop_reading(), at_most=1.0)
        if self.archiver is not None:
            engine = self.local_engine
            # The snapshot and the write-behind's last flush go to MongoDB: worth waiting for only
            # if it answers now. If not, the journal (already flushed for every acknowledged bid)
            # holds everything; the next start replays it.
            mongodb_up = await budget.run("MongoDB ping", self.background_db.command("ping"), at_most=0.5)
            if mongodb_up:
                await budget.run("the shutdown snapshot", engine.snapshot(), keep=1.0)
            await engine.stop(snapshot=False)  # local: answers the queue, closes the journal
            if isinstance(self.archiver, ArchiverProcess):
                await self.archiver.stop(flush=mongodb_up, timeout=budget.left(keep=0.5))
            else:
                await self.archiver.stop(flush=mongodb_up, flush_timeout=budget.left(keep=0.5))
        if self.node is not None:
            await budget.run("releasing the engine lease", self.node.stop(), at_most=1.0)
        if self.remote is not None:
            await budget.run("stopping the engine client", self.remote.stop(), at_most=1.0)
        if self.bus is not None:
            await budget.run("stopping the price bus", self.bus.stop(), at_most=1.0)
        # The sandbox has deliveries to end; a failure is logged (StopBudget.run, SandboxProvider.aclose).
        await budget.run("closing the payment provider", self.provider.aclose(), at_most=1.0)
        await budget.run("closing connections", self.server.close_all_connections(), at_most=1.0)
        await budget.run("closing Redis", self.redis.aclose(), at_most=0.5)
        for client in (self.client, self.background_client):
            await budget.run("closing MongoDB", client.close(), at_most=0.5)
        self.heap.close()
        log.info("stopped", extra={"last_seq": self.engine.last_seq, "role": self.config.role})


class StopBudget:
    """What is left of the time a stop may take, shared by its steps."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, keep: float = 0.0) -> float:
        return max(0.0, self.deadline - time.monotonic() - keep)

    async def run(
        self, what: str, step: Awaitable[Any], *, at_most: float | None = None, keep: float = 0.0
    ) -> bool:
        """Await `step` for what is left (less `keep` for the steps after it, at most `at_most`);
        False, after one log line and no traceback, when it fails or the time runs out."""
        timeout = self.left(keep) if at_most is None else min(at_most, self.left(keep))
        timeout = max(timeout, 0.05)  # a quick local step still gets its turn
        try:
            await asyncio.wait_for(step, timeout)
        except TimeoutError:
            log.warning("shutdown: gave up %s after %.1f s", what, timeout)
            return False
        except Exception as error:
            log.warning("shutdown: %s failed: %s: %s", what, type(error).__name__, str(error)[:200])
            return False
        return True


async def _no_tasks() -> list[asyncio.Task[None]]:
    return []


def _both(
    first: Callable[[int, bytes], None] | None, second: Callable[[int, bytes], None]
) -> Callable[[int, bytes], None]:
    """One record observer calling two (the scale-out journal stream and the archiver process)."""
    if first is None:
        return second

    def observe(last_seq: int, data: bytes) -> None:
        first(last_seq, data)
        second(last_seq, data)

    return observe


def _freeze_the_heap() -> None:
    """The cyclic collector stops the loop, and so every websocket, while it runs. What start-up
    built (the recovered book, modules, caches) lives as long as the process: frozen, it is out of
    the collector's reach. Fewer, later collections after that: almost everything here is freed by
    reference counting, and a full pass over the engine's recent outcomes stalled acks by 30-80 ms
    (docs/performance.md, "Ack latency")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
