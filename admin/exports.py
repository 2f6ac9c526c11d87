"""Streamed CSV exports (orders, payments, refunds, ledgers, bids, enrolments) (issue 24).

`GET /admin/exports/{kind}.csv?<filters>` iterates a MongoDB cursor sorted by a stable key (`_id`,
which every collection has an index on) in batches of `CHUNK_ROWS`, writes each batch's rows and
flushes them to the socket before reading on: the server holds one batch, never the whole export
(tests/admin/test_export_stream.py measures it). Columns, filters and cells are
backoffice/exports.py's. Each export needs read access to `exports` and to its data's area, and is
recorded in the audit log (`export.<kind>`, filters, rows) after its last row.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
from collections.abc import AsyncGenerator
from typing import Any
from zoneinfo import ZoneInfo

import pymongo
import tornado.iostream
import tornado.web

from admin.base import AdminHandler
from backoffice import exports as ex
from backoffice.timezone import business_zone
from persistence.mongo import Document

CHUNK_ROWS = 500  # rows read, written and flushed at a time (the memory an export holds)
NAME_CACHE = 10_000  # usernames an export remembers (~1 MB at most, whatever the row count)
EXPORT_READ_SECONDS = 120.0
BUCKETS_PER_READ = 8  # a bid bucket holds a chunk of a lot's bids (persistence/archive.py)
NAME_LOOKUP = 50  # ids per `$in` (a long `$in` costs the embedded MongoDB far more per id)
RECENT_SESSIONS = 50
RECENT_EXPORTS = 10


def zone_of(handler: AdminHandler) -> ZoneInfo:
    return business_zone(handler.ctx.business_tz)


class ExportsPage(AdminHandler):
    """The exports page: one form per kind the admin may take, with that kind's filters."""

    nav = "exports"
    area = "exports"

    async def get(self) -> None:
        kinds = [kind for kind in ex.KINDS.values() if self.may(kind.area)]
        sessions = [
            doc
            async for doc in self.ctx.db.sessions.find({}, {"title": 1})
            .sort("_id", -1)
            .limit(RECENT_SESSIONS)
        ]
        recent: list[Document] = []
        if self.may("audit"):  # who took what lately (the audit page has them all)
            recent = [
                doc
                async for doc in self.ctx.db.audit.find({"action": {"$regex": "^export\\."}})
                .sort("at", -1)
                .limit(RECENT_EXPORTS)
            ]
        self.render(
            "exports.html",
            kinds=kinds,
            sessions=sessions,
            recent=recent,
            zone=self.ctx.business_tz,
            page_title="Exports",
        )


