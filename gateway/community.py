"""The community's routes and start-up, joined (docs/community.md): the feed (rest_feed), views,
likes, comments and collections (rest_reactions), articles (rest_articles), reports and moderation
(rest_moderation)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import rest_articles, rest_feed, rest_moderation, rest_reactions
from web.context import AppContext

MODULES = (rest_feed, rest_reactions, rest_articles, rest_moderation)


def community_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    return [route for module in MODULES for route in module.routes(ctx)]


async def start_community(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Indexes and background tasks (the article scheduler); cancel the tasks at shutdown."""
    tasks: list[asyncio.Task[None]] = []
    for module in MODULES:
        tasks += await module.start(ctx)
    return tasks
