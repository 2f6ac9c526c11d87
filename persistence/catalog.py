"""Auction sessions (专场) and lots (拍品): metadata in MongoDB, live state from the engine's book.

Writes are two steps (docs/design.md): the metadata document first, marked `engine_synced: False`,
then the engine command; the mark is cleared once the engine has made the command durable. A crash
between the two leaves a marked document that `resubmit_unsynced` replays at start-up.

Reads merge the document (titles, images, specs...) with the book (state, price, leader...), which
is the only truth about bidding. Sessions and lots the engine does not know are not public.
"""

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from engine.book.errors import GavelError, NotFound, SessionEnded
from engine.book.increments import rule_from_spec
from engine.book.lot import Lot
from engine.book.session import Session
from engine.book.states import CLOSED_LOT_STATES, LotState, SessionState
from engine.commands import Outcome, PutLot, PutSession
from engine.engine import Engine
from persistence.accounts import InvalidInput
from persistence.archive import archived_bids
from persistence.kept_json import kept_json
from persistence.media import MediaIndex
from persistence.mongo import Database, Document, as_utc, iso_from_ms, iso_utc, next_id, to_ms, utc_now
from persistence.read_cache import MISSING, ReadCache

log = logging.getLogger("gavel.catalog")

Pseudonym = Callable[[int, int], str]

# The read cache's domain: session and lot documents with their pictures (not their live state,
# which is the engine's, nor the 围观 counts, below).
CACHE_DOMAIN = "auction"
# A lot's 围观 count moves with every new viewer in any process: with the cache live it is read
# again (one query for the lots of a view) once it is older than this.
WATCHERS_FRESH_SECONDS = 1.0
# (lot, viewer) pairs this process knows are recorded: their views need no write at all.
SEEN_VIEWERS_MAX = 100_000
# The views kept while nothing they show moved (a lot's summary, detail and answer; its 围观
# count), per lot, and a session's summary and whole view, per session. Each holds the document
# it was built from and its JSON (a session view holds its lots': ~1-2 KB a lot), so they are
# bounded by what is read often, not by every lot and session a long-running process ever showed:
# as many lots as the read cache keeps documents (read_cache.MAX_ENTRIES), and sessions as the
# hub keeps snapshots. When full, they start again empty (a view is built again on its next read).
KEPT_LOT_VIEWS_MAX = 5_000
KEPT_SESSION_VIEWS_MAX = 256

NOT_STARTED_SESSION_STATES = (SessionState.SCHEDULED, SessionState.PREVIEW)
NOT_STARTED_LOT_STATES = (LotState.SCHEDULED, LotState.PREVIEW)


def lot_increment(lot: Lot) -> int:
    """The step that applies now: from the lowest acceptable price (`next_min`) to the next one
    (a banded rule's step depends on the band `next_min` is in)."""
    if lot.unit:
        return lot.unit
    next_min = lot.next_min()
    return lot.rule.next_up(next_min) - next_min


class AlreadyStarted(GavelError):
    code = "ALREADY_STARTED"


class CatalogueNoTaken(GavelError):
    code = "CATALOGUE_NO_EXISTS"


