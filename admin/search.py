"""One search box across users, orders, lots, sessions and courses (`/admin/search?q=`).

The filters are `backoffice/search.py`'s (pure); here they are run. The results page groups the hits
by kind with each group's count and its first few rows; `&kind=users` lists one kind, 20 rows a
page (`&page=2`). Exact hits (an id, an order or trade number, a phone, a username) come first in
each group. Only the kinds the signed-in admin may read are searched.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

from admin.base import AdminHandler, Paging
from admin.money import ORDER_STATUS_LABELS
from backoffice.search import KIND_AREAS, KIND_LABELS, KindQuery, Lookups, ordered_hits, plan, search_text
from persistence.mongo import Document

PAGE_SIZE: Final = 20
PREVIEW_SIZE: Final = 5  # rows per group on the all-kinds page
LOOKUP_MAX: Final = 50  # users found by one phone number, payments by one trade number
HITS_MAX: Final = 200  # hits counted per filter; more shows as "200+" (type more to narrow it)
# Each kind: its collection, what its rows show (projection), and its order after the exact hits.
COLLECTIONS: Final = {
    "users": ("users", {"username": 1, "display_name": 1, "is_admin": 1, "non_payer": 1, "created_at": 1}),
    "auction_orders": ("orders", {"user_id": 1, "lot_id": 1, "session_id": 1, "price": 1, "status": 1}),
    "shop_orders": (
        "shop_orders",
        {"user_id": 1, "status": 1, "payable": 1, "lines.course_name": 1, "created_at": 1},
    ),
    "lots": ("lots", {"session_id": 1, "catalogue_no": 1, "title": 1}),
    "sessions": ("sessions", {"title": 1, "bidding_start": 1, "bidding_end": 1}),
    "courses": ("shop_courses", {"name": 1, "status": 1, "price": 1}),
}


class SearchHandler(AdminHandler):
    nav = "search"
    area = "dashboard"

    async def lookups(self, text: str) -> Lookups:
        """Users with the typed phone on a shipping address; our payment numbers of a typed provider
        trade number. Exact matches on indexed fields (persistence/mongo.py)."""
        db = self.ctx.db
        phones = db.addresses.find({"phone": text}, {"user_id": 1}).limit(LOOKUP_MAX)
        payments = db.payments.find({"trade_no": text}, {"_id": 1}).limit(LOOKUP_MAX)
        return Lookups(
            phone_user_ids=sorted({int(a["user_id"]) async for a in phones if a.get("user_id") is not None}),
            out_trade_nos=[str(p["_id"]) async for p in payments],
        )

    async def group(
        self, kind: str, query: KindQuery, skip: int, limit: int
    ) -> tuple[list[Document], int, bool]:
        """A page of one kind's hits, exact hits first (marked `exact`), how many there are, and
        whether that count stopped at HITS_MAX (then the page says "200+")."""
        collection = self.ctx.db[COLLECTIONS[kind][0]]
        capped = False

        async def ids(filters: tuple[Document, ...]) -> set[Any]:
            nonlocal capped
            found: set[Any] = set()
            for one in filters:
                cursor = collection.find(one, {"_id": 1}).limit(HITS_MAX + 1)
                batch = [doc["_id"] async for doc in cursor]
                capped = capped or len(batch) > HITS_MAX
                found.update(batch[:HITS_MAX])
            return found

        exact = await ids(query.exact)
        hits = ordered_hits(exact, await ids(query.broad))
        shown = hits[skip : skip + limit]
        docs = {
            doc["_id"]: doc async for doc in collection.find({"_id": {"$in": shown}}, COLLECTIONS[kind][1])
        }
        rows = [{**docs[hit], "exact": hit in exact} for hit in shown if hit in docs]
        return rows, len(hits), capped

    async def get(self) -> None:
        text = search_text(self.get_query_argument("q", "") or "")
        kinds = [kind for kind in KIND_AREAS if self.may(KIND_AREAS[kind])]
        chosen = self.get_query_argument("kind", "") or ""
        chosen = chosen if chosen in kinds else ""
        groups: list[dict[str, Any]] = []
        if text:
            plans = plan(text, await self.lookups(text))
            for kind in [chosen] if chosen else kinds:
                if kind not in plans:
                    continue
                page = self.query_int("page", 1) if chosen else 1
                skip, limit = ((page - 1) * PAGE_SIZE, PAGE_SIZE) if chosen else (0, PREVIEW_SIZE)
                rows, total, capped = await self.group(kind, plans[kind], skip, limit)
                groups.append(
                    {
                        "kind": kind,
                        "label": KIND_LABELS[kind],
                        "rows": rows,
                        "paging": Paging(page, PAGE_SIZE, total),
                        "capped": capped,
                    }
                )
            await self.add_names(groups)
        self.render(
            "search.html",
            query=text,
            chosen=chosen,
            groups=groups,
            kind_labels={kind: KIND_LABELS[kind] for kind in kinds},
            order_labels=ORDER_STATUS_LABELS,
            preview_size=PREVIEW_SIZE,
            paging_query=urllib.parse.urlencode({"q": text, "kind": chosen}) + "&",
            page_title=f"Search: {text}" if text else "Search",
        )

    async def add_names(self, groups: list[dict[str, Any]]) -> None:
        """The username of each order's buyer (one query for every group)."""
        user_ids = {
            int(row["user_id"])
            for group in groups
            if group["kind"] in ("auction_orders", "shop_orders")
            for row in group["rows"]
            if row.get("user_id") is not None
        }
        if not user_ids:
            return
        names = {
            int(u["_id"]): str(u["username"])
            async for u in self.ctx.db.users.find({"_id": {"$in": sorted(user_ids)}}, {"username": 1})
        }
        for group in groups:
            for row in group["rows"]:
                if row.get("user_id") is not None:
                    row["username"] = names.get(int(row["user_id"]), "?")


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/search", SearchHandler),
]
