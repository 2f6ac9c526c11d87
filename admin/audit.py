"""The audit log page: every admin write, newest first, filtered by who, what, which object and when,
each entry with its reason and a readable before/after diff (backoffice/audit_diff.py)."""

from __future__ import annotations

import datetime
import re
import urllib.parse
from typing import Any, Final
from zoneinfo import ZoneInfo

from admin.base import AdminHandler, FormError, Paging, parse_day
from backoffice.audit_diff import diff, reason_of
from backoffice.timezone import date_start
from persistence.audit import FILTER_PATTERN
from persistence.mongo import Document

AUDIT_PAGE_SIZE: Final = 50
USERNAME_FILTER: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Where an entry's target ("kind:id") has a page of its own; other kinds are shown as text.
TARGET_PAGES: Final = {
    "lot": "/admin/lots/{id}",
    "session": "/admin/sessions/{id}",
    "user": "/admin/users/{id}",
    "article": "/admin/articles/{id}",
    "degree_course": "/admin/degrees/{id}",
    "order": "/admin/search?kind=auction_orders&q={id}",
    "shop_order": "/admin/search?kind=shop_orders&q={id}",
    "course": "/admin/search?kind=courses&q={id}",
}
_TARGET = re.compile(r"([a-z_]+):([0-9A-Za-z_.-]{1,40})")


def target_url(target: str) -> str | None:
    """The admin page of an audit target ("lot:12" -> "/admin/lots/12"), None when it has none."""
    match = _TARGET.fullmatch(target)
    if match is None or match.group(1) not in TARGET_PAGES:
        return None
    return TARGET_PAGES[match.group(1)].format(id=urllib.parse.quote(match.group(2), safe=""))


def readable(entry: Document, zone: ZoneInfo) -> Document:
    """An entry as the page shows it: the stored fields plus its reason, diff (times in the business
    zone) and target link."""
    return {
        **entry,
        "reason_text": reason_of(entry),
        "changes": diff(entry.get("before"), entry.get("after"), zone),
        "target_url": target_url(str(entry.get("target", ""))),
    }


class AuditHandler(AdminHandler):
    area = "audit"
    nav = "audit"

    def _filter(self, name: str, pattern: re.Pattern[str]) -> str:
        """A filter as typed, when it is one we can match literally; anything else is ignored."""
        value = (self.get_query_argument(name, "") or "").strip()
        return value if pattern.fullmatch(value) else ""

    async def get(self) -> None:
        action = self._filter("action", FILTER_PATTERN)
        target = self._filter("target", FILTER_PATTERN)
        username = self._filter("user", USERNAME_FILTER)
        raw_from = (self.get_query_argument("from", "") or "")[:10]
        raw_to = (self.get_query_argument("to", "") or "")[:10]
        error = None
        since = until = None
        try:
            first_day = parse_day(raw_from, "From")
            last_day = parse_day(raw_to, "To")
            if first_day is not None:
                since = date_start(first_day, self.zone)
            if last_day is not None:  # "to" names a whole business day: up to the next midnight
                until = date_start(last_day + datetime.timedelta(days=1), self.zone)
        except FormError as problem:
            error = problem.message
            self.set_status(400)
        page = self.query_int("page", 1)
        entries: list[Document] = []
        total = 0
        if error is None:
            found, total = await self.services.audit.page(
                action=action or None,
                target=target or None,
                admin_username=username or None,
                since=since,
                before=until,
                skip=(page - 1) * AUDIT_PAGE_SIZE,
                limit=AUDIT_PAGE_SIZE,
            )
            entries = [readable(entry, self.zone) for entry in found]
        filters: dict[str, Any] = {
            "action": action,
            "target": target,
            "user": username,
            "from": raw_from,
            "to": raw_to,
        }
        self.render(
            "audit.html",
            entries=entries,
            actions=await self.services.audit.actions(),
            filters=filters,
            error=error,
            paging=Paging(page, AUDIT_PAGE_SIZE, total),
            paging_query=urllib.parse.urlencode({k: v for k, v in filters.items() if v}) + "&",
            page_title="Audit log",
        )


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/audit", AuditHandler),
]
