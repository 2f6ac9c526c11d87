"""The audit log page: every admin write, newest first, filtered (issue 24 makes it readable)."""

from __future__ import annotations

from admin.base import AdminHandler, Paging
from persistence.audit import FILTER_PATTERN

AUDIT_PAGE_SIZE = 50


class AuditHandler(AdminHandler):
    area = "audit"
    nav = "audit"

    async def get(self) -> None:
        action = self.get_query_argument("action", "").strip()
        target = self.get_query_argument("target", "").strip()
        action = action if FILTER_PATTERN.fullmatch(action or "-") and action else ""
        target = target if FILTER_PATTERN.fullmatch(target or "-") and target else ""
        page = self.query_int("page", 1)
        entries, total = await self.services.audit.page(
            action=action or None,
            target=target or None,
            skip=(page - 1) * AUDIT_PAGE_SIZE,
            limit=AUDIT_PAGE_SIZE,
        )
        self.render(
            "audit.html",
            entries=entries,
            actions=await self.services.audit.actions(),
            action=action,
            target=target,
            paging=Paging(page, AUDIT_PAGE_SIZE, total),
            page_title="Audit log",
        )


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/audit", AuditHandler),
]