def engine_refusal(outcome: Outcome, *, state_code: str) -> GavelError:
    """The error for an engine answer that is not ok.

    Input is validated before it reaches the engine, so its BAD_REQUEST / ILLEGAL_STATE refusals
    are about the current state (started, closed...): those get `state_code`, a 409 conflict.
    """
    code = outcome.code or "UNAVAILABLE"
    if code in ("BAD_REQUEST", "ILLEGAL_STATE"):
        code = state_code
    return GavelError(outcome.message or code, code=code)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionSpec:
    title: str
    preview_start: datetime.datetime
    preview_end: datetime.datetime
    bidding_start: datetime.datetime
    bidding_end: datetime.datetime
    deposit: int = 0  # whole-session deposit (全场保证金), fen
    soft_close_seconds: int = 0
    soft_close_cap_seconds: int = 0
    description: str = ""
    cover: str = ""  # image URL

    def check(self) -> None:
        if not self.preview_start <= self.preview_end <= self.bidding_start < self.bidding_end:
            raise InvalidInput(
                "times must satisfy preview_start <= preview_end <= bidding_start < bidding_end"
            )

    def command(self, session_id: int) -> PutSession:
        return PutSession(
            session_id,
            to_ms(self.preview_start),
            to_ms(self.preview_end),
            to_ms(self.bidding_start),
            to_ms(self.bidding_end),
            self.deposit,
            self.soft_close_seconds * 1000,
            self.soft_close_cap_seconds * 1000,
        )

    def document(self) -> Document:
        return dataclasses.asdict(self)

    @classmethod
    def from_document(cls, doc: Document) -> "SessionSpec":
        values = {field.name: doc[field.name] for field in dataclasses.fields(cls) if field.name in doc}
        for name in ("preview_start", "preview_end", "bidding_start", "bidding_end"):
            values[name] = as_utc(values[name])
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """One line of a lot's specifications (拍品规格), e.g. 尺寸: 30×40 cm."""

    key: str
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class LotSpec:
    catalogue_no: str  # 图录号
    title: str
    start_price: int  # fen
    unit: int | None  # fixed increment (加价幅度), fen; None when `increment_bands` is given
    reserve_price: int = 0  # 参考底价: below it the lot does not sell
    highest_price: int = 0  # 参考高价: an estimate shown to bidders, never enforced
    deposit: int = 0  # per-lot deposit (单品保证金), fen
    description: str = ""
    images: tuple[str, ...] = ()
    specs: tuple[Spec, ...] = ()
    # ((upper_exclusive | None, step), ...): the step depends on the price band (see increments.py).
    increment_bands: tuple[tuple[int | None, int], ...] | None = None

    def check(self) -> None:
        if self.increment_bands is None and self.unit is None:
            raise InvalidInput("give either unit or increment_bands")
        try:
            rule_from_spec(self.rule())
        except GavelError as error:
            raise InvalidInput(error.message) from None

    def rule(self) -> list[object]:
        if self.increment_bands is not None:
            return ["banded", self.start_price, [[upper, step] for upper, step in self.increment_bands]]
        return ["fixed", self.start_price, self.unit]

    def command(self, lot_id: int, session_id: int) -> PutLot:
        return PutLot(lot_id, session_id, self.rule(), self.reserve_price, self.deposit)

    def document(self) -> Document:
        doc = dataclasses.asdict(self)
        doc["images"] = list(self.images)
        doc["specs"] = [{"key": spec.key, "value": spec.value} for spec in self.specs]
        doc["increment_bands"] = (
            None if self.increment_bands is None else [list(band) for band in self.increment_bands]
        )
        return doc

    @classmethod
    def from_document(cls, doc: Document) -> "LotSpec":
        values = {field.name: doc[field.name] for field in dataclasses.fields(cls) if field.name in doc}
        values["images"] = tuple(values.get("images", ()))
        values["specs"] = tuple(Spec(item["key"], item["value"]) for item in values.get("specs", ()))
        bands = values.get("increment_bands")
        values["increment_bands"] = None if bands is None else tuple((b[0], b[1]) for b in bands)
        return cls(**values)


@dataclasses.dataclass(slots=True)
class _KeptView:
    """A session view as it was built, what it showed (`Catalog._shown_now`), the session's
    document entry it came from, when its oldest 围观 count is due again, and its JSON once asked."""

    shown: tuple[int, int, int]
    entry: Document
    view: Document
    counts_fresh_until: float
    body: bytes | None = None


