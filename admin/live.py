"""The live monitor per session and per lot, and the controls that act through the engine (issue 24).

Reads come from the engine's book (live state, bids), the `deposits` collection (what is held),
the websocket hub (who watches) and the audit log (what staff did to a lot). Every control is a
confirmation page (what will happen, in numbers: admin/live_plans.py) whose form POSTs to the same
URL; the POST calls one `AdminActions` method (authorized for `auctions` write, audited with the
reason), flashes the outcome and goes back to the monitor. Works without JavaScript.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import tornado.web

from admin.base import PREFIX, AdminHandler, AdminJsonHandler, FormError, money, text_field
from admin.catalog import LOT_STATE_LABELS, SESSION_STATE_LABELS, session_state
from admin.live_plans import (
    Plan,
    block_plan,
    extend_lot_plan,
    pause_lot_plan,
    pause_session_plan,
    replay_without,
    resume_lot_plan,
    resume_session_plan,
    unblock_plan,
    void_bid_plan,
    withdraw_lot_plan,
)
from backoffice.actions import Actor, lot_state
from backoffice.ports import Document
from backoffice.timezone import format_local, input_value, parse_local
from backoffice.viewers import ViewerCount, viewer_of
from backoffice.viewers import count as count_viewers
from engine.book.controls import legal_lot_controls, legal_session_controls
from engine.book.errors import GavelError, NotFound
from engine.book.lot import BidInput, Lot
from engine.book.states import LotState
from persistence.archive import archived_bids, bidders_of_lot
from persistence.catalog import admin_lot_view, admin_session_view
from persistence.mongo import Database, to_ms
from persistence.viewers import ViewerStore, wall_ms
from web.context import AppContext

log = logging.getLogger("gavel.admin.live")

AREA = "auctions"
REASON_MAX = 500
HISTORY_LIMIT = 2_000  # bid lines a lot page shows (newest kept); the chart gets them all
SOLD_STATES = (int(LotState.SOLD), int(LotState.OVERDUE))


# -- reading ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Held:
    """Paid deposits (what is held now): how many, how much, whose."""

    count: int = 0
    total: int = 0
    users: set[int] = dataclasses.field(default_factory=set)

    def add(self, doc: Document) -> None:
        self.count += 1
        self.total += int(doc["amount"])
        self.users.add(int(doc["user_id"]))

    def as_json(self) -> Document:
        return {"count": self.count, "total": self.total, "users": len(self.users)}


async def held_deposits(db: Database, session_id: int) -> list[Document]:
    """The session's deposits that are paid and not yet refunded or deducted (oldest first)."""
    cursor = db.deposits.find({"session_id": session_id, "status": "paid"}).sort("_id", 1)
    return [doc async for doc in cursor]


def held_by_lot(deposits: Iterable[Document]) -> tuple[dict[int, Held], Held, Held]:
    """(per lot, whole-session deposits, everything) of the paid deposits."""
    per_lot: dict[int, Held] = {}
    session_wide, everything = Held(), Held()
    for doc in deposits:
        everything.add(doc)
        if doc.get("lot_id") is None:
            session_wide.add(doc)
        else:
            per_lot.setdefault(int(doc["lot_id"]), Held()).add(doc)
    return per_lot, session_wide, everything