class ExportHandler(AdminHandler):
    """One CSV export, streamed."""

    nav = "exports"
    area = "exports"
    name_cache: collections.OrderedDict[int, str]

    async def get(self, name: str) -> None:
        self.name_cache = collections.OrderedDict()
        kind = ex.KINDS.get(name)
        if kind is None:
            raise tornado.web.HTTPError(404, f"no export {name[:40]}")
        if not self.may(kind.area):
            raise tornado.web.HTTPError(403, f"the {kind.name} export needs access to {kind.area}")
        zone = zone_of(self)
        query = {arg: self.get_query_argument(arg, "") or "" for arg in kind.filters}
        try:
            filters = ex.parse_filters(kind, query, zone)
        except ex.BadFilter as error:
            raise tornado.web.HTTPError(400, str(error)) from None
        if kind.name == "bids" and not await self.session_exists(filters.session_id):
            raise tornado.web.HTTPError(404, f"no session {filters.session_id}")
        actor = self.actor()
        await self.actions.export_allowed(actor, kind.name)
        now = datetime.datetime.now(datetime.UTC)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{ex.file_name(kind.name, now, zone)}"')
        self.write(ex.BOM + ex.csv_lines([kind.columns]))
        rows, complete = 0, False
        try:
            # closed at once when the browser goes away, so the cursors go with it
            async with contextlib.aclosing(self.batches(kind, filters, zone)) as stream:
                async for batch in stream:
                    self.write(ex.csv_lines(batch))
                    rows += len(batch)
                    await self.flush()
            complete = True
        except tornado.iostream.StreamClosedError:
            pass  # the browser went away: the audit entry says how far it got
        finally:
            await self.actions.export_done(actor, kind.name, filters.typed, rows, complete=complete)
        if complete:
            self.finish()

    async def session_exists(self, session_id: int | None) -> bool:
        if session_id is None:
            return False
        return await self.ctx.db.sessions.find_one({"_id": session_id}, {"_id": 1}) is not None

    # -- the rows of each kind ---------------------------------------------------------------------------
    def batches(
        self, kind: ex.ExportKind, filters: ex.Filters, zone: ZoneInfo
    ) -> AsyncGenerator[list[ex.Cells]]:
        db = self.ctx.db
        if kind.name == "orders":
            query: Document = _with_range({}, "created_at", filters)
            if filters.status:
                query["status"] = int(filters.status)
            if filters.session_id is not None:
                query["session_id"] = filters.session_id
            return self.documents(db.orders, query, ex.order_row, zone)
        if kind.name == "payments":
            return self.payments(filters, zone)
        if kind.name == "refunds":
            return self.refunds(filters, zone)
        if kind.name == "ledgers":
            query = _with_range({}, "at", filters)
            if filters.user_id is not None:
                query["user_id"] = filters.user_id
            if filters.entry_kind:
                query["kind"] = filters.entry_kind
            return self.documents(db.ledger, query, ex.ledger_row, zone)
        if kind.name == "bids":
            return self.bids(filters, zone)
        return self.enrolments(filters, zone)

    async def documents(
        self, collection: Any, query: Document, make: ex.RowMaker, zone: ZoneInfo
    ) -> AsyncGenerator[list[ex.Cells]]:
        """The rows of `query`'s documents in `_id` order, a batch at a time."""
        async for docs in read_batches(collection.find(query).sort("_id", 1), CHUNK_ROWS):
            yield await self.rows(docs, make, zone)

    async def rows(self, docs: list[Document], make: ex.RowMaker, zone: ZoneInfo) -> list[ex.Cells]:
        names = await self.usernames({int(d["user_id"]) for d in docs if d.get("user_id") is not None})
        return [make(doc, names.get(int(doc.get("user_id") or 0), ""), zone) for doc in docs]

    async def usernames(self, user_ids: set[int]) -> dict[int, str]:
        """The usernames of a batch's users: from this export's bounded cache (the same few thousand
        users recur across a ledger), the rest looked up `NAME_LOOKUP` ids per query."""
        cache = self.name_cache
        missing = sorted(user_id for user_id in user_ids if user_id not in cache)
        for start in range(0, len(missing), NAME_LOOKUP):
            ids = missing[start : start + NAME_LOOKUP]
            found = {
                int(u["_id"]): str(u.get("username", ""))
                async for u in self.ctx.db.users.find({"_id": {"$in": ids}}, {"username": 1})
            }
            for user_id in ids:
                cache[user_id] = found.get(user_id, "")
        names = {user_id: cache[user_id] for user_id in user_ids}
        for user_id in user_ids:
            cache.move_to_end(user_id)
        while len(cache) > NAME_CACHE:
            cache.popitem(last=False)
        return names

    async def payments(self, filters: ex.Filters, zone: ZoneInfo) -> AsyncGenerator[list[ex.Cells]]:
        """Provider payments (`payments`: deposits, auction orders, shop orders; by trade number),
        then what was paid from balances: auction orders' cash part, shop orders' balance part."""
        db = self.ctx.db
        if filters.provider != ex.BALANCE:
            query = _with_range({}, "created_at", filters)
            if filters.status:
                query["status"] = "closed" if filters.status == "failed" else filters.status
            if filters.entry_kind:
                # `_id` is the trade number; its prefix says what it paid for (a ranged, indexed scan)
                prefix = ex.PAYMENT_PREFIXES[filters.entry_kind]
                query["_id"] = {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}
            if filters.provider:
                query["provider"] = filters.provider
            async for batch in self.documents(db.payments, query, ex.payment_row, zone):
                yield batch
        if filters.provider not in ("", ex.BALANCE) or filters.status not in ("", "paid"):
            return  # a balance payment is paid at once, through no provider
        if filters.entry_kind in ("", "auction_order"):
            query = _with_range(
                {"payment.cash_source": ex.BALANCE, "payment.cash_amount": {"$gt": 0}},
                "paid_at_ms",
                filters,
                as_ms=True,
            )
            async for batch in self.documents(db.orders, query, ex.balance_order_payment_row, zone):
                yield batch
        if filters.entry_kind in ("", "shop_order"):
            query = _with_range({"balance_used": {"$gt": 0}, "paid_at": {"$ne": None}}, "paid_at", filters)
            async for batch in self.documents(db.shop_orders, query, ex.balance_shop_payment_row, zone):
                yield batch

    async def refunds(self, filters: ex.Filters, zone: ZoneInfo) -> AsyncGenerator[list[ex.Cells]]:
        """Deposit refunds (`refunds`), then shop refunds (`shop_orders` with a refund), each by `_id`."""
        if filters.entry_kind in ("", "deposit") and filters.status != "rejected":
            query = _with_range({}, "created_at_ms", filters, as_ms=True)
            if filters.status:
                query["status"] = filters.status
            async for batch in self.documents(self.ctx.db.refunds, query, ex.deposit_refund_row, zone):
                yield batch
        if filters.entry_kind in ("", "shop"):
            query = _with_range({"refund": {"$ne": None}}, "refund.requested_at", filters)
            if filters.status:
                query["refund.status"] = {"$in": ex.SHOP_REFUND_STATUSES[filters.status]}
            async for batch in self.documents(self.ctx.db.shop_orders, query, ex.shop_refund_row, zone):
                yield batch

    async def enrolments(self, filters: ex.Filters, zone: ZoneInfo) -> AsyncGenerator[list[ex.Cells]]:
        """Course enrolments (`shop_enrolments`), then degree enrolments, each by `_id`."""
        db = self.ctx.db
        for kind, collection, course_field in (
            ("course", db.shop_enrolments, "course_id"),
            ("degree", db.shop_degree_enrolments, "degree_course_id"),
        ):
            if filters.entry_kind not in ("", kind):
                continue
            query = _with_range({}, "created_at", filters)
            if filters.status:
                query["status"] = filters.status
            if filters.course_id is not None:
                query[course_field] = filters.course_id
            async for batch in self.documents(collection, query, ex.enrolment_row, zone):
                yield batch

    async def bids(self, filters: ex.Filters, zone: ZoneInfo) -> AsyncGenerator[list[ex.Cells]]:
        """A session's bids lot by lot (lot id order), each lot's in the order the engine took them:
        legacy per-bid documents first (they predate the buckets), then the buckets by first seq."""
        db = self.ctx.db
        session_id = filters.session_id
        assert session_id is not None  # a required filter, checked before the first row (get)
        lots = [
            (int(doc["_id"]), str(doc.get("catalogue_no", "")))
            async for doc in db.lots.find({"session_id": session_id}, {"catalogue_no": 1}).sort("_id", 1)
        ]
        at = _with_range({}, "at", filters, as_ms=True).get("at")
        pending: list[ex.BidCells] = []
        for lot_id, catalogue_no in lots:
            legacy = db.bids.find({"lot_id": lot_id}).sort("seq", 1)
            async for docs in read_batches(legacy, CHUNK_ROWS):
                pending.extend(ex.legacy_bid(doc, catalogue_no) for doc in docs)
                if len(pending) >= CHUNK_ROWS:
                    yield await self.bid_rows(pending, at, zone)
                    pending = []
            buckets = db.bid_buckets.find({"lot_id": lot_id}).sort("first_seq", 1)
            async for docs in read_batches(buckets, BUCKETS_PER_READ):
                for doc in docs:
                    pending.extend(ex.bucket_bids(doc, catalogue_no))
                if len(pending) >= CHUNK_ROWS:
                    yield await self.bid_rows(pending, at, zone)
                    pending = []
        if pending:
            yield await self.bid_rows(pending, at, zone)

    async def bid_rows(
        self, bids: list[ex.BidCells], at: dict[str, int] | None, zone: ZoneInfo
    ) -> list[ex.Cells]:
        if at is not None:
            bids = [
                b for b in bids if b.at_ms >= at.get("$gte", b.at_ms) and b.at_ms < at.get("$lt", b.at_ms + 1)
            ]
        names = await self.usernames({b.user_id for b in bids})
        return [
            ex.bid_row(b, names.get(b.user_id, ""), self.ctx.pseudonym(b.session_id, b.user_id), zone)
            for b in bids
        ]


async def read_batches(cursor: Any, size: int) -> AsyncGenerator[list[Document]]:
    """A cursor's documents `size` at a time. Each read may take up to `EXPORT_READ_SECONDS` rather
    than the request path's short bound (DEPENDENCY_TIMEOUT): a filter on an unindexed field may
    scan far before it fills a batch. The bound is set around each read only, never across a
    `yield` (it is a context variable, and the caller runs between batches)."""
    cursor.batch_size(size)  # the driver's buffer holds one batch, not MongoDB's default 16 MB
    try:
        while True:
            with pymongo.timeout(EXPORT_READ_SECONDS):
                docs: list[Document] = await cursor.to_list(size)
            if not docs:
                return
            yield docs
    finally:
        await cursor.close()


def _with_range(query: Document, field: str, filters: ex.Filters, *, as_ms: bool = False) -> Document:
    condition = ex.time_range(filters, as_ms=as_ms)
    if condition is not None:
        query[field] = condition
    return query


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/exports", ExportsPage),
    # the kinds by name (an unknown one is the admin's 404 page)
    (r"/admin/exports/(" + "|".join(ex.KINDS) + r")\.csv", ExportHandler),
]