class Catalog:
    def __init__(
        self, db: Database, engine: Engine, pseudonym: Pseudonym, cache: ReadCache | None = None
    ) -> None:
        self.db = db
        self.engine = engine
        self.pseudonym = pseudonym
        self.media = MediaIndex(db)  # image sizes and variants, for `pictures` / `cover_picture`
        # Documents and pictures of the public reads (persistence/read_cache.py); None: no cache.
        self.cache = cache
        self._watchers: dict[int, tuple[int, float]] = {}  # lot -> (count, when read)
        self._seen_viewers: dict[tuple[int, str], None] = {}
        self._summaries: dict[int, tuple[Any, ...]] = {}  # lot -> what it showed, and its summary
        self._details: dict[int, tuple[Any, ...]] = {}  # lot -> what it showed, and its lot view
        self._detail_bodies: dict[int, tuple[Document, bytes]] = {}  # lot -> kept view, its JSON
        self._session_summaries: dict[int, tuple[Any, ...]] = {}  # session -> the same
        self._session_views: dict[int, _KeptView] = {}
        self._watchers_moved = 0  # counts changes of any remembered 围观 count
        # Admin writes are rare; one at a time keeps MongoDB and the engine in the same order.
        self._write_lock = asyncio.Lock()

    async def changed(self) -> None:
        """Session or lot documents (or their pictures) changed: the next read, here and in every
        other process, reads them again."""
        if self.cache is not None:
            await self.cache.changed(CACHE_DOMAIN)

    # -- sessions (admin) ----------------------------------------------------------------------
    async def create_session(self, spec: SessionSpec) -> Document:
        try:
            return await self._create_session(spec)
        finally:
            await self.changed()

    async def _create_session(self, spec: SessionSpec) -> Document:
        spec.check()
        if to_ms(spec.bidding_end) <= self.engine.clock.now_ms():
            raise InvalidInput("bidding_end must be in the future")
        async with self._write_lock:
            session_id = await next_id(self.db, "sessions")
            now = utc_now()
            doc = {"_id": session_id, **spec.document(), "created_at": now, "updated_at": now}
            await self.db.sessions.insert_one({**doc, "engine_synced": False})
            outcome = await self.engine.execute(spec.command(session_id))
            if not outcome.ok:
                await self.db.sessions.delete_one({"_id": session_id})
                raise engine_refusal(outcome, state_code="ALREADY_STARTED")
            await self.db.sessions.update_one({"_id": session_id}, {"$set": {"engine_synced": True}})
        return doc

    async def update_session(self, session_id: int, changes: Mapping[str, Any]) -> Document:
        """Change a session that has not started bidding; `changes` holds SessionSpec fields."""
        try:
            return await self._update_session(session_id, changes)
        finally:
            await self.changed()

    async def _update_session(self, session_id: int, changes: Mapping[str, Any]) -> Document:
        async with self._write_lock:
            old = await self.session_document(session_id)
            live = self.engine.book.sessions.get(session_id)
            if live is not None and live.state not in NOT_STARTED_SESSION_STATES:
                raise AlreadyStarted(f"session {session_id} has started; it can no longer be changed")
            spec = dataclasses.replace(SessionSpec.from_document(old), **changes)
            spec.check()
            now = utc_now()
            await self.db.sessions.update_one(
                {"_id": session_id}, {"$set": {**spec.document(), "updated_at": now, "engine_synced": False}}
            )
            outcome = await self.engine.execute(spec.command(session_id))
            if not outcome.ok:
                await self.db.sessions.replace_one({"_id": session_id}, old)
                raise engine_refusal(outcome, state_code="ALREADY_STARTED")
            await self.db.sessions.update_one({"_id": session_id}, {"$set": {"engine_synced": True}})
        return {**old, **spec.document(), "updated_at": now, "engine_synced": True}

    async def session_document(self, session_id: int) -> Document:
        doc = await self.db.sessions.find_one({"_id": session_id})
        if doc is None:
            raise NotFound(f"no session {session_id}")
        return doc

    # -- lots (admin) --------------------------------------------------------------------------
    async def create_lot(self, session_id: int, spec: LotSpec) -> Document:
        try:
            return await self._create_lot(session_id, spec)
        finally:
            await self.changed()

    async def _create_lot(self, session_id: int, spec: LotSpec) -> Document:
        spec.check()
        async with self._write_lock:
            await self.session_document(session_id)
            live = self.engine.book.sessions.get(session_id)
            if live is not None and live.state is SessionState.ENDED:
                raise SessionEnded(f"session {session_id} has ended")
            if live is not None and live.state not in NOT_STARTED_SESSION_STATES:
                # A lot added now would never open by itself: the session's opening timer has fired.
                raise AlreadyStarted(f"session {session_id} has started; lots can no longer be added")
            lot_id = await next_id(self.db, "lots")
            now = utc_now()
            doc = {
                "_id": lot_id,
                "session_id": session_id,
                **spec.document(),
                "watchers": 0,
                "created_at": now,
                "updated_at": now,
            }
            try:
                await self.db.lots.insert_one({**doc, "engine_synced": False})
            except DuplicateKeyError:
                raise CatalogueNoTaken(
                    f"catalogue number {spec.catalogue_no!r} is already used in session {session_id}"
                ) from None
            if live is None:
                # The session itself is waiting for start-up resubmission; so does the lot.
                return doc
            outcome = await self.engine.execute(spec.command(lot_id, session_id))
            if not outcome.ok:
                await self.db.lots.delete_one({"_id": lot_id})
                raise engine_refusal(outcome, state_code="ALREADY_STARTED")
            await self.db.lots.update_one({"_id": lot_id}, {"$set": {"engine_synced": True}})
        return doc

    async def update_lot(self, lot_id: int, changes: Mapping[str, Any]) -> Document:
        """Change a lot while its session has not started bidding; `changes` holds LotSpec fields."""
        try:
            return await self._update_lot(lot_id, changes)
        finally:
            await self.changed()

    async def _update_lot(self, lot_id: int, changes: Mapping[str, Any]) -> Document:
        async with self._write_lock:
            old = await self.lot_document(lot_id)
            session_id = int(old["session_id"])
            live_session = self.engine.book.sessions.get(session_id)
            live_lot = self.engine.book.lots.get(lot_id)
            if (live_session is not None and live_session.state not in NOT_STARTED_SESSION_STATES) or (
                live_lot is not None and live_lot.state not in NOT_STARTED_LOT_STATES
            ):
                raise AlreadyStarted(f"lot {lot_id}'s session has started; it can no longer be changed")
            spec = dataclasses.replace(LotSpec.from_document(old), **changes)
            spec.check()
            now = utc_now()
            try:
                await self.db.lots.update_one(
                    {"_id": lot_id}, {"$set": {**spec.document(), "updated_at": now, "engine_synced": False}}
                )
            except DuplicateKeyError:
                raise CatalogueNoTaken(
                    f"catalogue number {spec.catalogue_no!r} is already used in session {session_id}"
                ) from None
            if live_session is not None:
                outcome = await self.engine.execute(spec.command(lot_id, session_id))
                if not outcome.ok:
                    await self.db.lots.replace_one({"_id": lot_id}, old)
                    raise engine_refusal(outcome, state_code="ALREADY_STARTED")
                await self.db.lots.update_one({"_id": lot_id}, {"$set": {"engine_synced": True}})
        return {**old, **spec.document(), "updated_at": now}

    async def lot_document(self, lot_id: int) -> Document:
        doc = await self.db.lots.find_one({"_id": lot_id})
        if doc is None:
            raise NotFound(f"no lot {lot_id}")
        return doc

    async def resubmit_unsynced(self) -> int:
        """Start-up: replay metadata writes whose engine command may have been lost; returns how many."""
        count = 0
        book = self.engine.book
        async for doc in self.db.sessions.find({"engine_synced": False}):
            outcome = await self.engine.execute(SessionSpec.from_document(doc).command(int(doc["_id"])))
            count += await self._mark_synced("sessions", doc, outcome, int(doc["_id"]) in book.sessions)
        async for doc in self.db.lots.find({"engine_synced": False}):
            if int(doc["session_id"]) not in book.sessions:
                continue
            command = LotSpec.from_document(doc).command(int(doc["_id"]), int(doc["session_id"]))
            outcome = await self.engine.execute(command)
            count += await self._mark_synced("lots", doc, outcome, int(doc["_id"]) in book.lots)
        if count:
            await self.changed()
        return count

    async def _mark_synced(self, collection: str, doc: Document, outcome: Outcome, known: bool) -> int:
        if not outcome.ok:
            if not known:
                log.error(
                    "the engine refused %s %s at start-up: %s %s",
                    collection,
                    doc["_id"],
                    outcome.code,
                    outcome.message,
                )
                return 0
            # The engine holds it already and has moved on (started): its copy is the one that counts.
            log.warning(
                "%s %s changed after the engine started it; keeping the engine's copy", collection, doc["_id"]
            )
        await self.db[collection].update_one({"_id": doc["_id"]}, {"$set": {"engine_synced": True}})
        return 1

    # -- public reads --------------------------------------------------------------------------
    async def _documents(self, kind: str, ids: list[int]) -> dict[int, Document]:
        """Session or lot documents (`kind` "session" / "lot") by id, each `{"doc", "pictures",
        "cover_picture"}`, from the cache or one query (and one media query) for those it lacks."""
        cache = self.cache
        found: dict[int, Document] = {}
        missing: list[int] = []
        for record_id in ids:
            entry = MISSING if cache is None else cache.get(CACHE_DOMAIN, (kind, record_id))
            if entry is MISSING:
                missing.append(record_id)
            elif entry is not None:
                found[record_id] = entry
        if not missing:
            return found
        stamp = 0 if cache is None else cache.stamp(CACHE_DOMAIN)
        collection = self.db.sessions if kind == "session" else self.db.lots
        docs = {int(d["_id"]): d async for d in collection.find({"_id": {"$in": missing}})}
        urls = [u for d in docs.values() for u in d.get("images", ())]
        urls += [d["cover"] for d in docs.values() if d.get("cover")]
        pictures = await self.media.pictures(urls) if urls else {}
        for record_id in missing:
            doc = docs.get(record_id)
            entry = None
            if doc is not None:
                entry = {
                    "doc": doc,
                    "pictures": [pictures[url] for url in doc.get("images", ())],
                    "cover_picture": pictures.get(doc.get("cover", "")),
                }
                found[record_id] = entry
            if cache is not None:
                cache.put(CACHE_DOMAIN, (kind, record_id), entry, stamp)
        return found

    def _set_watchers(self, lot_id: int, count: int, when: float) -> None:
        known = self._watchers.get(lot_id)
        if known is None or known[0] != count:
            self._watchers_moved += 1
        if known is None and len(self._watchers) >= KEPT_LOT_VIEWS_MAX:
            # Bounded like the views kept beside it: every lot ever shown would stay otherwise
            # (a process runs through many sessions); a forgotten count is read again.
            self._watchers.clear()
        self._watchers[lot_id] = (count, when)

    async def _watcher_counts(
        self, lot_ids: list[int], documents: dict[int, Document], companions: Sequence[int] = ()
    ) -> dict[int, int]:
        """Each lot's 围观 count: with the cache live, as read within WATCHERS_FRESH_SECONDS (the
        ones older read again in one query); without it, as in the documents just read.

        `companions` (a lot's session's other lots) past half that age are read again in the same
        query: lots viewed in turn then share one query a second instead of one each."""
        if self.cache is None or not self.cache.live:
            return {i: int(documents[i]["doc"].get("watchers", 0)) for i in lot_ids if i in documents}
        now = time.monotonic()
        counts: dict[int, int] = {}
        stale: list[int] = []
        for lot_id in lot_ids:
            known = self._watchers.get(lot_id)
            if known is not None and now - known[1] < WATCHERS_FRESH_SECONDS:
                counts[lot_id] = known[0]
            else:
                stale.append(lot_id)
                if known is not None:
                    # One request reads it again; the ones meanwhile show the count it had.
                    self._watchers[lot_id] = (known[0], now)
        if stale and companions:
            for lot_id in companions:
                known = self._watchers.get(lot_id)
                if known is not None and now - known[1] >= WATCHERS_FRESH_SECONDS / 2 and lot_id not in stale:
                    stale.append(lot_id)
                    self._watchers[lot_id] = (known[0], now)
        if stale:
            async for doc in self.db.lots.find({"_id": {"$in": stale}}, {"watchers": 1}):
                lot_id = int(doc["_id"])
                counts[lot_id] = int(doc.get("watchers", 0))
                self._set_watchers(lot_id, counts[lot_id], now)
        return counts

    async def list_sessions(
        self, state: SessionState | None, skip: int, limit: int
    ) -> tuple[list[Document], int]:
        """Sessions the engine knows, newest bidding start first, optionally of one state."""
        matching = [s for s in self.engine.book.sessions.values() if state is None or s.state is state]
        matching.sort(key=lambda s: (s.bidding_start, s.session_id), reverse=True)
        page = matching[skip : skip + limit]
        docs = await self._documents("session", [s.session_id for s in page])
        items = [
            dict(self._remembered_session_summary(docs[live.session_id], live))
            for live in page
            if live.session_id in docs
        ]
        return items, len(matching)

    async def session_view(self, session_id: int) -> Document:
        """A session with its lots' live state."""
        view, _ = await self._session_view(session_id)
        return dict(view)

    async def session_view_json(self, session_id: int) -> bytes:
        """The session view as its JSON answer. It is the same for every caller, so its bytes are
        kept with the view: while nothing it shows moved and none of its 围观 counts is due to be
        read again, an answer costs no lookup of its fifty lots and no encoding."""
        kept = self._session_views.get(session_id)
        if kept is None or not self._still_shown(kept):
            view, kept = await self._session_view(session_id)
            if kept is None:
                return orjson.dumps(view)
        if kept.body is None:
            kept.body = kept_json(kept.view)
        return kept.body

    def _shown_now(self) -> tuple[int, int, int]:
        # Every change of state, price or terms is a command applied to the book (journaled under
        # the next seq); every change of a document moves the domain's generation; a moved 围观
        # count moves `_watchers_moved`.
        return (
            self.engine.last_seq,
            self.cache.stamp(CACHE_DOMAIN) if self.cache else 0,
            self._watchers_moved,
        )

    def _still_shown(self, kept: _KeptView) -> bool:
        return (
            self.cache is not None
            and self.cache.live
            and kept.shown == self._shown_now()
            and time.monotonic() < kept.counts_fresh_until
        )

    def _counts_fresh_until(self, lot_ids: list[int]) -> float:
        """When the first of these lots' 围观 counts is due to be read again (0: one is unknown)."""
        oldest = None
        for lot_id in lot_ids:
            known = self._watchers.get(lot_id)
            if known is None:
                return 0.0
            if oldest is None or known[1] < oldest:
                oldest = known[1]
        return (time.monotonic() if oldest is None else oldest) + WATCHERS_FRESH_SECONDS

    async def _session_view(self, session_id: int) -> tuple[Document, _KeptView | None]:
        live = self.engine.book.sessions.get(session_id)
        if live is None:
            raise NotFound(f"no session {session_id}")
        entry = (await self._documents("session", [session_id])).get(session_id)
        if entry is None:
            raise NotFound(f"no session {session_id}")
        lot_ids = list(live.lot_ids)
        lot_docs = await self._documents("lot", lot_ids)
        watchers = await self._watcher_counts(lot_ids, lot_docs)
        remember = self.cache is not None and self.cache.live
        # The whole view stands while nothing it shows moved (`_shown_now`) and the session's
        # document is the one it was built from.
        shown = self._shown_now()
        known = self._session_views.get(session_id)
        if remember and known is not None and known.shown == shown and known.entry is entry:
            known.counts_fresh_until = self._counts_fresh_until(lot_ids)
            return known.view, known
        view = self._build_session_view(entry, live, lot_ids, lot_docs, watchers)
        if not remember:
            return view, None
        if session_id not in self._session_views and len(self._session_views) >= KEPT_SESSION_VIEWS_MAX:
            self._session_views.clear()
        kept = _KeptView(shown, entry, view, self._counts_fresh_until(lot_ids))
        self._session_views[session_id] = kept
        return view, kept

    def _build_session_view(
        self,
        entry: Document,
        live: Session,
        lot_ids: list[int],
        lot_docs: dict[int, Document],
        watchers: dict[int, int],
    ) -> Document:
        lots = self.engine.book.lots
        view = dict(self._remembered_session_summary(entry, live))
        view["lots"] = [
            self._remembered_summary(lot_docs[lot_id], lots[lot_id], watchers.get(lot_id, 0))
            for lot_id in lot_ids
            if lot_id in lot_docs
        ]
        return view

    def _remembered_session_summary(self, entry: Document, live: Session) -> Document:
        """A session's summary with its cover, built again only when the session's live terms or
        its cached document changed (times to ISO strings were most of a session view's cost)."""
        shown = (
            live.state,
            live.preview_start,
            live.preview_end,
            live.bidding_start,
            live.bidding_end,
            live.deposit,
            live.soft_close_ms,
            live.soft_close_cap_ms,
            len(live.lot_ids),
        )
        known = self._session_summaries.get(live.session_id)
        if (
            self.cache is not None
            and self.cache.live
            and known is not None
            and known[0] == shown
            and known[1] is entry
            and known[2] is live
        ):
            remembered: Document = known[3]
            return remembered
        summary = _session_summary(entry["doc"], live)
        summary["cover_picture"] = entry["cover_picture"]
        if self.cache is not None and self.cache.live:
            if (
                live.session_id not in self._session_summaries
                and len(self._session_summaries) >= KEPT_SESSION_VIEWS_MAX
            ):
                self._session_summaries.clear()
            self._session_summaries[live.session_id] = (shown, entry, live, summary)
        return summary

    def _remembered_summary(self, entry: Document, live: Lot, watchers: int) -> Document:
        """A lot's summary in a session view, built again only when something it shows moved: its
        live state (state, price, leader, count, end, pause, terms), its 围观 count, or its cached
        document (a new entry after any change). Building fifty of them was most of a session
        view's time. Not for lot_view, which adds to the summary it gets."""
        if self.cache is None or not self.cache.live:
            return self._lot_view_summary(entry, live, watchers)
        shown = (*_live_fingerprint(live), watchers)
        known = self._summaries.get(live.lot_id)
        # Identity checks: the memo holds these objects, so a replaced rule, lot or entry never
        # passes for the one remembered.
        if (
            known is not None
            and known[0] == shown
            and known[1] is entry
            and known[2] is live
            and known[3] is live.rule
        ):
            summary: Document = known[4]
            return summary
        summary = self._lot_view_summary(entry, live, watchers)
        if live.lot_id not in self._summaries and len(self._summaries) >= KEPT_LOT_VIEWS_MAX:
            self._summaries.clear()
        self._summaries[live.lot_id] = (shown, entry, live, live.rule, summary)
        return summary

    async def _new_viewer(self, lot_id: int, viewer: str) -> bool:
        try:
            await self.db.lot_viewers.insert_one({"lot_id": lot_id, "viewer": viewer[:64], "at": utc_now()})
        except DuplicateKeyError:
            return False
        return True

    async def _record_viewer(self, lot_id: int, viewer: str) -> None:
        """Count `viewer` once per lot. A pair this process has recorded (or found recorded) costs
        nothing again; a new one is written before the answer, so a first view shows its own count."""
        key = (lot_id, viewer[:64])
        if key in self._seen_viewers:
            return
        if await self._new_viewer(lot_id, viewer):
            doc = await self.db.lots.find_one_and_update(
                {"_id": lot_id},
                {"$inc": {"watchers": 1}},
                projection={"watchers": 1},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                self._set_watchers(lot_id, int(doc.get("watchers", 0)), time.monotonic())
        if len(self._seen_viewers) >= SEEN_VIEWERS_MAX:
            self._seen_viewers.clear()
        self._seen_viewers[key] = None

    async def recount_watchers(self) -> int:
        """Set every lot's 围观 count to its number of viewer records (counts kept before viewers were
        recorded counted page loads); how many lots changed. Safe beside live views: each lot is
        compared and set, and counted again when a view moved it in between."""
        changed = 0
        async for doc in self.db.lots.find({}, {"watchers": 1}):
            lot_id = int(doc["_id"])
            for _ in range(5):
                seen = await self.db.lots.find_one({"_id": lot_id}, {"watchers": 1})
                if seen is None:
                    break
                had = seen.get("watchers", 0)
                want = await self.db.lot_viewers.count_documents({"lot_id": lot_id})
                if had == want:
                    break
                done = await self.db.lots.update_one(
                    {"_id": lot_id, "watchers": had}, {"$set": {"watchers": want}}
                )
                if done.modified_count:
                    changed += 1
                    break
        self._watchers.clear()
        self._watchers_moved += 1
        return changed

    async def lot_view(self, lot_id: int, *, viewer: str | None = None) -> Document:
        """One lot's metadata and live state; a `viewer` key (the gateway names who is looking) is
        recorded once per lot, and the lot's 围观 count moves only when that record is new."""
        detail, _ = await self._lot_view(lot_id, viewer)
        return dict(detail)  # the caller's own: the admin's view adds the reserve to it

    async def lot_view_json(self, lot_id: int, *, viewer: str | None = None) -> bytes:
        """`lot_view` as its JSON answer (the same for every viewer), kept with the kept view."""
        detail, kept = await self._lot_view(lot_id, viewer)
        if not kept:
            return orjson.dumps(detail)
        known = self._detail_bodies.get(lot_id)
        if known is not None and known[0] is detail:
            return known[1]
        answer = kept_json(detail)
        if lot_id not in self._detail_bodies and len(self._detail_bodies) >= KEPT_LOT_VIEWS_MAX:
            self._detail_bodies.clear()
        self._detail_bodies[lot_id] = (detail, answer)
        return answer

    async def _lot_view(self, lot_id: int, viewer: str | None) -> tuple[Document, bool]:
        """The lot's view and whether it is the kept one (shared: never to be changed)."""
        live = self.engine.book.lots.get(lot_id)
        if live is None:
            raise NotFound(f"no lot {lot_id}")
        if viewer is not None:
            await self._record_viewer(lot_id, viewer)
        entry = (await self._documents("lot", [lot_id])).get(lot_id)
        if entry is None:
            raise NotFound(f"no lot {lot_id}")
        session_id = live.session.session_id
        session_entry = (await self._documents("session", [session_id])).get(session_id)
        watchers = await self._watcher_counts([lot_id], {lot_id: entry}, live.session.lot_ids)
        if self.cache is None or not self.cache.live:
            return self._lot_detail(entry, session_entry, live, watchers.get(lot_id, 0)), False
        # As for the session view's summaries: built again only when something it shows moved.
        shown = (
            *_live_fingerprint(live),
            live.winner,
            live.session.state,
            live.session.deposit,
            watchers.get(lot_id, 0),
        )
        known = self._details.get(lot_id)
        if (
            known is not None
            and known[0] == shown
            and known[1] is entry
            and known[2] is session_entry
            and known[3] is live
            and known[4] is live.rule
        ):
            detail: Document = known[5]
            return detail, True
        detail = self._lot_detail(entry, session_entry, live, watchers.get(lot_id, 0))
        if lot_id not in self._details and len(self._details) >= KEPT_LOT_VIEWS_MAX:
            self._details.clear()
        self._details[lot_id] = (shown, entry, session_entry, live, live.rule, detail)
        return detail, True

    def _lot_detail(
        self, entry: Document, session_entry: Document | None, live: Lot, watchers: int
    ) -> Document:
        session_id = live.session.session_id
        doc = entry["doc"]
        view = self._lot_view_summary(entry, live, watchers)
        view.update(
            description=doc.get("description", ""),
            specs=[{"key": s["key"], "value": s["value"]} for s in doc.get("specs", ())],
            unit=doc.get("unit"),
            increment_bands=doc.get("increment_bands"),
            highest_price=int(doc.get("highest_price", 0)),
            winner=self.pseudonym(session_id, live.winner),
            session={
                "id": session_id,
                "title": session_entry["doc"].get("title", "") if session_entry else "",
                "state": int(live.session.state),
                "state_name": live.session.state.name.lower(),
                "deposit": live.session.deposit,
            },
        )
        return view

    def _lot_view_summary(self, entry: Document, live: Lot, watchers: int) -> Document:
        summary = self._lot_summary(entry["doc"], live)
        summary["watchers"] = watchers
        summary["pictures"] = entry["pictures"]
        return summary

    async def bids_view(self, lot_id: int, skip: int, limit: int) -> tuple[list[Document], int]:
        """A page of a lot's bid history, newest first, from the engine's arrays (complete for live
        lots), or from the archive once the lot is compacted (engine/compaction.py)."""
        lot = self.engine.book.lots.get(lot_id)
        if lot is None:
            raise NotFound(f"no lot {lot_id}")
        line: Callable[[int], tuple[int, int, int, bool]]
        if lot.compacted:
            archived = [
                (bid.bidder, bid.price, bid.at, bid.auto) for bid in await archived_bids(self.db, lot_id)
            ]
            total, line = len(archived), archived.__getitem__
        else:
            total, line = len(lot.bids), lot.bids.line
        session_id = lot.session.session_id
        newest = total - 1 - skip
        items = []
        for index in range(newest, max(newest - limit, -1), -1):
            bidder, price, at, auto = line(index)
            items.append(
                {
                    "price": price,
                    "bidder": self.pseudonym(session_id, bidder),
                    "at": iso_from_ms(at),
                    "at_ms": at,
                    "auto": auto,
                }
            )
        return items, total

    def _lot_summary(self, doc: Document, live: Lot) -> Document:
        return {
            "id": live.lot_id,
            "session_id": live.session.session_id,
            "catalogue_no": doc.get("catalogue_no", ""),
            "title": doc.get("title", ""),
            "images": list(doc.get("images", ())),
            "start_price": live.rule.start,
            "deposit": live.deposit,
            "state": int(live.state),
            "state_name": live.state.name.lower(),
            "price": live.price,
            "leader": self.pseudonym(live.session.session_id, live.leader),
            "bid_count": live.bid_count,
            "next_min": live.next_min(),
            "ends_at": iso_from_ms(live.ends_at),
            "ends_at_ms": live.ends_at,
            "closed": live.state in CLOSED_LOT_STATES,
            "no_bids": live.bid_count == 0,
            "increment": lot_increment(live),
            # Whether there is a reserve and whether the price meets it; never the reserve itself
            # (the admin's views show it).
            "has_reserve": live.reserve > 0,
            "reserve_met": live.leader != 0 and live.price >= live.reserve,
            "watchers": int(doc.get("watchers", 0)),
            # An operator paused the lot: bids get PAUSED until it resumes (docs/engine.md).
            "paused": bool(live.paused_since),
        }


def _live_fingerprint(live: Lot) -> tuple[Any, ...]:
    """What a lot's summary shows of its live state (besides its rule, compared by identity)."""
    return (
        live.state,
        live.price,
        live.leader,
        live.bid_count,
        live.ends_at,
        live.paused_since,
        live.reserve,
        live.deposit,
        live.unit,
    )


def _session_summary(doc: Document, live: Session) -> Document:
    return {
        "id": live.session_id,
        "title": doc.get("title", ""),
        "description": doc.get("description", ""),
        "cover": doc.get("cover", ""),
        "state": int(live.state),
        "state_name": live.state.name.lower(),
        "preview_start": iso_from_ms(live.preview_start),
        "preview_start_ms": live.preview_start,
        "preview_end": iso_from_ms(live.preview_end),
        "preview_end_ms": live.preview_end,
        "bidding_start": iso_from_ms(live.bidding_start),
        "bidding_start_ms": live.bidding_start,
        "bidding_end": iso_from_ms(live.bidding_end),
        "bidding_end_ms": live.bidding_end,
        "deposit": live.deposit,
        "soft_close_seconds": live.soft_close_ms // 1000,
        "soft_close_cap_seconds": live.soft_close_cap_ms // 1000,
        "lot_count": len(live.lot_ids),
    }


def admin_session_view(doc: Document) -> Document:
    """A session metadata document as the admin API returns it."""
    return {
        "id": doc["_id"],
        "title": doc["title"],
        "description": doc.get("description", ""),
        "cover": doc.get("cover", ""),
        "preview_start": iso_utc(doc["preview_start"]),
        "preview_end": iso_utc(doc["preview_end"]),
        "bidding_start": iso_utc(doc["bidding_start"]),
        "bidding_end": iso_utc(doc["bidding_end"]),
        "deposit": doc["deposit"],
        "soft_close_seconds": doc["soft_close_seconds"],
        "soft_close_cap_seconds": doc["soft_close_cap_seconds"],
    }


def admin_lot_view(doc: Document) -> Document:
    """A lot metadata document as the admin API returns it."""
    return {
        "id": doc["_id"],
        "session_id": doc["session_id"],
        "catalogue_no": doc["catalogue_no"],
        "title": doc["title"],
        "description": doc.get("description", ""),
        "images": list(doc.get("images", ())),
        "specs": [{"key": s["key"], "value": s["value"]} for s in doc.get("specs", ())],
        "start_price": doc["start_price"],
        "unit": doc.get("unit"),
        "increment_bands": doc.get("increment_bands"),
        "reserve_price": doc.get("reserve_price", 0),
        "highest_price": doc.get("highest_price", 0),
        "deposit": doc.get("deposit", 0),
    }
