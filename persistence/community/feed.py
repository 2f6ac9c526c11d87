"""The community's feed on MongoDB (issue 23; see /work/wt/briefs23/api.md while it is being built)."""

from __future__ import annotations

from persistence.mongo import Database


async def ensure_indexes(db: Database) -> None:
    """The unique keys this module's guards rely on."""
