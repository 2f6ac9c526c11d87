"""The community's articles over REST (issue 23; docs/community.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from persistence.community.articles import ensure_indexes
from web.context import AppContext


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    return []


async def start(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Start-up: indexes, and any background task (cancelled at shutdown)."""
    await ensure_indexes(ctx.db)
    return []
