"""The admin-actions service on fakes: it authorizes before writing and audits once per change."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import pytest

from backoffice.actions import Actor, AdminActions, NotAuthorized, TwoFactorNeeded
from engine.engine import Engine

ADMIN = Actor(1, "root", True, "10.0.0.1", "rest")
BIDDER = Actor(2, "bob", False, "10.0.0.2", "rest")


@dataclasses.dataclass
class Entry:
    balance_after: int
    ref: str
    replayed: bool


class Fakes:
    def __init__(self) -> None:
        self.audit: list[dict[str, Any]] = []
        self.balance = 0
        self.refs: set[str] = set()
        self.enrolled: set[int] = set()
        self.sessions: dict[int, dict[str, Any]] = {}

    async def record(self, **entry: Any) -> dict[str, Any]:
        self.audit.append(entry)
        return entry

    async def credit(self, user_id: int, amount: int, kind: str, ref: str) -> Entry:
        if ref in self.refs:
            return Entry(self.balance, ref, True)
        self.refs.add(ref)
        self.balance += amount
        return Entry(self.balance, ref, False)

    async def enrolled_check(self, user_id: int) -> bool:
        return user_id in self.enrolled

    async def create_session(self, spec: Any) -> dict[str, Any]:
        doc = {"_id": len(self.sessions) + 1, "title": spec}
        self.sessions[doc["_id"]] = doc
        return doc

    async def session_document(self, session_id: int) -> dict[str, Any]:
        return dict(self.sessions[session_id])

    async def update_session(self, session_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        self.sessions[session_id].update(changes)
        return dict(self.sessions[session_id])


def service(fakes: Fakes, two_factor_actions: frozenset[str] = frozenset()) -> AdminActions:
    class Ports:
        record = fakes.record
        credit = fakes.credit
        enrolled = fakes.enrolled_check
        create_session = fakes.create_session
        session_document = fakes.session_document
        update_session = fakes.update_session

    ports: Any = Ports()
    return AdminActions(
        audit=ports,
        catalog=ports,
        balances=ports,
        engine=cast(Engine, None),
        office=ports,
        second_factor=ports,
        session_view=lambda doc: {"id": doc["_id"], "title": doc["title"]},
        lot_view=dict,
        two_factor_actions=two_factor_actions,
    )


def test_a_non_admin_is_refused_before_anything_changes() -> None:
    fakes = Fakes()
    with pytest.raises(NotAuthorized):
        asyncio.run(service(fakes).credit(BIDDER, 7, 100, "k"))
    assert fakes.balance == 0 and fakes.audit == []


def test_one_entry_per_change_and_none_for_a_replay() -> None:
    fakes = Fakes()
    actions = service(fakes)
    asyncio.run(actions.credit(ADMIN, 7, 100, "k", "goodwill"))
    asyncio.run(actions.credit(ADMIN, 7, 100, "k", "goodwill"))
    assert fakes.balance == 100
    assert [(e["action"], e["target"], e["admin_username"], e["ip"]) for e in fakes.audit] == [
        ("user.credit", "user:7", "root", "10.0.0.1")
    ]
    assert fakes.audit[0]["before"] == {"balance": 0} and fakes.audit[0]["after"]["ref"] == "admin-credit:k"
    asyncio.run(actions.create_session(ADMIN, "Jade"))
    asyncio.run(actions.update_session(ADMIN, 1, {"title": "Jade II"}))
    assert [(e["action"], e["before"], e["after"]) for e in fakes.audit[1:]] == [
        ("session.create", None, {"id": 1, "title": "Jade"}),
        ("session.update", {"id": 1, "title": "Jade"}, {"id": 1, "title": "Jade II"}),
    ]


def test_actions_the_policy_names_need_an_enrolled_second_factor() -> None:
    fakes = Fakes()
    actions = service(fakes, frozenset({"user.credit"}))
    with pytest.raises(TwoFactorNeeded):
        asyncio.run(actions.credit(ADMIN, 7, 100, "k"))
    asyncio.run(actions.create_session(ADMIN, "Jade"))  # not named: no second factor needed
    fakes.enrolled.add(ADMIN.user_id)
    asyncio.run(actions.credit(ADMIN, 7, 100, "k"))
    assert fakes.balance == 100 and [e["action"] for e in fakes.audit] == ["session.create", "user.credit"]


def test_a_shop_refund_decision_is_audited_once_per_change() -> None:
    fakes = Fakes()
    orders = {"7": {"status": "refund_requested", "refund": {"status": "requested"}}}

    class Ports:
        record = fakes.record

        async def shop_order(self, order_no: str) -> dict[str, Any]:
            return dict(orders[order_no])

        async def approve_shop_refund(self, order_no: str, reason: str) -> tuple[dict[str, Any], bool]:
            changed = orders[order_no]["status"] != "refunded"
            orders[order_no] = {"status": "refunded", "refund": {"status": "refunded"}}
            return dict(orders[order_no]), changed

    ports: Any = Ports()
    actions = AdminActions(
        audit=ports,
        catalog=ports,
        balances=ports,
        engine=cast(Engine, None),
        office=ports,
        second_factor=ports,
        session_view=dict,
        lot_view=dict,
    )
    with pytest.raises(NotAuthorized):
        asyncio.run(actions.decide_shop_refund(BIDDER, "7", "approve", "no"))
    for _ in range(2):  # a double submit
        assert asyncio.run(actions.decide_shop_refund(ADMIN, "7", "approve", "ok"))["status"] == "refunded"
    assert [(e["action"], e["target"], e["before"]["status"], e["after"]) for e in fakes.audit] == [
        (
            "shop_refund.approve",
            "shop_order:7",
            "refund_requested",
            {"status": "refunded", "refund": {"status": "refunded"}, "reason": "ok"},
        )
    ]
