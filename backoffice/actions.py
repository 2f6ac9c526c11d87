"""Every admin write, authorized and audited in one place, for both surfaces (UI and REST).

A surface reads and validates its input (forms or JSON), names who is acting (`Actor`), and calls
one method here. The method checks the actor may do it (`authorize`: an admin, and an enrolled
second factor for the actions the policy names), makes the change through a port, and records
exactly one audit entry (`action`, `target`, `before`, `after`). A write that changes nothing
(a replayed credit) records nothing. Refusals are GavelErrors with stable codes, so each surface
turns them into its own answer (a 403 JSON body, or a message on the page).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from backoffice.ports import (
    AuditTrail,
    Balances,
    CatalogStore,
    Credited,
    Document,
    Office,
    SecondFactor,
    StaffAccountView,
    StaffDirectory,
    UserNoteStore,
)
from backoffice.roles import Role, action_area, can, effective_roles, mentor_only, parse_roles
from community.errors import TextRejected
from community.rules import REASON_MAX, clean_text
from engine.book.errors import GavelError, InvalidInput, NotFound
from engine.book.lot import Lot
from engine.commands import (
    BlockBidder,
    CancelLot,
    CloseLot,
    Command,
    ExtendLot,
    OpenLot,
    Outcome,
    PauseLot,
    PauseSession,
    ResumeLot,
    ResumeSession,
    UnblockBidder,
    VoidBid,
)
from engine.engine import Engine
from shop.degree_rules import EnrolmentEvent
from shop.degree_service import DegreeService

LotAction = Literal["open", "close", "cancel"]
ImageAction = Literal["add", "up", "down", "cover", "remove"]
CREDIT_KIND = "admin_credit"
CREDIT_REF_PREFIX = "admin-credit:"
NOTE_MAX = 2000  # a support note's characters


class NotAuthorized(GavelError):
    """The actor is not an admin (or lacks the second factor this action needs): 403."""

    code = "FORBIDDEN"


class LastOwner(GavelError):
    """The change would leave the business without an owner (nobody could manage staff): 409."""

    code = "LAST_OWNER"


class TwoFactorNeeded(GavelError):
    code = "FORBIDDEN"


class EngineRefused(GavelError):
    """The engine refused a lot command (an illegal move in its current state): 409."""

    code = "ILLEGAL_STATE"


class ReasonRequired(GavelError):
    """A live control (pause, extend, withdraw, void, block...) came without a reason: 400."""

    code = "REASON_REQUIRED"


class BadTime(GavelError):
    """An extension's new end is not later than the lot's end, or not in the future: 400."""

    code = "BAD_TIME"


class NonPayer(GavelError):
    """The bidder is blocked as a non-payer: only clearing the flag lets them bid again: 409."""

    code = "NON_PAYER"


CONTROL_REASON_MAX = 500  # characters, after cleaning


def control_reason(raw: object) -> str:
    """A live control's reason as stored (cleaned like community reasons), required, ≤ 500."""
    if raw is None:
        raise ReasonRequired("a reason is required")
    try:
        reason = clean_text(raw, max_length=CONTROL_REASON_MAX, what="reason", required=False)
    except TextRejected as error:
        raise InvalidInput(error.message) from None
    if not reason:
        raise ReasonRequired("a reason is required")
    return reason


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who asks, as the surface authenticated them, and from where (for the audit entry)."""

    user_id: int
    username: str
    is_admin: bool
    ip: str = ""
    surface: Literal["ui", "rest"] = "ui"
    # The staff roles (backoffice/roles.py) the surface read from the account; see docs/admin.md.
    roles: frozenset[str] = frozenset()


def live_lot(engine: Engine, lot_id: int) -> Document | None:
    """A lot's live state in the engine (what a lot command's audit entry shows before and after)."""
    lot = engine.book.lots.get(lot_id)
    return None if lot is None else lot_state(lot)


def lot_state(lot: Lot) -> Document:
    """The engine's state of one lot, as plain values (the audit entries' and the monitor's)."""
    return {
        "state": int(lot.state),
        "price": lot.price,
        "bid_count": lot.bid_count,
        "ends_at": lot.ends_at,
        "next_min": lot.next_min(),
        "leader": lot.leader,
        "paused": bool(lot.paused_since),
        "paused_since": lot.paused_since,
        "extensions": lot.extensions,
    }


