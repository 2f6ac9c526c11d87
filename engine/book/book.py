"""The book: every session and lot the engine holds, their timers, and snapshots of it all.

Pure: every method that depends on time takes `now`; nothing here reads a clock or does I/O.
"""

import heapq
from typing import Any

from engine.book.errors import IllegalTransition, InvalidCommand, NotFound, RejectCode
from engine.book.events import Event, LotClosed
from engine.book.increments import IncrementRule, rule_from_spec
from engine.book.lot import CLOSE_LOT_TIMER, EMPTY_HISTORY, NO_VOIDS, BidHistory, Decision, Lot
from engine.book.session import NO_DEPOSITORS, Session
from engine.book.states import CLOSED_LOT_STATES, LotState, SessionState
from engine.book.types import NO_USER, Fen, LotId, Millis, SessionId, UserId

# Timer kinds, in the order they must fire when due at the same instant.
_PREVIEW, _OPEN, _CLOSE_LOT = 0, 1, CLOSE_LOT_TIMER
# At most this many distinct increment rules are shared between compacted lots (a rule is a few
# dozen bytes; most lots use a handful of ladders, and past this a lot simply keeps its own).
SHARED_RULES_MAX = 1_024


class Book:
    def __init__(self) -> None:
        self.sessions: dict[SessionId, Session] = {}
        self.lots: dict[LotId, Lot] = {}
        self.blocked: set[UserId] = set()
        self.events: list[Event] = []
        self.quiet = False  # see set_quiet
        # (due, kind, id); stale entries (a lot extended since) are skipped when popped.
        self._timers: list[tuple[Millis, int, int]] = []
        # One rule object per spec for compacted and restored lots (rules never change in place).
        self._rules: dict[str, IncrementRule] = {}

    # -- configuration -------------------------------------------------------------------------
    def put_session(
        self,
        session_id: SessionId,
        *,
        preview_start: Millis,
        preview_end: Millis,
        bidding_start: Millis,
        bidding_end: Millis,
        deposit: Fen = 0,
        soft_close_ms: Millis = 0,
        soft_close_cap_ms: Millis = 0,
    ) -> Session:
        """Create a session, or change it while it has not started bidding."""
        settings = {
            "preview_start": preview_start,
            "preview_end": preview_end,
            "bidding_start": bidding_start,
            "bidding_end": bidding_end,
            "deposit": deposit,
            "soft_close_ms": soft_close_ms,
            "soft_close_cap_ms": soft_close_cap_ms,
        }
        session = self.sessions.get(session_id)
        if session is None:
            session = Session(session_id, events=self.events, **settings)
            self.sessions[session_id] = session
        else:
            session.configure(**settings)
            for lot_id in session.lot_ids:
                lot = self.lots[lot_id]
                if lot.state in CLOSED_LOT_STATES:
                    continue  # a cancelled lot keeps the end it closed at
                lot.ends_at = bidding_end
                lot.refresh_gating()
                heapq.heappush(self._timers, (bidding_end, _CLOSE_LOT, lot_id))
        heapq.heappush(self._timers, (preview_start, _PREVIEW, session_id))
        heapq.heappush(self._timers, (bidding_start, _OPEN, session_id))
        return session

    def put_lot(
        self,
        lot_id: LotId,
        session_id: SessionId,
        rule: IncrementRule,
        *,
        reserve: Fen = 0,
        deposit: Fen = 0,
    ) -> Lot:
        """Create a lot in a session, or change it while it has not opened for bidding."""
        session = self.session(session_id)
        if reserve < 0 or deposit < 0:
            raise InvalidCommand("reserve and deposit must not be negative")
        lot = self.lots.get(lot_id)
        if lot is not None:
            if lot.session is not session:
                raise InvalidCommand("a lot cannot move to another session")
            if lot.state not in (LotState.SCHEDULED, LotState.PREVIEW):
                raise InvalidCommand("a lot can be changed only before it opens")
            lot.set_rule(rule)
            lot.reserve, lot.deposit = reserve, deposit
            lot.refresh_gating()
            return lot
        if session.state not in (SessionState.SCHEDULED, SessionState.PREVIEW):
            raise InvalidCommand("lots can be added only before the session's bidding starts")
        lot = Lot(lot_id, session, rule, reserve=reserve, deposit=deposit, events=self.events)
        lot.quiet = self.quiet
        lot.timers = self._timers
        self.lots[lot_id] = lot
        session.lot_ids.append(lot_id)
        if session.state is SessionState.PREVIEW:
            lot.preview()
        heapq.heappush(self._timers, (lot.ends_at, _CLOSE_LOT, lot_id))
        return lot

    def session(self, session_id: SessionId) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound(f"no session {session_id}") from None

    def lot(self, lot_id: LotId) -> Lot:
        try:
            return self.lots[lot_id]
        except KeyError:
            raise NotFound(f"no lot {lot_id}") from None

    def register_deposit(self, session_id: SessionId, lot_id: LotId | None, user: UserId) -> None:
        """Record a paid deposit: per lot, or (lot_id None) for the whole session."""
        if lot_id is None:
            session = self.session(session_id)
            if session.depositors is NO_DEPOSITORS:  # shared while empty: its own set from now on
                session.depositors = set()
            session.depositors.add(user)
            return
        lot = self.lot(lot_id)
        if lot.session.session_id != session_id:
            raise InvalidCommand("the lot is not in that session")
        if lot.depositors is NO_DEPOSITORS:
            lot.depositors = set()
        lot.depositors.add(user)

    def block(self, user: UserId) -> None:
        self.blocked.add(user)

    def unblock(self, user: UserId) -> None:
        self.blocked.discard(user)

    # -- bids ----------------------------------------------------------------------------------
    def place(self, lot_id: LotId, bidder: UserId, amount: Fen, is_max: bool, now: Millis) -> Decision:
        lot = self.lots.get(lot_id)
        if lot is None:
            return Decision(False, RejectCode.NOT_FOUND, lot_id, 0, 0, NO_USER)
        if bidder <= 0 or amount <= 0:
            return lot._reject(RejectCode.BAD_REQUEST)
        if bidder in self.blocked:
            return lot._reject(RejectCode.BLOCKED)
        return lot.place(bidder, amount, is_max, now)

    # -- lifecycle -----------------------------------------------------------------------------
    def open_lot(self, lot_id: LotId, now: Millis) -> None:
        """Open one lot for bidding now (early opening by an admin)."""
        lot = self.lot(lot_id)
        if lot.state is LotState.SCHEDULED and lot.session.state is SessionState.SCHEDULED:
            lot.session.move_to(SessionState.PREVIEW, now)
        lot.open(now)
        if lot.session.state is not SessionState.BIDDING:
            lot.session.move_to(SessionState.BIDDING, now)
        heapq.heappush(self._timers, (lot.ends_at, _CLOSE_LOT, lot_id))

    def close_lot(self, lot_id: LotId, now: Millis, reason: str = "closed_early") -> None:
        lot = self.lot(lot_id)
        if lot.state is not LotState.BIDDING:
            raise InvalidCommand(f"lot {lot_id} is not open for bidding")
        lot.close(now, reason)
        self._end_session_if_done(lot.session, now)

    def cancel_lot(self, lot_id: LotId, now: Millis, reason: str) -> None:
        lot = self.lot(lot_id)
        if lot.state in CLOSED_LOT_STATES:
            raise InvalidCommand(f"lot {lot_id} is already closed")
        lot.close(now, f"cancelled: {reason}", force_unsold=True)
        self._end_session_if_done(lot.session, now)

    def compact_lots(self, lot_ids: list[LotId]) -> list[LotId]:
        """Compact the named lots that are closed and not compacted yet (see `Lot.compact`);
        returns those it compacted. Unknown, open or compacted ones are skipped: the decision was
        taken outside the engine on facts that may be a moment old, and only closed lots qualify."""
        done: list[LotId] = []
        sessions: dict[SessionId, Session] = {}
        for lot_id in lot_ids:
            lot = self.lots.get(lot_id)
            if lot is None or lot.compacted or lot.state not in CLOSED_LOT_STATES:
                continue
            lot.compact()
            lot.set_rule(self.shared_rule(lot.rule))
            sessions[lot.session_id] = lot.session
            done.append(lot_id)
        if not done:
            raise InvalidCommand("none of these lots can be compacted")
        for session in sessions.values():
            self._release_depositors_if_settled(session)
        return done

    def _release_depositors_if_settled(self, session: Session) -> None:
        """An ended session whose every lot is compacted lets its whole-session depositors go.

        Nothing reads them any more: no lot of it takes a bid, a deposit for an ended session is
        refused before they are looked at (`amount_due`), start-up registers deposits of open
        sessions only, and the settlement has finished with every close (that is what compacted
        means); its refunds and forfeits read the deposit records in MongoDB, never the book.
        Deterministic in the book's state, so a replay of `CompactLots` releases at the same seq.
        """
        if session.state is not SessionState.ENDED or session.depositors is NO_DEPOSITORS:
            return
        if all(self.lots[lot_id].compacted for lot_id in session.lot_ids):
            session.depositors = NO_DEPOSITORS

    def shared_rule(self, rule: IncrementRule) -> IncrementRule:
        """The book's one object for this rule's spec (this one if it is the first)."""
        key = repr(rule.spec())
        shared = self._rules.get(key)
        if shared is not None:
            return shared
        if len(self._rules) < SHARED_RULES_MAX:
            self._rules[key] = rule
        return rule

    def mark_overdue(self, lot_id: LotId) -> None:
        self.lot(lot_id).mark_overdue()

    # -- admin controls ------------------------------------------------------------------------
    def pause_lot(self, lot_id: LotId, now: Millis, reason: str) -> None:
        self.lot(lot_id).pause(now, reason)

    def resume_lot(self, lot_id: LotId, now: Millis) -> None:
        self.lot(lot_id).resume(now)

    def pause_session(self, session_id: SessionId, now: Millis, reason: str) -> list[LotId]:
        """Pause every lot of the session bidding now; lots that open later open as usual."""
        session = self.session(session_id)
        lots = [self.lots[lot_id] for lot_id in session.lot_ids]
        running = [
            lot
            for lot in lots
            if lot.state is LotState.BIDDING and not lot.paused_since and now < lot.ends_at
        ]
        if not running:
            raise IllegalTransition(f"no lot of session {session_id} is bidding")
        for lot in running:
            lot.pause(now, reason)
        return [lot.lot_id for lot in running]

    def resume_session(self, session_id: SessionId, now: Millis) -> list[LotId]:
        """Resume every paused lot of the session."""
        session = self.session(session_id)
        lots = [self.lots[lot_id] for lot_id in session.lot_ids]
        held = [lot for lot in lots if lot.state is LotState.BIDDING and lot.paused_since]
        if not held:
            raise IllegalTransition(f"no lot of session {session_id} is paused")
        for lot in held:
            lot.resume(now)
        return [lot.lot_id for lot in held]

    def extend_lot(self, lot_id: LotId, ends_at: Millis, now: Millis) -> None:
        self.lot(lot_id).extend_to(ends_at, now)

    def void_bid(self, lot_id: LotId, index: int, now: Millis, reason: str) -> None:
        self.lot(lot_id).void(index, now, reason)

    def next_due(self) -> Millis | None:
        """When `advance` next has something to do (None: nothing scheduled)."""
        while self._timers and self._is_stale(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _is_stale(self, timer: tuple[Millis, int, int]) -> bool:
        due, kind, ident = timer
        if kind == _CLOSE_LOT:
            lot = self.lots.get(ident)
            return lot is None or lot.ends_at != due or lot.state in CLOSED_LOT_STATES
        session = self.sessions.get(ident)
        if session is None:
            return True
        if kind == _PREVIEW:
            if session.preview_start != due or session.state is SessionState.ENDED:
                return True
            # A lot opened early moves its session on; the other lots still preview on time.
            return session.state is not SessionState.SCHEDULED and not any(
                self.lots[lot_id].state is LotState.SCHEDULED for lot_id in session.lot_ids
            )
        if session.bidding_start != due or session.state is SessionState.ENDED:
            return True
        # A session opened early for one lot is BIDDING already; its other lots still open on time.
        return session.state is SessionState.BIDDING and not any(
            self.lots[lot_id].state in (LotState.SCHEDULED, LotState.PREVIEW) for lot_id in session.lot_ids
        )

    def advance(self, now: Millis) -> None:
        """Fire every timer due at or before `now`: previews, openings, lot closes."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if self._is_stale(timer):
                continue
            _due, kind, ident = timer
            if kind == _CLOSE_LOT:
                lot = self.lots[ident]
                if lot.state is LotState.BIDDING and not lot.paused_since:  # a paused lot waits
                    lot.close(now, "ended")
                    self._end_session_if_done(lot.session, now)
                continue
            session = self.sessions[ident]
            if session.state is SessionState.SCHEDULED:
                session.move_to(SessionState.PREVIEW, now)
            for lot_id in session.lot_ids:
                lot = self.lots[lot_id]
                if lot.state is LotState.SCHEDULED:
                    lot.preview()
            if kind == _OPEN:
                if session.state is SessionState.PREVIEW:
                    session.move_to(SessionState.BIDDING, now)
                for lot_id in session.lot_ids:
                    lot = self.lots[lot_id]
                    if lot.state is LotState.SCHEDULED:
                        lot.preview()
                    if lot.state is LotState.PREVIEW:
                        lot.open(now)
                        heapq.heappush(timers, (lot.ends_at, _CLOSE_LOT, lot_id))
                self._end_session_if_done(session, now)

    def _end_session_if_done(self, session: Session, now: Millis) -> None:
        if session.state is not SessionState.BIDDING:
            return
        if all(self.lots[lot_id].state in CLOSED_LOT_STATES for lot_id in session.lot_ids):
            session.move_to(SessionState.ENDED, now)

    def set_quiet(self, quiet: bool) -> None:
        """Quiet: bids decide as always but record no events (replaying what was delivered before).

        Only the bid path goes quiet; the rare events of opening, closing and extending lots are
        still recorded (drain or clear them as usual).
        """
        self.quiet = quiet
        for lot in self.lots.values():
            if not lot.compacted:  # closed for good: no bid of theirs records anything
                lot.quiet = quiet

    def drain_events(self) -> list[Event]:
        """Hand over the events recorded since the last call (the lots share this outbox)."""
        if not self.events:
            return []
        drained = self.events.copy()
        self.events.clear()
        return drained

    # -- snapshots -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A plain (msgpack-able) copy of everything that decides future bids."""
        return {
            "sessions": [
                [
                    s.session_id,
                    int(s.state),
                    s.preview_start,
                    s.preview_end,
                    s.bidding_start,
                    s.bidding_end,
                    s.deposit,
                    s.soft_close_ms,
                    s.soft_close_cap_ms,
                    sorted(s.depositors),
                ]
                for s in self.sessions.values()
            ],
            "lots": [
                [
                    lot.lot_id,
                    lot.session.session_id,
                    lot.rule.spec(),
                    lot.reserve,
                    lot.deposit,
                    int(lot.state),
                    lot.ends_at,
                    lot.price,
                    lot.leader,
                    lot.leader_max,
                    lot.winner,
                    sorted(lot.depositors),
                    lot.bids.to_bytes(),
                    # Added with the admin controls (absent from older snapshots):
                    lot.paused_since,
                    lot.paused_total,
                    lot.extensions,
                    lot.input_log.to_bytes(),
                    list(lot.voided),
                    lot.replayable,
                    lot.compacted,  # added with compaction, with the bid count its lines no longer give
                    lot.bid_count,
                ]
                for lot in self.lots.values()
            ],
            "blocked": sorted(self.blocked),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Book":
        book = cls()
        rules: dict[str, IncrementRule] = {}
        for row in state["sessions"]:
            (sid, st, p0, p1, b0, b1, deposit, soft, cap, depositors) = row
            session = Session(
                sid,
                preview_start=p0,
                preview_end=p1,
                bidding_start=b0,
                bidding_end=b1,
                deposit=deposit,
                soft_close_ms=soft,
                soft_close_cap_ms=cap,
                events=book.events,
            )
            session.state = SessionState(st)
            if depositors:
                session.depositors = set(depositors)
            book.sessions[sid] = session
            heapq.heappush(book._timers, (p0, _PREVIEW, sid))
            heapq.heappush(book._timers, (b0, _OPEN, sid))
        for full_row in state["lots"]:
            row, controls = full_row[:13], full_row[13:]
            (
                lid,
                sid,
                spec,
                reserve,
                deposit,
                st,
                ends_at,
                price,
                leader,
                leader_max,
                winner,
                depositors,
                bids,
            ) = row
            session = book.sessions[sid]
            # Lots share one rule object per spec (rules are never changed in place): a long
            # history holds many thousands of closed lots, mostly on a handful of ladders.
            key = repr(spec)
            rule = rules.get(key)
            if rule is None:
                rule = rules[key] = book.shared_rule(rule_from_spec(spec))
            lot = Lot(lid, session, rule, reserve=reserve, deposit=deposit, events=book.events)
            lot.state = LotState(st)
            lot.ends_at, lot.price, lot.leader, lot.leader_max, lot.winner = (
                ends_at,
                price,
                leader,
                leader_max,
                winner,
            )
            compacted = len(controls) > 6 and bool(controls[6])
            if compacted:
                # Its bid count is kept apart from its (dropped) lines; nothing else to decode.
                lot.bid_count = controls[7] if len(controls) > 7 else 0
                lot.bids = lot.input_log = EMPTY_HISTORY
                lot.voided = NO_VOIDS
            else:
                if depositors:
                    lot.depositors = set(depositors)
                lot.bids = BidHistory.from_bytes(bids)
                lot.bid_count = len(lot.bids)
            if controls:
                paused_since, paused_total, extensions, inputs, voided, replayable = controls[:6]
                lot.compacted = compacted
                lot.paused_since, lot.paused_total, lot.extensions = paused_since, paused_total, extensions
                if not compacted:
                    lot.input_log = BidHistory.from_bytes(inputs)
                    lot.voided = list(voided)
                lot.replayable = bool(replayable)
            else:
                # A snapshot from before bid inputs were kept: the bids it holds cannot be replayed.
                lot.replayable = not bids
            lot.timers = book._timers
            book.lots[lid] = lot
            session.lot_ids.append(lid)
            if lot.state not in CLOSED_LOT_STATES:  # a closed lot's timer would only be skipped
                heapq.heappush(book._timers, (ends_at, _CLOSE_LOT, lid))
        for session in book.sessions.values():  # a snapshot from before they were let go
            book._release_depositors_if_settled(session)
        book.blocked = set(state["blocked"])
        return book


def closed_lots(events: list[Event]) -> list[LotClosed]:
    return [event for event in events if isinstance(event, LotClosed)]
