"""What the community's services need from the outside, as small structural ports.

`persistence/community/` implements them on MongoDB and Redis; tests/community/ has in-memory fakes.
Each service module adds the ports it needs here, in its own block.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol


class Clock(Protocol):
    def __call__(self) -> datetime.datetime: ...  # aware, UTC


class RateLimiter(Protocol):
    async def take(self, user_id: int, action: str) -> int | None:
        """Count one `action` (a key of rules.RATE_LIMITS) by the user; None when allowed, else the
        seconds until the window lets one through again."""
        ...


class Blocks(Protocol):
    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        """Whether an admin's block on posting, commenting and reporting is in force."""
        ...


# == articles (深科技; community/articles.py, persistence/community/articles.py) ===========================
Document = dict[str, Any]


class ArticleStore(Protocol):
    """`community_articles` and `community_article_sources` (api.md "Documents"). It stores and
    loads; the service decides. Titles and source names are unique: a duplicate raises the
    service's ArticleTitleExists / SourceNameExists."""

    async def create_source(self, name: str) -> Document: ...

    async def source(self, source_id: int) -> Document | None: ...

    async def sources(self) -> list[Document]: ...

    async def source_names(self, ids: list[int]) -> dict[int, str]: ...

    async def insert(self, fields: Document) -> Document:
        """A new article: the store allocates the id (counter "community_article")."""
        ...

    async def article(self, article_id: int) -> Document | None: ...

    async def update(
        self, article_id: int, changes: Document, *, status_from: str | None = None
    ) -> Document | None:
        """`$set` the changes; with `status_from`, only while the status is still that one (None:
        it was not, nothing written). Returns the document after."""
        ...

    async def visible_page(
        self,
        now: datetime.datetime,
        position: str | None,
        source_id: int | None,
        after: tuple[int, int, int] | None,
        limit: int,
    ) -> list[Document]:
        """Visible articles (api.md) ordered by (weight, pub_at, _id) descending, strictly after the
        keys `after` (weight, pub_at in ms, id)."""
        ...

    async def due(self, now: datetime.datetime) -> list[Document]:
        """Articles the scheduler may have to move: scheduled with pub_at or offline_at reached,
        online with offline_at reached."""
        ...

    async def reader_flags(self, user_id: int, article_id: int) -> dict[str, bool]:
        """`liked_by_me` and `collected_by_me` (the reactions' records, read-only here)."""
        ...


class MediaFiles(Protocol):
    async def delete(self, url_or_name: str) -> bool:
        """Remove an uploaded file of ours (and its variants); whether it was there."""
        ...