class AdminActions:
    def __init__(
        self,
        *,
        audit: AuditTrail,
        catalog: CatalogStore,
        balances: Balances,
        engine: Engine,
        office: Office,
        second_factor: SecondFactor,
        session_view: Callable[[Document], Document],
        lot_view: Callable[[Document], Document],
        two_factor_actions: frozenset[str] = frozenset(),
    ) -> None:
        self.audit = audit
        self.catalog = catalog
        self.balances = balances
        self.engine = engine
        self.office = office
        self.second_factor = second_factor
        self.session_view = session_view
        self.lot_view = lot_view
        # Actions (e.g. "user.credit") only an admin with an enrolled second factor may take.
        self.two_factor_actions = two_factor_actions

    # -- the one check and the one record ------------------------------------------------------------
    async def authorize(self, actor: Actor, action: str) -> None:
        """An admin whose roles may write the action's area (backoffice/roles.py `action_area`; an
        action in no table is the owner's alone), with a second factor when the policy names it."""
        if not actor.is_admin:
            raise NotAuthorized("this needs an admin")
        area = action_area(action)
        if not can(effective_roles(actor.is_admin, actor.roles), area, write=True):
            raise NotAuthorized(f"{action} needs write access to {area or 'owner-only actions'}")
        if action in self.two_factor_actions and not await self.second_factor.enrolled(actor.user_id):
            raise TwoFactorNeeded(f"{action} needs an admin with two-factor sign-in turned on")

    async def record(
        self,
        actor: Actor | None,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        *,
        username: str = "",
        ip: str = "",
        reason: str = "",
    ) -> None:
        """One audit entry. Sign-in events (no admin yet) pass `actor=None`, the name tried and the
        address."""
        await self.audit.record(
            action=action,
            target=target,
            admin_user_id=actor.user_id if actor else None,
            admin_username=actor.username if actor else username,
            before=before,
            after=after,
            ip=actor.ip if actor else ip,
            reason=reason,
            surface=actor.surface if actor else "",
        )

    # -- sessions and lots -----------------------------------------------------------------------------
    async def create_session(self, actor: Actor, spec: Any) -> Document:
        await self.authorize(actor, "session.create")
        doc = await self.catalog.create_session(spec)
        await self.record(actor, "session.create", f"session:{doc['_id']}", None, self.session_view(doc))
        return doc

    async def update_session(self, actor: Actor, session_id: int, changes: Mapping[str, Any]) -> Document:
        await self.authorize(actor, "session.update")
        before = self.session_view(await self.catalog.session_document(session_id))
        doc = await self.catalog.update_session(session_id, changes)
        await self.record(actor, "session.update", f"session:{session_id}", before, self.session_view(doc))
        return doc

    async def set_session_cover(
        self, actor: Actor, session_id: int, url: str, file: Mapping[str, Any] | None = None
    ) -> Document:
        """Set (a stored upload's URL) or remove (`url=""`) a session's cover image."""
        await self.authorize(actor, "session.cover")
        old = await self.catalog.session_document(session_id)
        doc = await self.catalog.update_session(session_id, {"cover": url})
        after: Document = {"cover": url}
        if file is not None:
            after["file"] = dict(file)
        await self.record(
            actor, "session.cover", f"session:{session_id}", {"cover": old.get("cover", "")}, after
        )
        return doc

    async def create_lot(self, actor: Actor, session_id: int, spec: Any) -> Document:
        await self.authorize(actor, "lot.create")
        doc = await self.catalog.create_lot(session_id, spec)
        await self.record(actor, "lot.create", f"lot:{doc['_id']}", None, self.lot_view(doc))
        return doc

    async def update_lot(self, actor: Actor, lot_id: int, changes: Mapping[str, Any]) -> Document:
        await self.authorize(actor, "lot.update")
        before = self.lot_view(await self.catalog.lot_document(lot_id))
        doc = await self.catalog.update_lot(lot_id, changes)
        await self.record(actor, "lot.update", f"lot:{lot_id}", before, self.lot_view(doc))
        return doc

    async def set_lot_images(
        self,
        actor: Actor,
        lot_id: int,
        action: ImageAction,
        before: Sequence[str],
        images: Sequence[str],
        file: Mapping[str, Any] | None = None,
    ) -> Document:
        """Replace a lot's image list (`before` is what the surface changed, for the audit entry)."""
        name = f"lot.image_{action}"
        await self.authorize(actor, name)
        doc = await self.catalog.update_lot(lot_id, {"images": tuple(images)})
        after: Document = {"images": list(images)}
        if file is not None:
            after["file"] = dict(file)
        await self.record(actor, name, f"lot:{lot_id}", {"images": list(before)}, after)
        return doc

    async def lot_command(self, actor: Actor, lot_id: int, action: LotAction, reason: str = "") -> Outcome:
        """Open or close a lot early, or cancel it with a reason: the engine decides if it is legal."""
        name = f"lot.{action}"
        await self.authorize(actor, name)
        if lot_id not in self.engine.book.lots:
            raise NotFound(f"no lot {lot_id}")
        command: Command
        if action == "cancel":
            command = CancelLot(lot_id, reason)
        elif action == "open":
            command = OpenLot(lot_id)
        else:
            command = CloseLot(lot_id)
        before = live_lot(self.engine, lot_id)
        outcome = await self.engine.execute(command)
        if outcome.ok:
            after = live_lot(self.engine, lot_id)
            await self.record(
                actor, name, f"lot:{lot_id}", before, {**(after or {}), "reason": reason}, reason=reason
            )
        return outcome

    # -- live controls (docs/engine.md "Admin controls") ----------------------------------------------
    async def _lot_control(
        self, actor: Actor, action: str, lot_id: int, command: Command, reason: str
    ) -> Document:
        """Send one control to the engine; one audit entry with the live lot before and after."""
        before = live_lot(self.engine, lot_id)
        outcome = await self.engine.execute(command)
        if not outcome.ok:
            raise EngineRefused(outcome.message or "the engine refused", code=_refusal_code(outcome))
        after = live_lot(self.engine, lot_id) or {}
        await self.record(actor, action, f"lot:{lot_id}", before, after, reason=reason)
        return after

    async def _checked(self, actor: Actor, action: str, lot_id: int, raw_reason: object) -> str:
        await self.authorize(actor, action)
        reason = control_reason(raw_reason)
        if lot_id not in self.engine.book.lots:
            raise NotFound(f"no lot {lot_id}")
        return reason

    async def lot_pause(self, actor: Actor, lot_id: int, reason: str) -> Document:
        reason = await self._checked(actor, "lot.pause", lot_id, reason)
        return await self._lot_control(actor, "lot.pause", lot_id, PauseLot(lot_id, reason), reason)

    async def lot_resume(self, actor: Actor, lot_id: int, reason: str) -> Document:
        reason = await self._checked(actor, "lot.resume", lot_id, reason)
        return await self._lot_control(actor, "lot.resume", lot_id, ResumeLot(lot_id), reason)

    async def lot_extend(self, actor: Actor, lot_id: int, ends_at_ms: int, reason: str) -> Document:
        reason = await self._checked(actor, "lot.extend", lot_id, reason)
        lot = self.engine.book.lots[lot_id]
        if ends_at_ms <= lot.ends_at or ends_at_ms <= self.engine.clock.now_ms():
            raise BadTime("the new end must be later than the lot's current end and in the future")
        return await self._lot_control(actor, "lot.extend", lot_id, ExtendLot(lot_id, ends_at_ms), reason)

    async def lot_withdraw(self, actor: Actor, lot_id: int, reason: str) -> Document:
        """Close the lot unsold (before or during bidding); settlement refunds every deposit on it."""
        reason = await self._checked(actor, "lot.withdraw", lot_id, reason)
        return await self._lot_control(actor, "lot.withdraw", lot_id, CancelLot(lot_id, reason), reason)

    async def bid_void(self, actor: Actor, lot_id: int, bid_index: int, reason: str) -> Document:
        reason = await self._checked(actor, "bid.void", lot_id, reason)
        inputs = self.engine.book.lots[lot_id].input_log
        if not 0 <= bid_index < len(inputs):
            raise NotFound(f"lot {lot_id} has no bid {bid_index}")
        bidder, amount, at, is_max = inputs.line(bid_index)
        before = live_lot(self.engine, lot_id)
        outcome = await self.engine.execute(VoidBid(lot_id, bid_index, reason))
        if not outcome.ok:
            raise EngineRefused(outcome.message or "the engine refused", code=_refusal_code(outcome))
        after = live_lot(self.engine, lot_id) or {}
        voided = {"bid_index": bid_index, "bidder": bidder, "amount": amount, "is_max": is_max, "at": at}
        await self.record(
            actor, "bid.void", f"lot:{lot_id}", before, {**after, "voided": voided}, reason=reason
        )
        return after

    def _session_lots(self, session_id: int) -> Document:
        session = self.engine.book.sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        return {
            "session_id": session_id,
            "lots": [live_lot(self.engine, lot_id) for lot_id in session.lot_ids],
        }

    async def _session_control(
        self, actor: Actor, action: str, session_id: int, raw_reason: object, pause: bool
    ) -> Document:
        await self.authorize(actor, action)
        reason = control_reason(raw_reason)
        before = self._session_lots(session_id)
        command: Command = PauseSession(session_id, reason) if pause else ResumeSession(session_id)
        outcome = await self.engine.execute(command)
        if not outcome.ok:
            raise EngineRefused(outcome.message or "the engine refused", code=_refusal_code(outcome))
        after = self._session_lots(session_id)
        await self.record(actor, action, f"session:{session_id}", before, after, reason=reason)
        return after

    async def session_pause(self, actor: Actor, session_id: int, reason: str) -> Document:
        """Pause every lot of the session that is bidding now."""
        return await self._session_control(actor, "session.pause", session_id, reason, True)

    async def session_resume(self, actor: Actor, session_id: int, reason: str) -> Document:
        """Resume every paused lot of the session (each gets back the time it was held)."""
        return await self._session_control(actor, "session.resume", session_id, reason, False)

    async def bidder_block(self, actor: Actor, user_id: int, reason: str) -> Document:
        """Refuse the user's bids (BLOCKED) on every lot until unblocked."""
        await self.authorize(actor, "bidder.block")
        reason = control_reason(reason)
        before = {"user_id": user_id, "blocked": user_id in self.engine.book.blocked}
        outcome = await self.engine.execute(BlockBidder(user_id))
        if not outcome.ok:
            raise EngineRefused(outcome.message or "the engine refused", code=_refusal_code(outcome))
        after: Document = {"user_id": user_id, "blocked": True}
        await self.record(actor, "bidder.block", f"user:{user_id}", before, after, reason=reason)
        return after

    async def bidder_unblock(self, actor: Actor, user_id: int, reason: str) -> Document:
        """Let the user bid again. A flagged non-payer stays blocked: settlement's rule is that
        only clearing the flag (`clear_non_payer`, which also unblocks) lets them bid again."""
        await self.authorize(actor, "bidder.unblock")
        reason = control_reason(reason)
        if (await self.office.non_payer_state(user_id)).get("non_payer"):
            raise NonPayer("this bidder is blocked as a non-payer: clear the non-payer flag instead")
        before = {"user_id": user_id, "blocked": user_id in self.engine.book.blocked}
        outcome = await self.engine.execute(UnblockBidder(user_id))
        if not outcome.ok:
            raise EngineRefused(outcome.message or "the engine refused", code=_refusal_code(outcome))
        after: Document = {"user_id": user_id, "blocked": False}
        await self.record(actor, "bidder.unblock", f"user:{user_id}", before, after, reason=reason)
        return after

    # -- money -------------------------------------------------------------------------------------------
    async def credit(
        self, actor: Actor, user_id: int, amount: int, idempotency_key: str, note: str = ""
    ) -> Any:
        """Top up a balance (ledger and balance in one transaction); a replayed key changes nothing
        and records nothing. Returns the ledger entry."""
        await self.authorize(actor, "user.credit")
        entry: Credited = await self.balances.credit(
            user_id, amount, CREDIT_KIND, CREDIT_REF_PREFIX + idempotency_key
        )
        if not entry.replayed:
            await self.record(
                actor,
                "user.credit",
                f"user:{user_id}",
                {"balance": entry.balance_after - amount},
                {"balance": entry.balance_after, "amount": amount, "ref": entry.ref, "note": note},
                reason=note,
            )
        return entry

    async def clear_non_payer(self, actor: Actor, user_id: int) -> bool:
        await self.authorize(actor, "user.clear_non_payer")
        before = await self.office.non_payer_state(user_id)
        changed = await self.office.clear_non_payer(user_id)
        await self.record(
            actor, "user.clear_non_payer", f"user:{user_id}", before, {"non_payer": False, "changed": changed}
        )
        return changed

    # == support notes on a user (issue 24) ============================================================
    # The notes store (persistence/user_notes.py), set by composition/backoffice.py; None: unavailable.
    notes: UserNoteStore | None = None

    async def user_note(self, actor: Actor, user_id: int, text: str) -> Document:
        """Add a support note to a user's page (area `notes`): `user.note`, the note as the entry's
        `after` (a note is only ever added, so there is no `before`)."""
        await self.authorize(actor, "user.note")
        if self.notes is None:
            raise GavelError("support notes are not wired into this application", code="UNAVAILABLE")
        cleaned = clean_text(text, max_length=NOTE_MAX, what="note")
        note = await self.notes.add(user_id, cleaned, actor.user_id, actor.username)
        await self.record(actor, "user.note", f"user:{user_id}", None, {"text": cleaned})
        return note

    async def order_action(
        self, actor: Actor, order_id: int, action: Literal["ship", "complete"], tracking_no: str | None = None
    ) -> Document:
        name = f"order.{action}"
        await self.authorize(actor, name)
        before = await self.office.order(order_id)
        if action == "ship":
            after = await self.office.ship(order_id, tracking_no)
        else:
            after = await self.office.complete(order_id)
        fields = ("status", "shipped_at_ms", "tracking_no", "completed_at_ms")
        await self.record(
            actor,
            name,
            f"order:{order_id}",
            {k: before.get(k) for k in fields} if before else None,
            {k: after.get(k) for k in fields},
        )
        return after

    # -- coupons, courses, policies ------------------------------------------------------------------
    async def create_auction_coupon(
        self,
        actor: Actor,
        session_id: int,
        title: str,
        amount: int,
        quantity: int,
        start_ms: int,
        end_ms: int,
    ) -> Document:
        await self.authorize(actor, "coupon.create")
        doc = await self.office.create_auction_coupon(session_id, title, amount, quantity, start_ms, end_ms)
        await self.record(actor, "coupon.create", f"coupon:{doc['_id']}", None, doc)
        return doc

    async def create_course_coupon(self, actor: Actor, fields: Document) -> Document:
        await self.authorize(actor, "shop_coupon.create")
        doc = await self.office.create_course_coupon(fields)
        await self.record(actor, "shop_coupon.create", f"shop_coupon:{doc['_id']}", None, doc)
        return doc

    async def grant_course_coupon(
        self, actor: Actor, coupon_id: int, user_id: int, idempotency_key: str | None
    ) -> Any:
        await self.authorize(actor, "shop_coupon.grant")
        granted = await self.office.grant_course_coupon(coupon_id, user_id, idempotency_key=idempotency_key)
        await self.record(
            actor,
            "shop_coupon.grant",
            f"shop_coupon:{coupon_id}",
            None,
            {"user_id": user_id, "user_coupon": granted},
        )
        return granted

    async def create_category(self, actor: Actor, name: str, parent_id: int | None) -> Document:
        await self.authorize(actor, "shop_category.create")
        doc = await self.office.create_category(name, parent_id)
        await self.record(actor, "shop_category.create", f"shop_category:{doc['_id']}", None, doc)
        return doc

    async def create_course(self, actor: Actor, fields: Document) -> Document:
        await self.authorize(actor, "course.create")
        doc = await self.office.create_course(fields)
        await self.record(actor, "course.create", f"course:{doc['_id']}", None, doc)
        return doc

    async def set_course_status(self, actor: Actor, course_id: int, status: str) -> None:
        await self.authorize(actor, "course.status")
        before = await self.office.course_status(course_id)
        await self.office.set_course_status(course_id, status)
        await self.record(
            actor, "course.status", f"course:{course_id}", {"status": before}, {"status": status}
        )

    async def set_degree_status(self, actor: Actor, degree_course_id: int, status: str) -> Document:
        await self.authorize(actor, "degree_course.status")
        before = await self.office.degree_status(degree_course_id)
        after: Document = await self.office.set_degree_status(degree_course_id, status)
        await self.record(
            actor,
            "degree_course.status",
            f"degree_course:{degree_course_id}",
            {"status": before},
            {"status": status},
        )
        return after

    async def add_policy(self, actor: Actor, course_id: int, valid_days: int, price: int) -> Document:
        await self.authorize(actor, "price_policy.create")
        doc = await self.office.add_policy("course", course_id, valid_days, price)
        await self.record(actor, "price_policy.create", f"price_policy:{doc['_id']}", None, doc)
        return doc

    async def remove_policy(self, actor: Actor, policy_id: int) -> None:
        await self.authorize(actor, "price_policy.remove")
        before = await self.office.policy(policy_id)
        await self.office.remove_policy(policy_id)
        await self.record(actor, "price_policy.remove", f"price_policy:{policy_id}", before, None)

    async def decide_shop_refund(
        self, actor: Actor, order_no: str, decision: Literal["approve", "reject"], reason: str = ""
    ) -> Document:
        """Approve (balance part back, provider part refunded, enrolments ended) or reject (back to
        paid) a student's refund request; the shop service makes it idempotent. A repeat that
        changes nothing records nothing."""
        name = f"shop_refund.{decision}"
        await self.authorize(actor, name)
        before = await self.office.shop_order(order_no)
        if decision == "approve":
            after, changed = await self.office.approve_shop_refund(order_no, reason)
        else:
            after, changed = await self.office.reject_shop_refund(order_no, reason)
        if changed:
            fields = ("status", "refund")
            await self.record(
                actor,
                name,
                f"shop_order:{order_no}",
                {k: before.get(k) for k in fields} if before else None,
                {**{k: after.get(k) for k in fields}, "reason": reason},
                reason=reason,
            )
        return after

    # -- reviews and FAQs (shop/reviews.py, shop/community.py) ---------------------------------------
    async def moderate_review(self, actor: Actor, review_id: int, action: str) -> Document:
        """hide / show / recommend / unrecommend; the same again changes (and records) nothing."""
        name = f"review.{action}"
        await self.authorize(actor, name)
        before, after = await self.office.moderate_review(review_id, action)
        flags = ("hidden", "recommended")
        if any(before.get(f) != after.get(f) for f in flags):
            await self.record(
                actor,
                name,
                f"review:{review_id}",
                {f: before.get(f) for f in flags},
                {f: after.get(f) for f in flags},
            )
        return after

    async def add_faq(
        self, actor: Actor, target: str, target_id: int, question: str, answer: str
    ) -> Document:
        await self.authorize(actor, "faq.create")
        doc = await self.office.add_faq(target, target_id, question, answer)
        await self.record(actor, "faq.create", f"faq:{doc['_id']}", None, doc)
        return doc

    async def update_faq(self, actor: Actor, faq_id: int, question: str, answer: str) -> Document:
        await self.authorize(actor, "faq.update")
        before = await self.office.faq(faq_id)
        doc = await self.office.update_faq(faq_id, question, answer)
        await self.record(actor, "faq.update", f"faq:{faq_id}", before, doc)
        return doc

    async def delete_faq(self, actor: Actor, faq_id: int) -> None:
        await self.authorize(actor, "faq.delete")
        before = await self.office.faq(faq_id)
        await self.office.delete_faq(faq_id)
        await self.record(actor, "faq.delete", f"faq:{faq_id}", before, None)

    # == degree path: student side (issue 22) ====================================================
    # The degree service (shop/degree_service.py), set by composition/backoffice.py; None: unavailable.
    degree: DegreeService | None = None

    def _degree_desk(self) -> DegreeService:
        if self.degree is None:
            raise GavelError("the degree service is not wired into this application", code="UNAVAILABLE")
        return self.degree

    async def degree_add_homework(self, actor: Actor, fields: Mapping[str, Any]) -> Document:
        await self.authorize(actor, "degree.homework_create")
        doc = await self._degree_desk().add_homework(fields)
        await self.record(actor, "degree.homework_create", f"homework:{doc['_id']}", None, doc)
        return doc

    async def degree_update_homework(
        self, actor: Actor, homework_id: int, changes: Mapping[str, Any]
    ) -> Document:
        await self.authorize(actor, "degree.homework_update")
        desk = self._degree_desk()
        before = await desk.homework_item(homework_id)
        after = await desk.update_homework(homework_id, changes)
        await self.record(actor, "degree.homework_update", f"homework:{homework_id}", before, after)
        return after

    async def degree_open_module(self, actor: Actor, enrolment_id: str, module_id: int) -> Document:
        """Open any module that is not open (an admin may skip the order)."""
        await self.authorize(actor, "degree.open_module")
        after = await self._degree_desk().open_module(enrolment_id, module_id, by_admin=True)
        await self.record(
            actor,
            "degree.open_module",
            f"degree_enrolment:{enrolment_id}",
            None,
            {"module_id": module_id, "status": after.get("status")},
        )
        return after

    async def degree_change_status(self, actor: Actor, enrolment_id: str, event: str) -> Document:
        """suspend / resume (degree_rules.TRANSITIONS)."""
        name = f"degree.{event}"
        await self.authorize(actor, name)
        desk = self._degree_desk()
        after = await desk.change_status(enrolment_id, EnrolmentEvent(event))
        target = f"degree_enrolment:{enrolment_id}"
        await self.record(actor, name, target, None, {"status": after.get("status")})
        return after

    # == degree path: mentors (issue 22) — the service is shop/degree_mentoring.MentorService, set by
    # the composition (composition/backoffice.py) or by gateway/rest_mentor.build_mentoring.
    mentoring: Any = None

    async def degree_grant_mentor(self, actor: Actor, user_id: int, name: str, intro: str) -> Document:
        await self.authorize(actor, "degree.mentor_grant")
        before = await self.mentoring.store.mentor(user_id)
        doc: Document = await self.mentoring.grant_mentor(user_id, name, intro)
        await self._sync_mentor_role(user_id, mentor=True)
        await self.record(actor, "degree.mentor_grant", f"user:{user_id}", before, doc)
        return doc

    async def degree_revoke_mentor(self, actor: Actor, user_id: int) -> Document:
        await self.authorize(actor, "degree.mentor_revoke")
        doc: Document = await self.mentoring.revoke_mentor(user_id)
        await self._sync_mentor_role(user_id, mentor=False)
        await self.record(actor, "degree.mentor_revoke", f"user:{user_id}", None, doc)
        return doc

    async def degree_assign_mentor(self, actor: Actor, enrolment_id: str, mentor_id: int) -> Document:
        await self.authorize(actor, "degree.mentor_assign")
        before = await self.mentoring.store.enrolment(enrolment_id)
        doc: Document = await self.mentoring.assign_mentor(enrolment_id, mentor_id)
        await self.record(
            actor,
            "degree.mentor_assign",
            f"degree_enrolment:{enrolment_id}",
            {"mentor_id": before.get("mentor_id") if before else None},
            {"mentor_id": mentor_id},
        )
        return doc

    async def degree_grade(
        self, actor: Actor, record_id: int, submission: int, grade: str, comment: str = ""
    ) -> Document:
        """Grade a hand-in from the back office (`degree.grade`, area mentoring): a mentor only their
        own students' (the mentoring service checks), an owner or course manager any record."""
        await self.authorize(actor, "degree.grade")
        over_every_mentor = not mentor_only(effective_roles(actor.is_admin, actor.roles))
        before: Document | None = await self.mentoring.store.record(record_id)
        doc: Document = await self.mentoring.grade(
            actor.user_id, record_id, submission, grade, comment, by_admin=over_every_mentor
        )
        fields = ("status", "grade", "reward_status", "graded_submission")
        if before is None or any(before.get(k) != doc.get(k) for k in fields):
            await self.record(
                actor,
                "degree.grade",
                f"homework_record:{record_id}",
                {k: before.get(k) for k in fields} if before else None,
                {**{k: doc.get(k) for k in fields}, "submission": submission, "comment": comment},
            )
        return doc

    async def degree_sweep(self, actor: Actor) -> Document:
        await self.authorize(actor, "degree.sweep")
        counts: Document = await self.mentoring.sweep(self.mentoring.now())
        await self.record(actor, "degree.sweep", "degree_enrolments", None, counts)
        return counts

    # == staff and their roles (issue 24) ===========================================================
    # persistence.accounts.Accounts, set by composition/backoffice.py; None: unavailable.
    staff: StaffDirectory | None = None

    def _staff_desk(self) -> StaffDirectory:
        if self.staff is None:
            raise GavelError("the staff directory is not wired into this application", code="UNAVAILABLE")
        return self.staff

    async def staff_set_roles(
        self, actor: Actor, user_id: int, roles: Sequence[str], reason: str = ""
    ) -> StaffAccountView:
        """Give an account exactly `roles` (none: no longer staff). Refuses to leave no owner
        (`LAST_OWNER`); an unchanged list records nothing."""
        await self.authorize(actor, "staff.roles")
        reason = clean_text(reason, max_length=REASON_MAX, what="reason", required=False)
        wanted = sorted(parse_roles(roles))
        if len(wanted) != len(set(roles)):
            raise GavelError("unknown role; roles are " + ", ".join(r.value for r in Role), code="VALIDATION")
        desk = self._staff_desk()
        before = await desk.staff_account(user_id)
        held = sorted(effective_roles(before.is_admin, before.roles))
        if held == wanted and list(before.roles) == [r.value for r in wanted]:
            return before
        if Role.OWNER in held and Role.OWNER not in wanted:
            owners = [
                m
                for m in await desk.staff_members()
                if Role.OWNER in effective_roles(m.is_admin, m.roles) and m.user_id != user_id
            ]
            if not owners:
                raise LastOwner("the last owner keeps the owner role; make someone else an owner first")
        after = await desk.set_staff_roles(user_id, [r.value for r in wanted])
        await self.record(
            actor,
            "staff.roles",
            f"user:{user_id}",
            {"username": before.username, "roles": [r.value for r in held]},
            {"username": after.username, "roles": list(after.roles)},
            reason=reason,
        )
        return after

    async def _sync_mentor_role(self, user_id: int, *, mentor: bool) -> None:
        """A degree mentor signs in to the back office with the `mentor` staff role (their own
        students' homework); revoking the mentor takes that role away, and nothing else."""
        if self.staff is None:
            return
        account = await self.staff.staff_account(user_id)
        held = set(account.roles) if account.roles or not account.is_admin else {Role.OWNER.value}
        changed = held | {Role.MENTOR.value} if mentor else held - {Role.MENTOR.value}
        if changed != held:
            await self.staff.set_staff_roles(user_id, sorted(changed))

    # -- the admin's own account ---------------------------------------------------------------------
    async def two_factor_changed(self, actor: Actor, enabled: bool) -> None:
        """Recorded after persistence.two_factor confirmed or turned off the actor's own second factor."""
        await self.authorize(actor, "auth.two_factor")
        action = "auth.two_factor_enabled" if enabled else "auth.two_factor_disabled"
        await self.record(actor, action, f"user:{actor.user_id}")

    # == community: moderation (issue 23) ==========================================================
    # community.moderation.ModerationService, set by composition/backoffice.py (gateway/rest_moderation.py
    # moderation_of); None: unavailable. Every method names its reason in the audit entry's `after`.
    # Hiding, showing and deleting posts and comments go through `community_moderate` only: it also
    # closes the content's open reports, so the queue never holds a decided case.
    moderation: Any = None

    def _moderation_desk(self) -> Any:
        if self.moderation is None:
            raise GavelError(
                "the community's moderation is not wired into this application", code="UNAVAILABLE"
            )
        return self.moderation

    async def community_resolve_report(
        self, actor: Actor, report_id: int, action: str, reason: str
    ) -> Document:
        """Hide / delete the reported content or dismiss: every open report of its target is closed.
        A repeat that closes nothing and changes nothing records nothing."""
        await self.authorize(actor, "community.report_resolve")
        outcome = await self._moderation_desk().resolve(report_id, action, reason, actor.user_id)
        answer: Document = outcome.as_dict()
        if outcome.changed or outcome.reports:
            before = {"content": answer.pop("content")}
            await self.record(
                actor, "community.report_resolve", f"report:{report_id}", before, answer, reason=reason
            )
        answer.pop("content", None)
        return answer

    async def community_moderate(
        self, actor: Actor, kind: str, content_id: int, action: str, reason: str
    ) -> Document:
        """An admin's hide / unhide / delete of a post or comment (`community.post_hide`, ...)."""
        name = f"community.{kind}_{action}"
        await self.authorize(actor, name)
        outcome = await self._moderation_desk().moderate(kind, content_id, action, reason, actor.user_id)
        answer: Document = outcome.as_dict()
        before = {"content": answer.pop("content")}
        if outcome.changed or outcome.reports:
            await self.record(actor, name, f"{kind}:{content_id}", before, answer, reason=reason)
        return answer

    async def community_block(self, actor: Actor, user_id: int, reason: str, days: int | None) -> Document:
        await self.authorize(actor, "community.block")
        before, block = await self._moderation_desk().block(user_id, reason, days, actor.user_id)
        after = {"until": block["until"], "reason": block["reason"], "days": days}
        previous = None if before is None else {"until": before.get("until"), "reason": before.get("reason")}
        await self.record(
            actor, "community.block", f"user:{user_id}", previous, after, reason=block["reason"]
        )
        block_doc: Document = block
        return block_doc

    async def community_unblock(self, actor: Actor, user_id: int, reason: str = "") -> bool:
        """Lift a block; nothing to lift records nothing."""
        await self.authorize(actor, "community.unblock")
        removed = await self._moderation_desk().unblock(user_id)
        if removed is not None:
            before = {"until": removed.get("until"), "reason": removed.get("reason")}
            await self.record(
                actor, "community.unblock", f"user:{user_id}", before, {"reason": reason}, reason=reason
            )
        return removed is not None

    async def community_erase(self, actor: Actor, user_id: int, reason: str) -> dict[str, int]:
        """Erase a user's community data on request (privacy): one action, counts in the audit entry.
        Needs the second factor when the policy names `community.erase` (two_factor_actions)."""
        await self.authorize(actor, "community.erase")
        desk = self._moderation_desk()
        cleaned = desk.reason_of(reason)  # refused before anything goes
        counts: dict[str, int] = await desk.erase_user(user_id, actor.user_id)
        await self.record(
            actor, "community.erase", f"user:{user_id}", None, {**counts, "reason": cleaned}, reason=cleaned
        )
        return counts

    # == community: reactions (issue 23) =========================================================
    # The ReactionService (community/reactions.py), set by composition/backoffice.py.
    reactions: Any = None

    def _reactions_desk(self) -> Any:
        if self.reactions is None:
            raise GavelError("the reactions service is not wired into this application", code="UNAVAILABLE")
        return self.reactions

    async def community_repair(
        self, actor: Actor, *, dry_run: bool = False, reason: str = ""
    ) -> dict[str, int]:
        """Recompute every community counter from its records: community.repair (always recorded:
        what was wrong is the finding, even when nothing is)."""
        await self.authorize(actor, "community.repair")
        reason = clean_text(reason, max_length=REASON_MAX, what="reason", required=False)
        wrong: dict[str, int] = await self._reactions_desk().repair(dry_run)
        after = {"dry_run": dry_run, "wrong": wrong, "reason": reason}
        await self.record(actor, "community.repair", "community_counters", None, after, reason=reason)
        return wrong

    # == community: feed (issue 23) ====================================================================
    # The feed's FeedService (community/feed.py), set by composition/backoffice.py; None: unavailable.
    feed: Any = None

    def _feed_desk(self) -> Any:
        if self.feed is None:
            raise GavelError("the community feed is not wired into this application", code="UNAVAILABLE")
        return self.feed

    async def community_topic_create(self, actor: Actor, title: object, intro: object = "") -> Document:
        await self.authorize(actor, "community.topic_create")
        doc: Document = await self._feed_desk().create_topic(title, intro)
        after = {"title": doc["title"], "intro": doc.get("intro", "")}
        await self.record(actor, "community.topic_create", f"topic:{doc['_id']}", None, after)
        return doc

    async def community_topic_update(
        self, actor: Actor, topic_id: int, changes: Mapping[str, Any]
    ) -> Document:
        await self.authorize(actor, "community.topic_update")
        before, after = await self._feed_desk().update_topic(topic_id, dict(changes))
        keys = ("title", "intro", "hidden")
        await self.record(
            actor,
            "community.topic_update",
            f"topic:{topic_id}",
            {k: before.get(k) for k in keys},
            {k: after.get(k) for k in keys},
        )
        doc: Document = after
        return doc

    # == community: articles (issue 23) ==============================================================
    # The articles' ArticleService (community/articles.py), set by composition/backoffice.py (or by
    # gateway/rest_articles.articles_of); None: unavailable. Audit entries carry the changed fields.
    articles: Any = None

    def _articles_desk(self) -> Any:
        if self.articles is None:
            raise GavelError("the article service is not wired into this application", code="UNAVAILABLE")
        return self.articles

    @staticmethod
    def _article_audit(doc: Document, names: Sequence[str] | None = None) -> Document:
        """The fields an audit entry shows: long text cut, the rendered HTML left out."""
        shown: Document = {}
        for name, value in doc.items():
            if name == "body_html" or (names is not None and name not in names):
                continue
            shown[name] = value[:2000] if isinstance(value, str) else value
        return shown

    async def article_create(
        self, actor: Actor, fields: Mapping[str, Any], *, publish: bool = False
    ) -> Document:
        await self.authorize(actor, "article.create")
        doc: Document = await self._articles_desk().create(fields, publish=publish)
        await self.record(actor, "article.create", f"article:{doc['_id']}", None, self._article_audit(doc))
        return doc

    async def article_update(self, actor: Actor, article_id: int, fields: Mapping[str, Any]) -> Document:
        await self.authorize(actor, "article.update")
        before, after = await self._articles_desk().update(article_id, fields)
        changed = [name for name in after if name != "updated_at" and before.get(name) != after.get(name)]
        await self.record(
            actor,
            "article.update",
            f"article:{article_id}",
            self._article_audit(before, changed),
            self._article_audit(after, changed),
        )
        doc: Document = after
        return doc

    async def article_publish(self, actor: Actor, article_id: int) -> Document:
        return await self._article_status(actor, article_id, "publish")

    async def article_withdraw(self, actor: Actor, article_id: int) -> Document:
        return await self._article_status(actor, article_id, "withdraw")

    async def _article_status(self, actor: Actor, article_id: int, verb: str) -> Document:
        await self.authorize(actor, f"article.{verb}")
        desk = self._articles_desk()
        before, after = await (desk.publish(article_id) if verb == "publish" else desk.withdraw(article_id))
        if before.get("status") != after.get("status"):  # publishing a published article changes nothing
            await self.record(
                actor,
                f"article.{verb}",
                f"article:{article_id}",
                {"status": before.get("status")},
                {"status": after.get("status")},
            )
        doc: Document = after
        return doc

    async def article_set_head_image(self, actor: Actor, article_id: int, url: str) -> Document:
        await self.authorize(actor, "article.update")
        before, after = await self._articles_desk().set_head_image(article_id, url)
        await self.record(
            actor,
            "article.update",
            f"article:{article_id}",
            {"head_img": before.get("head_img", "")},
            {"head_img": after.get("head_img", "")},
        )
        doc: Document = after
        return doc

    async def article_source_create(self, actor: Actor, name: object) -> Document:
        await self.authorize(actor, "article_source.create")
        doc: Document = await self._articles_desk().create_source(name)
        await self.record(actor, "article_source.create", f"article_source:{doc['_id']}", None, doc)
        return doc

    # -- exports (issue 24): a read, but personal data left the building, so it is on the record ------
    async def export_allowed(self, actor: Actor, kind: str) -> None:
        """Before the first row: may this actor take this export at all. An export is a read, so it
        needs read access to `exports` (backoffice/roles.py: `export.*`), not the write `authorize`
        asks of every other action; the surface checks the data's own area (e.g. `orders`)."""
        if not actor.is_admin:
            raise NotAuthorized("this needs an admin")
        area = action_area(f"export.{kind}")
        if not can(effective_roles(actor.is_admin, actor.roles), area):
            raise NotAuthorized(f"export.{kind} needs read access to {area or 'owner-only actions'}")

    async def export_done(
        self, actor: Actor, kind: str, filters: Mapping[str, str], rows: int, *, complete: bool = True
    ) -> None:
        """One audit entry per export, after its last row: the filters asked for and the rows sent
        (`complete` False when the download was cut off part way)."""
        await self.record(
            actor,
            f"export.{kind}",
            f"export:{kind}",
            None,
            {"filters": dict(filters), "rows": rows, "complete": complete},
        )


def _refusal_code(outcome: Outcome) -> str:
    """An engine refusal of a control is about the current state (409 ILLEGAL_STATE), unless the
    engine could not answer at all (UNAVAILABLE: 503)."""
    return "UNAVAILABLE" if outcome.code == "UNAVAILABLE" else "ILLEGAL_STATE"
