"""Sign-in history: every sign-in attempt at the app's JSON login and the admin's login page.

One document per attempt in `signins`: `{user_id, username, at, ip, user_agent, surface, ok,
detail}`. `user_id` is the account the username names (None when it names none); `surface` is
"app" (the JSON login, bidders and students) or "admin" (the back office); `detail` says why a
failed attempt failed. Bounded by age: a TTL index deletes entries older than RETENTION_DAYS
(90 days), so a user's page always has the recent history and the collection never grows past
three months of attempts. Indexed by user and time (the user page reads the newest 50).
"""

from __future__ import annotations

import datetime
from typing import Final, Literal

from pymongo import DESCENDING

from persistence.mongo import SIGNIN_RETENTION_DAYS, Database, Document, utc_now

RETENTION_DAYS: Final = SIGNIN_RETENTION_DAYS  # the TTL index is persistence/mongo.py's
USER_AGENT_MAX: Final = 160  # enough to tell the browser and device apart
Surface = Literal["app", "admin"]


def trimmed_user_agent(raw: str) -> str:
    """The User-Agent header, control characters dropped, cut to USER_AGENT_MAX characters."""
    text = "".join(ch for ch in raw if ch >= " " and ch != "\x7f").strip()
    return text if len(text) <= USER_AGENT_MAX else text[: USER_AGENT_MAX - 1] + "…"


class SigninHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        *,
        username: str,
        surface: Surface,
        ok: bool,
        ip: str,
        user_agent: str,
        user_id: int | None = None,
        detail: str = "",
        at: datetime.datetime | None = None,
    ) -> Document:
        """Insert one attempt. Without `user_id`, the account is looked up by the name tried."""
        if user_id is None and username:
            account = await self.db.users.find_one({"username_key": username.lower()[:64]}, {"_id": 1})
            user_id = int(account["_id"]) if account is not None else None
        doc: Document = {
            "user_id": user_id,
            "username": username[:64],
            "at": at or utc_now(),
            "ip": ip[:64],
            "user_agent": trimmed_user_agent(user_agent),
            "surface": surface,
            "ok": ok,
            "detail": detail[:200],
        }
        await self.db.signins.insert_one(doc)
        return doc

    async def recent(self, user_id: int, limit: int = 50) -> tuple[list[Document], int]:
        """A user's newest attempts (at most `limit`) and how many are kept."""
        query: Document = {"user_id": user_id}
        total = await self.db.signins.count_documents(query)
        cursor = self.db.signins.find(query).sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor], total
