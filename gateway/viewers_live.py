"""This process's viewers of each session, shared through Redis every few seconds, so the back
office counts a session's distinct viewers across every gateway (backoffice/viewers.py decides
what a viewer is and when one expires; persistence/viewers.py stores them; admin/live.py counts)."""

from __future__ import annotations

import asyncio
import logging

from backoffice.viewers import REFRESH_S
from persistence.viewers import ViewerStore, wall_ms
from web.context import AppContext

log = logging.getLogger("gavel.viewers")


async def share_viewers(ctx: AppContext, store: ViewerStore, gateway: str) -> None:
    """Refresh this gateway's viewers in Redis every REFRESH_S until cancelled."""
    hub = ctx.hub
    hub.viewer_store = store
    failing = False
    try:
        while True:
            try:
                await store.refresh(hub.session_viewers(gateway), wall_ms())
                if failing:
                    log.info("viewers shared again")
                failing = False
            except Exception as error:  # Redis away: counts fall back to this process's sockets
                if not failing:
                    log.warning("viewers not shared: %s", error)
                failing = True
            await asyncio.sleep(REFRESH_S)
    finally:
        hub.viewer_store = None
