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
from backoffice.search import KIND_AREAS, KIND_LABELS, KindQuery, Lookups, page_of, plan, search_text
from persistence.mongo import Document

PAGE_SIZE: Final = 20
PREVIEW_SIZE: Final = 5  # rows per group on the all-kinds page
LOOKUP_MAX: Final = 50  # users found by one phone number, payments by one trade number
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

    async def group(self, kind: str, query: KindQuery, skip: int, limit: int) -> tuple[list[Document], int]:
        """A page of one kind's hits, exact hits first (marked `exact`), and how many there are."""
        name, projection = COLLECTIONS[kind]
        collection = self.ctx.db[name]
        exact: list[Document] = []
        if query.exact is not None:
            cursor = collection.find(query.exact, projection).sort("_id", -1).limit(PAGE_SIZE)
            exact = [{**doc, "exact": True} async for doc in cursor]
        rest_filter: Document = query.broad
        if exact:
            rest_filter = {"$and": [query.broad, {"_id": {"$nin": [doc["_id"] for doc in exact]}}]}
        rest_total = await collection.count_documents(rest_filter)
        exact_part, rest_skip, rest_limit = page_of(len(exact), skip, limit)
        rows = exact[exact_part]
        if rest_limit > 0 and rest_total > rest_skip:
            cursor = (
                collection.find(rest_filter, projection).sort("_id", -1).skip(rest_skip).limit(rest_limit)
            )
            rows += [doc async for doc in cursor]
        return rows, len(exact) + rest_total

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
                if chosen:
                    paging = Paging(self.query_int("page", 1), PAGE_SIZE, 0)
                    rows, total = await self.group(kind, plans[kind], paging.skip, PAGE_SIZE)
                    paging = Paging(paging.page, PAGE_SIZE, total)
                else:
                    rows, total = await self.group(kind, plans[kind], 0, PREVIEW_SIZE)
                    paging = Paging(1, PAGE_SIZE, total)
                groups.append({"kind": kind, "label": KIND_LABELS[kind], "rows": rows, "paging": paging})
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