async def usernames(db: Database, user_ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({int(u) for u in user_ids if u})
    if not wanted:
        return {}
    found = db.users.find({"_id": {"$in": wanted}}, {"username": 1})
    return {int(u["_id"]): str(u.get("username", "")) async for u in found}


async def watchers(ctx: AppContext, session_id: int) -> Document:
    """The session's distinct viewers now (backoffice/viewers.py: a signed-in user once, an
    anonymous socket each), across every gateway when they share their viewers through Redis
    (gateway/viewers_live.py), else, or when Redis does not answer, this process's; `sockets`: this
    process's sockets subscribed to it. A viewer who connected here since this gateway's last
    refresh is not in Redis yet: the larger of the two counts is shown."""
    hub = ctx.hub
    sockets = list(hub.by_session.get(session_id, ())) if hub is not None else []
    local = count_viewers(viewer_of(s.user_id, "", id(s)) for s in sockets)
    store = getattr(hub, "viewer_store", None)
    if isinstance(store, ViewerStore):
        try:
            shared = await store.count(session_id, wall_ms())
            local = ViewerCount(max(local.viewers, shared.viewers), max(local.users, shared.users))
        except Exception as error:  # Redis away: this process's viewers
            log.debug("viewers of session %s counted here only: %s", session_id, error)
    return local.as_json(len(sockets))


def bidders_of(lot: Lot) -> set[int]:
    return {line[0] for line in lot.bids.lines()}


async def lot_bidders(ctx: AppContext, lot: Lot) -> set[int]:
    """Everyone who bid on the lot: from the engine, or the archive once the lot is compacted."""
    if lot.compacted:
        return await bidders_of_lot(ctx.db, int(lot.lot_id))
    return bidders_of(lot)


async def bid_lines(ctx: AppContext, lot: Lot) -> list[tuple[int, int, int, bool]]:
    """The lot's price lines (bidder, price, at, auto), oldest first: from the engine, or the
    archive once the lot is compacted (engine/compaction.py)."""
    if lot.compacted:
        return [
            (bid.bidder, bid.price, bid.at, bid.auto) for bid in await archived_bids(ctx.db, int(lot.lot_id))
        ]
    return lot.bids.lines()


def lot_inputs(lot: Lot) -> list[BidInput] | None:
    """The accepted bid inputs the engine keeps for replay; None for a lot restored from a snapshot
    older than them (its history is the price lines, and its bids cannot be voided)."""
    return lot.inputs() if lot.replayable else None


def live_view(lot: Lot) -> Document:
    """What the monitor shows of a live lot (integers; times in epoch ms)."""
    paused_since = int(lot.paused_since)
    bidding_end = int(lot.session.bidding_end)
    view: Document = {
        **lot_state(lot),
        "paused_since": paused_since,
        "reserve": lot.reserve,
        "reserve_met": bool(lot.bid_count) and lot.price >= lot.reserve,
        # soft-close and admin extensions so far, and how far they moved the end past the session's
        "extensions": int(lot.extensions),
        "moved_ms": max(0, int(lot.ends_at) - bidding_end) if lot.ends_at else 0,
        "bidders": len(bidders_of(lot)),
    }
    return view


def who(user_id: int, names: Mapping[int, str]) -> str:
    return f"{names.get(user_id) or 'user'} #{user_id}" if user_id else "—"


class LivePage(AdminHandler):
    """What every live page shares: the zone, the engine's lot, the writers' controls."""

    nav = "sessions"
    area = AREA

    def zone_name(self) -> str:
        return self.zone.key

    def local(self, value: Any, *, seconds: bool = True) -> str:
        return format_local(value, self.zone, seconds=seconds)

    def now(self) -> int:
        return self.ctx.engine.clock.now_ms()

    def engine_lot(self, lot_id: int) -> Lot:
        lot = self.ctx.engine.book.lots.get(lot_id)
        if lot is None:
            raise tornado.web.HTTPError(404, f"lot {lot_id} is not live in the engine")
        return lot

    def writer(self) -> bool:
        return self.may(AREA, write=True)

    def reason(self) -> str:
        return text_field(self.form("reason"), "Reason", max_length=REASON_MAX, multiline=True)

    def render_live(self, template: str, **values: Any) -> None:
        self.render(
            template,
            local=self.local,
            can_write=self.writer(),
            lot_states=LOT_STATE_LABELS,
            session_states=SESSION_STATE_LABELS,
            **values,
        )


async def session_rows(ctx: AppContext, session_id: int) -> tuple[list[Document], Document]:
    """The session's lots in catalogue order with their live view, and the session's totals."""
    live_session = ctx.engine.book.sessions.get(session_id)
    order = {lot_id: i for i, lot_id in enumerate(live_session.lot_ids)} if live_session is not None else {}
    docs = [lot async for lot in ctx.db.lots.find({"session_id": session_id})]
    docs.sort(key=lambda lot: (order.get(int(lot["_id"]), 1 << 60), int(lot["_id"])))
    per_lot, session_wide, everything = held_by_lot(await held_deposits(ctx.db, session_id))
    now = ctx.engine.clock.now_ms()
    leaders: list[int] = []
    all_bidders: set[int] = set()
    hammer = 0
    rows: list[Document] = []
    for doc in docs:
        lot = ctx.engine.book.lots.get(int(doc["_id"]))
        view = live_view(lot) if lot is not None else None
        if lot is not None and view is not None:
            lot_bidders_now = await lot_bidders(ctx, lot)
            view["bidders"] = len(lot_bidders_now)
            all_bidders |= lot_bidders_now
            leaders.append(lot.leader)
            if view["state"] in SOLD_STATES:
                hammer += lot.price
        held = per_lot.get(int(doc["_id"]), Held())
        rows.append(
            {
                "id": int(doc["_id"]),
                "catalogue_no": str(doc.get("catalogue_no", "")),
                "title": str(doc.get("title", "")),
                "live": view,
                "deposits": held.as_json(),
                "controls": sorted(legal_lot_controls(lot, now)) if lot is not None else [],
            }
        )
    names = await usernames(ctx.db, leaders)
    for row in rows:
        view = row["live"]
        leader = int(view["leader"]) if view else 0
        row["leader_pseudonym"] = ctx.pseudonym(session_id, leader) if leader else ""
        row["leader_user"] = {"id": leader, "username": names.get(leader, "")} if leader else None
    totals = {
        "bidders": len(all_bidders),
        "deposits": everything.as_json(),
        "session_deposits": session_wide.as_json(),
        "hammer_total": hammer,
        "lots": len(rows),
        "watchers": await watchers(ctx, session_id),
    }
    return rows, totals


def session_controls(ctx: AppContext, session_id: int) -> list[str]:
    """The session's legal controls now (the engine's rule over its lots)."""
    book = ctx.engine.book
    session = book.sessions.get(session_id)
    if session is None:
        return []
    lots = [book.lots[i] for i in session.lot_ids if i in book.lots]
    return sorted(legal_session_controls(session, lots, ctx.engine.clock.now_ms()))


# -- the session monitor -------------------------------------------------------------------------------
class MonitorHandler(LivePage):
    """One session's lots, updated live by admin/static/monitor.js over the public websocket and
    the admin JSON (real users, deposits, watchers)."""

    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        session = await self.ctx.catalog.session_document(session_id)
        rows, totals = await session_rows(self.ctx, session_id)
        state = session_state(self.ctx.engine, session_id)
        self.render_live(
            "monitor.html",
            session=session,
            state=state,
            lots=rows,
            totals=totals,
            session_controls=session_controls(self.ctx, session_id),
            page_title=f"Monitor · {session.get('title', '')}",
        )


class SessionJsonHandler(AdminJsonHandler):
    """`GET /admin/api/sessions/{id}`: the session and its lots (metadata and live state), with what
    only admins see: the real leader, deposits held, legal controls, watchers and totals."""

    area = AREA

    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        doc = await self.ctx.catalog.session_document(session_id)
        rows, totals = await session_rows(self.ctx, session_id)
        by_id = {row["id"]: row for row in rows}
        lots = []
        async for lot in self.ctx.db.lots.find({"session_id": session_id}).sort("_id", 1):
            view = admin_lot_view(lot)
            row = by_id.get(int(lot["_id"]))
            live = dict(row["live"]) if row and row["live"] else None
            if live is not None and row is not None:
                live["leader"] = row["leader_pseudonym"]
                live["leader_user"] = row["leader_user"]
                live["deposits"] = row["deposits"]
                live["controls"] = row["controls"] if self.may(AREA, write=True) else []
            view["live"] = live
            lots.append(view)
        state = session_state(self.ctx.engine, session_id)
        self.reply(
            {
                **admin_session_view(doc),
                "state": state,
                "lots": lots,
                "totals": totals,
                "controls": session_controls(self.ctx, session_id) if self.may(AREA, write=True) else [],
                "server_time": self.ctx.engine.clock.now_ms(),
            }
        )


# -- the lot monitor -----------------------------------------------------------------------------------
async def lot_detail(ctx: AppContext, lot: Lot) -> Document:
    """Everything the lot monitor shows (and its JSON sends): live view, history, deposits, bidders."""
    lot_id = int(lot.lot_id)
    session_id = int(lot.session_id)
    view = live_view(lot)
    lines = await bid_lines(ctx, lot)
    view["bidders"] = len({line[0] for line in lines})
    inputs = lot_inputs(lot)
    held_docs = [d for d in await held_deposits(ctx.db, session_id) if d.get("lot_id") in (None, lot_id)]
    user_ids = {line[0] for line in lines} | {int(d["user_id"]) for d in held_docs}
    if inputs is not None:
        user_ids |= {int(bid.bidder) for bid in inputs}
    names = await usernames(ctx.db, user_ids)
    void_reasons = await voided_reasons(ctx.db, lot_id)

    def person(user_id: int) -> Document:
        return {
            "id": user_id,
            "username": names.get(user_id, ""),
            "pseudonym": ctx.pseudonym(session_id, user_id),
        }

    points = [{"at": at, "price": price} for _bidder, price, at, _auto in lines]
    history: list[Document] = []
    if inputs is not None:  # the bids as placed (what a void acts on)
        for bid in inputs:
            history.append(
                {
                    "index": int(bid.bid_index),
                    "number": int(bid.bid_index) + 1,
                    "at": int(bid.at),
                    "price": int(bid.amount),
                    "kind": "max" if bid.is_max else "bid",
                    "voided": bool(bid.voided),
                    "reason": void_reasons.get(int(bid.bid_index), ""),
                    "user": person(int(bid.bidder)),
                }
            )
    else:  # the price lines (automatic proxy steps included)
        for i, (bidder, price, at, auto) in enumerate(lines):
            history.append(
                {
                    "index": None,
                    "number": i + 1,
                    "at": at,
                    "price": price,
                    "kind": "auto" if auto else "bid",
                    "voided": False,
                    "reason": "",
                    "user": person(bidder),
                }
            )
    history = history[-HISTORY_LIMIT:]
    history.reverse()  # newest first
    blocked = ctx.engine.book.blocked
    bidders: dict[int, Document] = {}
    for _bidder, price, _at, _auto in lines:
        entry = bidders.setdefault(_bidder, {"user": person(_bidder), "bids": 0, "highest": 0})
        entry["bids"] += 1
        entry["highest"] = max(entry["highest"], price)
    deposits = []
    for d in held_docs:
        uid = int(d["user_id"])
        deposits.append(
            {
                "id": int(d["_id"]),
                "user": person(uid),
                "amount": int(d["amount"]),
                "status": str(d["status"]),
                "scope": "lot" if d.get("lot_id") is not None else "session",
            }
        )
        bidders.setdefault(uid, {"user": person(uid), "bids": 0, "highest": 0})
    lot_held = Held()
    for d in held_docs:
        if d.get("lot_id") is not None:
            lot_held.add(d)
    for uid, entry in bidders.items():
        entry["blocked"] = uid in blocked
        entry["leading"] = uid == lot.leader
    view["leader_user"] = person(lot.leader) if lot.leader else None
    view["deposits"] = lot_held.as_json()
    return {
        "lot_id": lot_id,
        "session_id": session_id,
        "live": view,
        "controls": sorted(legal_lot_controls(lot, ctx.engine.clock.now_ms())),
        "points": points,
        "history": history,
        "history_kind": "inputs" if inputs is not None else "lines",
        "deposits": deposits,
        "bidders": sorted(bidders.values(), key=lambda b: (-int(b["highest"]), int(b["user"]["id"]))),
        "watchers": await watchers(ctx, session_id),
        "server_time": ctx.engine.clock.now_ms(),
    }


async def voided_reasons(db: Database, lot_id: int) -> dict[int, str]:
    """Bid index -> the reason staff gave when voiding it (from the `bid.void` audit entries)."""
    reasons: dict[int, str] = {}
    async for entry in db.audit.find({"action": "bid.void", "target": f"lot:{lot_id}"}).sort("at", 1):
        after = entry.get("after")
        voided = after.get("voided") if isinstance(after, Mapping) else None
        if isinstance(voided, Mapping) and isinstance(voided.get("bid_index"), int):
            reasons[int(voided["bid_index"])] = str(entry.get("reason", ""))
    return reasons


class LotMonitorHandler(LivePage):
    """`/admin/lots/{id}/monitor`: one lot live: chart, the full bid history with real users,
    reserve, deposits, bidders with block/unblock, watchers, time left, extensions, audit entries."""

    async def get(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        doc = await self.ctx.catalog.lot_document(lot_id)
        session = await self.ctx.catalog.session_document(int(doc["session_id"]))
        detail = await lot_detail(self.ctx, self.engine_lot(lot_id))
        audit, _total = await self.services.audit.page(target=f"lot:{lot_id}", limit=50)
        self.render_live(
            "monitor_lot.html",
            lot=doc,
            session=session,
            detail=detail,
            audit=audit,
            page_title=f"Monitor · lot {doc.get('catalogue_no', '')}",
        )


class LotJsonHandler(AdminJsonHandler):
    """`GET /admin/api/lots/{id}`: the lot monitor's data (history, live state) for its refresh."""

    area = AREA

    async def get(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        lot = self.ctx.engine.book.lots.get(lot_id)
        if lot is None:
            raise NotFound(f"lot {lot_id} is not live in the engine")
        detail = await lot_detail(self.ctx, lot)
        if not self.may(AREA, write=True):
            detail["controls"] = []
        self.reply(detail)


# -- the controls: a confirmation page (GET) and its form (POST) ------------------------------------------
class ControlPage(LivePage, abc.ABC):
    """A control's confirmation: `plan()` says what will happen; `act()` does it."""

    back = ""

    @abc.abstractmethod
    async def prepare_control(self, *args: str) -> None:
        """Read the path (and refuse what cannot be done now); sets `back`."""

    @abc.abstractmethod
    async def plan(self) -> Plan:
        """What the control will do, in numbers."""

    @abc.abstractmethod
    async def act(self, actor: Actor, reason: str) -> str:
        """Do it through AdminActions; the flash message."""

    def extra_field(self) -> Document | None:
        """An input besides the reason (the new end of an extension)."""
        return None

    async def show(self, *, error: str = "", status: int = 200) -> None:
        plan = await self.plan()
        self.set_status(status)
        self.render_live(
            "monitor_confirm.html",
            plan=plan,
            back=self.back,
            error=error,
            reason=self.form("reason") if self.request.method == "POST" else "",
            extra=self.extra_field(),
            page_title=plan.title,
        )

    async def get(self, *args: str) -> None:
        # Anyone who reads auctions may see what a control would do; only writers get the form.
        await self.prepare_control(*args)
        await self.show()

    async def post(self, *args: str) -> None:
        if not self.writer():
            raise tornado.web.HTTPError(403, "the live controls need write access to auctions")
        await self.prepare_control(*args)
        try:
            reason = self.reason()
            message = await self.act(self.actor(), reason)
        except FormError as error:
            await self.show(error=error.message, status=400)
            return
        except GavelError as error:
            self.failed(f"{error.message} ({error.code})", self.back)
            return
        self.done(message, self.back)


def _lot_label(doc: Document, lot_id: int) -> str:
    return str(doc.get("catalogue_no") or lot_id)


class LotControlHandler(ControlPage):
    """`/admin/lots/{id}/(pause|resume|extend|withdraw)`."""

    lot_id = 0
    verb = ""
    doc: Document
    lot: Lot

    async def prepare_control(self, *args: str) -> None:
        raw_id, self.verb = args[0], args[1]
        self.lot_id = self.path_id(raw_id, "lot")
        self.doc = await self.ctx.catalog.lot_document(self.lot_id)
        self.lot = self.engine_lot(self.lot_id)
        back = self.get_argument("back", "")
        self.back = (
            f"{PREFIX}/sessions/{self.lot.session_id}/monitor"
            if back == "session"
            else f"{PREFIX}/lots/{self.lot_id}/monitor"
        )
        if self.verb not in legal_lot_controls(self.lot, self.now()) and self.request.method == "GET":
            state = LOT_STATE_LABELS.get(int(self.lot.state), "?")
            self.failed(f"Lot {self.lot_id} cannot {self.verb} now (it is {state}).", self.back)
            raise tornado.web.Finish()

    def extra_field(self) -> Document | None:
        if self.verb != "extend":
            return None
        typed = self.form("ends_at") if self.request.method == "POST" else ""
        suggested = input_value(int(self.lot.ends_at) + 10 * 60_000, self.zone)
        return {"name": "ends_at", "label": f"New end ({self.zone_name()})", "value": typed or suggested}

    async def plan(self) -> Plan:
        lot = self.lot
        label = _lot_label(self.doc, self.lot_id)
        held = [
            d for d in await held_deposits(self.ctx.db, int(lot.session_id)) if d.get("lot_id") == self.lot_id
        ]
        per, _s, _e = held_by_lot(held)
        mine = per.get(self.lot_id, Held())
        bidders = len(bidders_of(lot))
        if self.verb == "pause":
            return pause_lot_plan(label, bidders, mine.count, mine.total, lot.price, lot.bid_count)
        if self.verb == "resume":
            since = int(lot.paused_since)
            paused_for = self.ctx.engine.clock.now_ms() - since if since else 0
            return resume_lot_plan(label, paused_for, bidders)
        if self.verb == "withdraw":
            return withdraw_lot_plan(
                label, mine.count, mine.total, len(mine.users), bidders, lot.bid_count, lot.price
            )
        new_end = self.new_end(strict=False)
        if new_end is None:
            new_end = int(lot.ends_at) + 10 * 60_000
        return extend_lot_plan(
            label, int(lot.ends_at), new_end, self.local(new_end, seconds=False), self.zone_name()
        )

    def new_end(self, *, strict: bool) -> int | None:
        typed = self.form("ends_at") if self.request.method == "POST" else ""
        if not typed:
            if strict:
                raise FormError("New end: give a date and time")
            return None
        try:
            moment = parse_local(typed, self.zone)
        except ValueError as error:
            if strict:
                raise FormError(f"New end: {typed[:40]!r} is not a date and time") from error
            return None
        return to_ms(moment)

    def checked_end(self) -> int:
        """The typed new end, which must lie after the current one."""
        ends_at = self.new_end(strict=True) or 0
        if ends_at <= int(self.lot.ends_at):
            raise FormError(f"New end: must be after the current end ({self.local(int(self.lot.ends_at))})")
        return ends_at

    async def act(self, actor: Actor, reason: str) -> str:
        label = _lot_label(self.doc, self.lot_id)
        ends_at = self.checked_end() if self.verb == "extend" else 0  # form errors before anything
        controls = self.actions
        if self.verb == "pause":
            await controls.lot_pause(actor, self.lot_id, reason)
            return f"Lot {label} paused."
        if self.verb == "resume":
            await controls.lot_resume(actor, self.lot_id, reason)
            return f"Lot {label} resumed."
        if self.verb == "withdraw":
            await controls.lot_withdraw(actor, self.lot_id, reason)
            return f"Lot {label} withdrawn; its deposits are refunded by settlement."
        await controls.lot_extend(actor, self.lot_id, ends_at, reason)
        return f"Lot {label} now ends {self.local(ends_at, seconds=False)} ({self.zone_name()})."


class BidVoidHandler(ControlPage):
    """`/admin/lots/{id}/bids/{index}/void`: void one accepted bid (the price is replayed without it)."""

    lot_id = 0
    index = 0
    doc: Document
    lot: Lot
    bid: Any

    async def prepare_control(self, *args: str) -> None:
        self.lot_id = self.path_id(args[0], "lot")
        self.index = int(args[1]) if args[1].isdigit() and len(args[1]) < 10 else -1
        self.doc = await self.ctx.catalog.lot_document(self.lot_id)
        self.lot = self.engine_lot(self.lot_id)
        self.back = f"{PREFIX}/lots/{self.lot_id}/monitor"
        inputs = lot_inputs(self.lot) or []
        found = [bid for bid in inputs if int(bid.bid_index) == self.index]
        if not found:
            raise tornado.web.HTTPError(404, f"no bid {args[1][:12]} on lot {self.lot_id}")
        self.bid = found[0]
        voidable = not self.bid.voided and "void" in legal_lot_controls(self.lot, self.now())
        if not voidable and self.request.method == "GET":
            self.failed(f"Bid #{self.index + 1} cannot be voided now.", self.back)
            raise tornado.web.Finish()

    async def plan(self) -> Plan:
        lot, bid = self.lot, self.bid
        session_id = int(lot.session_id)
        after = replay_without(lot.rule, lot.reserve, lot_inputs(lot) or [], self.index)
        names = await usernames(self.ctx.db, [int(bid.bidder), lot.leader, after.leader])

        def name(user_id: int) -> str:
            return (
                f"{names.get(user_id) or 'user #' + str(user_id)} ({self.ctx.pseudonym(session_id, user_id)})"
            )

        return void_bid_plan(
            self.index + 1,
            names.get(int(bid.bidder)) or f"user #{bid.bidder}",
            int(bid.amount),
            lot.price,
            name(lot.leader) if lot.leader else "nobody",
            after,
            name(after.leader) if after.leader else "nobody",
        )

    async def act(self, actor: Actor, reason: str) -> str:
        await self.actions.bid_void(actor, self.lot_id, self.index, reason)
        return f"Bid #{self.index + 1} voided; the price is now {money(self.lot.price)}."


class SessionControlHandler(ControlPage):
    """`/admin/sessions/{id}/(pause|resume)`: every bidding lot of the session at once."""

    session_id = 0
    verb = ""
    session: Document

    async def prepare_control(self, *args: str) -> None:
        self.session_id = self.path_id(args[0], "session")
        self.verb = args[1]
        self.session = await self.ctx.catalog.session_document(self.session_id)
        self.back = f"{PREFIX}/sessions/{self.session_id}/monitor"
        if self.request.method == "GET" and self.verb not in session_controls(self.ctx, self.session_id):
            self.failed(f"The session cannot {self.verb} now.", self.back)
            raise tornado.web.Finish()

    def lots(self) -> list[Lot]:
        live = self.ctx.engine.book.sessions.get(self.session_id)
        if live is None:
            return []
        return [self.ctx.engine.book.lots[i] for i in live.lot_ids if i in self.ctx.engine.book.lots]

    def views(self) -> tuple[int | None, list[Document]]:
        return session_state(self.ctx.engine, self.session_id), [live_view(lot) for lot in self.lots()]

    async def plan(self) -> Plan:
        title = str(self.session.get("title", self.session_id))
        _state, views = self.views()
        bidding = [v for v in views if v["state"] == int(LotState.BIDDING)]
        if self.verb == "resume":
            return resume_session_plan(title, sum(1 for v in bidding if v["paused"]))
        running = [lot for lot in self.lots() if int(lot.state) == int(LotState.BIDDING)]
        bidders: set[int] = set()
        for lot in running:
            bidders |= bidders_of(lot)
        _per, _sw, everything = held_by_lot(await held_deposits(self.ctx.db, self.session_id))
        return pause_session_plan(
            title,
            sum(1 for v in bidding if not v["paused"]),
            len(bidders),
            everything.count,
            everything.total,
        )

    async def act(self, actor: Actor, reason: str) -> str:
        controls = self.actions
        if self.verb == "pause":
            await controls.session_pause(actor, self.session_id, reason)
            return "Session paused."
        await controls.session_resume(actor, self.session_id, reason)
        return "Session resumed."


class BidderControlHandler(ControlPage):
    """`/admin/bidders/{user_id}/(block|unblock)?lot=`: no bids in any session while blocked."""

    user_id = 0
    verb = ""
    username = ""

    async def prepare_control(self, *args: str) -> None:
        self.user_id = self.path_id(args[0], "user")
        self.verb = args[1]
        names = await usernames(self.ctx.db, [self.user_id])
        if self.user_id not in names:
            raise tornado.web.HTTPError(404, f"no user {self.user_id}")
        self.username = names[self.user_id] or f"user #{self.user_id}"
        lot = self.get_argument("lot", "")
        self.back = (
            f"{PREFIX}/lots/{int(lot)}/monitor"
            if lot.isdigit() and len(lot) < 16 and int(lot) in self.ctx.engine.book.lots
            else f"{PREFIX}/users/{self.user_id}"
        )
        blocked = self.user_id in self.ctx.engine.book.blocked
        if self.request.method == "GET" and blocked != (self.verb == "unblock"):
            self.failed(f"{self.username} is {'already' if blocked else 'not'} blocked.", self.back)
            raise tornado.web.Finish()

    async def plan(self) -> Plan:
        if self.verb == "unblock":
            flagged = await self.ctx.db.users.find_one({"_id": self.user_id, "non_payer": True}, {"_id": 1})
            return unblock_plan(self.username, non_payer=flagged is not None)
        leading = sum(
            1
            for lot in self.ctx.engine.book.lots.values()
            if lot.leader == self.user_id and int(lot.state) == int(LotState.BIDDING)
        )
        return block_plan(self.username, leading)

    async def act(self, actor: Actor, reason: str) -> str:
        controls = self.actions
        if self.verb == "block":
            await controls.bidder_block(actor, self.user_id, reason)
            return f"{self.username} is blocked from bidding."
        await controls.bidder_unblock(actor, self.user_id, reason)
        return f"{self.username} may bid again."


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/sessions/([0-9]+)/monitor", MonitorHandler),
    (r"/admin/sessions/([0-9]+)/(pause|resume)", SessionControlHandler),
    (r"/admin/api/sessions/([0-9]+)", SessionJsonHandler),
    (r"/admin/lots/([0-9]+)/monitor", LotMonitorHandler),
    (r"/admin/lots/([0-9]+)/(pause|resume|extend|withdraw)", LotControlHandler),
    (r"/admin/lots/([0-9]+)/bids/([0-9]+)/void", BidVoidHandler),
    (r"/admin/bidders/([0-9]+)/(block|unblock)", BidderControlHandler),
    (r"/admin/api/lots/([0-9]+)", LotJsonHandler),
]
