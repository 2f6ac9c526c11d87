"""Readiness: does this process have what its role needs to serve? (`/healthz` is liveness only.)

- `all`: `engine` (the local engine runs), `mongodb`, `redis`;
- `gateway`: `mongodb`, `redis`, `registry` (the engines' registry in Redis answers), but not a
  live engine: sessions whose engine is down answer UNAVAILABLE, the rest of the gateway serves;
- `engine`: `journal` (the engine's writer runs on its journal), `redis` (its lease and stream).

The answer is computed at most once per `READY_CACHE_SECONDS` and shared by every request
meanwhile (one check in flight at a time), so polling `/readyz` cannot hammer MongoDB or Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import tornado.web

if TYPE_CHECKING:
    from web.context import AppContext

READY_CACHE_SECONDS = 1.0
# Each dependency gets this long to answer a ping; a slower one counts as not ready.
CHECK_TIMEOUT_SECONDS = 1.0

Answer = tuple[bool, dict[str, bool]]


class Readiness:
    """The role's checks, cached; `checks_run` counts the rounds actually sent to the dependencies."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.checks_run = 0
        self._answer: Answer | None = None
        self._answered_at = 0.0
        self._running: asyncio.Future[Answer] | None = None

    @property
    def role(self) -> str:
        return self.ctx.role

    async def state(self) -> Answer:
        if self._answer is not None and time.monotonic() - self._answered_at < READY_CACHE_SECONDS:
            return self._answer
        if self._running is None:
            self._running = asyncio.ensure_future(self._check())
            self._running.add_done_callback(self._checked)
        # Shielded: one caller going away must not cancel the round the others wait for.
        return await asyncio.shield(self._running)

    def _checked(self, future: asyncio.Future[Answer]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is None:
            self._answer = future.result()
            self._answered_at = time.monotonic()

    async def _check(self) -> Answer:
        self.checks_run += 1
        ctx = self.ctx
        probes: dict[str, Callable[[], Awaitable[Any]] | bool] = {}
        role = self.role
        if role == "engine":
            probes["journal"] = bool(ctx.engine.running)
        elif role == "all":
            probes["engine"] = bool(ctx.engine.running)
        if role != "engine":
            probes["mongodb"] = lambda: ctx.db.command("ping")
        probes["redis"] = ctx.redis.ping
        if role == "gateway":
            probes["registry"] = self._registry_probe()
        names = list(probes)
        results = await asyncio.gather(*(_answers(probes[name]) for name in names))
        checks = dict(zip(names, results, strict=True))
        return all(checks.values()), checks

    def _registry_probe(self) -> Callable[[], Awaitable[Any]]:
        """The gateway's RemoteEngine reads the registry (persistence/cluster.py): that read. Without
        one (tests, a bare app) the registry is Redis itself."""
        registry: Any = getattr(self.ctx.engine, "registry", None)
        engines = getattr(registry, "engines", None)
        if callable(engines):
            return engines  # type: ignore[no-any-return]
        return self.ctx.redis.ping


async def _answers(probe: Callable[[], Awaitable[Any]] | bool) -> bool:
    if isinstance(probe, bool):
        return probe
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False
    return True


def readiness_of(ctx: AppContext) -> Readiness:
    if ctx.readiness is None:
        ctx.readiness = Readiness(ctx)
    return ctx.readiness


class ReadyHandler(tornado.web.RequestHandler):
    """200 `{"ready": true, "checks": {...}}` when every check of the role passes, else 503."""

    def initialize(self, ctx: AppContext) -> None:
        self.readiness = readiness_of(ctx)

    async def get(self) -> None:
        ready, checks = await self.readiness.state()
        self.set_status(200 if ready else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(orjson.dumps({"ready": ready, "checks": checks}))
