"""The admin audit log: who did what, to what, when, from where, with the state before and after.

One document per admin action in the `audit` collection: `{at, admin_user_id, admin_username,
action, target, before, after, ip, reason, surface}`. `action` is a dotted name ("lot.update",
"user.credit", "auth.login"...), `target` names the object ("lot:12", "session:3", "order:7").
`before`/`after` hold the relevant fields, made storable (no password hashes, tokens, or values
MongoDB cannot hold); `reason` is the admin's reason (older entries kept it in `after.reason`).
Entries are only ever inserted.
"""

import datetime
import re
from collections.abc import Mapping
from typing import Any

from pymongo import DESCENDING, IndexModel

from persistence.mongo import Database, Document, utc_now

# Never copied into an entry, wherever they appear.
SECRET_KEYS = frozenset({"password", "password_hash", "token", "_xsrf", "secret"})
MAX_TEXT = 2000
MAX_ITEMS = 100
MAX_DEPTH = 6
ACTION_PATTERN = re.compile(r"[a-z_]+(?:\.[a-z_]+)*")
FILTER_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _indexes() -> list[IndexModel]:
    return [
        IndexModel([("at", DESCENDING), ("_id", DESCENDING)], name="at"),
        IndexModel([("action", DESCENDING), ("at", DESCENDING)], name="action_at"),
        IndexModel([("target", DESCENDING), ("at", DESCENDING)], name="target_at"),
        IndexModel([("admin_username", DESCENDING), ("at", DESCENDING)], name="admin_at"),
    ]


def storable(value: Any, depth: int = 0) -> Any:
    """A copy of `value` MongoDB can store and an auditor can read: secrets dropped, sizes bounded."""
    if depth > MAX_DEPTH:
        return "…"
    if value is None or isinstance(value, bool | int | float | datetime.datetime):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            return str(value)
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {
            str(key): storable(item, depth + 1)
            for key, item in list(value.items())[:MAX_ITEMS]
            if str(key) not in SECRET_KEYS
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [storable(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
    return str(value)[:MAX_TEXT]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._indexed = False

    async def ensure_indexes(self) -> None:
        if not self._indexed:
            await self.db.audit.create_indexes(_indexes())
            self._indexed = True

    async def record(
        self,
        *,
        action: str,
        target: str,
        admin_user_id: int | None,
        admin_username: str,
        before: Any = None,
        after: Any = None,
        ip: str = "",
        reason: str = "",
        surface: str = "",
    ) -> Document:
        """Insert one entry and return it."""
        if not ACTION_PATTERN.fullmatch(action):
            raise ValueError(f"bad audit action name {action!r}")
        await self.ensure_indexes()
        entry: Document = {
            "at": utc_now(),
            "admin_user_id": admin_user_id,
            "admin_username": admin_username[:64],
            "action": action,
            "target": target[:128],
            "before": storable(before),
            "after": storable(after),
            "ip": ip[:64],
            "reason": reason[:500],
            "surface": surface[:8],
        }
        result = await self.db.audit.insert_one(entry)
        entry["_id"] = result.inserted_id
        return entry

    async def page(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        admin_username: str | None = None,
        since: datetime.datetime | None = None,
        before: datetime.datetime | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[Document], int]:
        """Newest first. `action` matches a name or a prefix ("lot" finds "lot.update");
        `target` matches exactly or by type ("lot" finds "lot:12"); `admin_username` exactly (the
        name as the entry stored it); `since` ≤ at < `before`. Every value is matched as a literal
        (regexes only of escaped text, anchored: MongoDB serves them from the indexes; SecantusDB
        scans, and its range queries on these descending indexes find nothing, so no ranges here)."""
        query: Document = {}
        if action:
            query["action"] = {"$regex": f"^{re.escape(action)}(\\.|$)"}
        if target:
            query["target"] = target if ":" in target else {"$regex": f"^{re.escape(target)}:"}
        if admin_username:
            query["admin_username"] = admin_username
        if since is not None or before is not None:
            window: Document = {}
            if since is not None:
                window["$gte"] = since
            if before is not None:
                window["$lt"] = before
            query["at"] = window
        total = await self.db.audit.count_documents(query)
        cursor = self.db.audit.find(query).sort([("at", DESCENDING), ("_id", DESCENDING)])
        return [doc async for doc in cursor.skip(skip).limit(limit)], total

    async def actions(self) -> list[str]:
        """Every action name used so far (for the filter's choices)."""
        return sorted(str(name) for name in await self.db.audit.distinct("action"))
