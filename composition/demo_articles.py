"""The community's demo articles that `make run` seeds (issue 23)."""

from __future__ import annotations

from web.context import AppContext


async def seed_demo_articles(ctx: AppContext) -> None:
    """Idempotent: seeds nothing twice."""
