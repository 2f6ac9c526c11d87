"""The community's demo feed that `make run` seeds (issue 23)."""

from __future__ import annotations

from web.context import AppContext


async def seed_demo_feed(ctx: AppContext) -> None:
    """Idempotent: seeds nothing twice."""
