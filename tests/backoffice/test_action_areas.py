"""Every admin action needs write access to an area (backoffice/roles.py ACTION_AREAS), and the staff
roles are changed through `AdminActions.staff_set_roles` only (docs/admin.md "Roles")."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
from typing import Any, cast

import pytest

from backoffice.actions import Actor, AdminActions, LastOwner, NotAuthorized, TwoFactorNeeded
from backoffice.roles import AREAS, Role, action_area, effective_roles, mentor_only
from engine.book.errors import GavelError
from engine.engine import Engine

ACTIONS_SOURCE = pathlib.Path(__file__).resolve().parents[2] / "backoffice" / "actions.py"


def actor(*roles: str, user_id: int = 1, is_admin: bool = True) -> Actor:
    return Actor(user_id, f"u{user_id}", is_admin, "10.0.0.1", "ui", frozenset(roles))


def test_every_action_named_in_actions_py_writes_to_an_area() -> None:
    source = ACTIONS_SOURCE.read_text()
    literal = set(re.findall(r'authorize\(actor, "([a-z_]+\.[a-z_]+)"\)', source))
    # Names built at run time (`name = f"lot.{action}"`, `f"community.{kind}_{action}"`): their prefix.
    built = set(re.findall(r'f"([a-z_]+)\.\{', source))
    assert len(literal) > 30 and {"lot", "order", "shop_refund", "review", "degree", "community"} <= built
    unmapped = sorted(name for name in literal if action_area(name) is None)
    unmapped += sorted(f"{prefix}.*" for prefix in built if action_area(f"{prefix}.any") is None)
    assert not unmapped, f"actions without an area (add them to backoffice/roles.py ACTION_AREAS): {unmapped}"
    for name in literal:
        assert action_area(name) in AREAS


def test_the_areas_of_some_actions() -> None:
    assert action_area("lot.cancel") == "auctions" and action_area("bid.void") == "auctions"
    assert action_area("coupon.create") == "auctions" and action_area("shop_coupon.create") == "catalogue"
    assert action_area("user.credit") == "users" and action_area("user.note") == "notes"
    assert action_area("shop_refund.approve") == "orders" and action_area("staff.roles") == "staff"
    assert action_area("auth.two_factor") == "account"
    assert action_area("mystery.thing") is None and action_area("nodot") is None


@dataclasses.dataclass
class Account:
    user_id: int
    username: str
    is_admin: bool
    roles: tuple[str, ...]


class Desk:
    """The ports: the audit trail, the second factor and the staff directory, in memory."""

    def __init__(self, *accounts: Account) -> None:
        self.audit: list[dict[str, Any]] = []
        self.accounts = {a.user_id: a for a in accounts}
        self.enrolled: set[int] = set()

    async def record(self, **entry: Any) -> dict[str, Any]:
        self.audit.append(entry)
        return entry

    async def enrolled_check(self, user_id: int) -> bool:
        return user_id in self.enrolled

    async def staff_account(self, user_id: int) -> Account:
        return self.accounts[user_id]

    async def staff_members(self, limit: int = 500) -> list[Account]:
        return [a for a in self.accounts.values() if a.is_admin]

    async def set_staff_roles(self, user_id: int, roles: list[str]) -> Account:
        old = self.accounts[user_id]
        self.accounts[user_id] = Account(user_id, old.username, bool(roles), tuple(sorted(roles)))
        return self.accounts[user_id]


def service(desk: Desk, two_factor_actions: frozenset[str] = frozenset()) -> AdminActions:
    class Ports:
        record = desk.record
        enrolled = desk.enrolled_check

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
        two_factor_actions=two_factor_actions,
    )
    actions.staff = desk
    return actions


def test_authorize_asks_for_write_access_to_the_actions_area() -> None:
    actions = service(Desk())
    run = asyncio.run
    run(actions.authorize(actor("operator"), "user.credit"))
    run(actions.authorize(actor("support"), "user.note"))
    run(actions.authorize(actor("course_manager"), "shop_coupon.grant"))
    run(actions.authorize(actor(), "mystery.thing"))  # an admin without roles is an owner
    for who, action in [
        (actor("support"), "user.credit"),  # support reads users, writes only notes
        (actor("operator"), "course.create"),
        (actor("moderator"), "lot.cancel"),
        (actor("mentor"), "degree.mentor_grant"),
        (actor("course_manager"), "staff.roles"),
        (actor("operator"), "mystery.thing"),  # an unknown action is the owner's alone
        (actor("owner", is_admin=False), "lot.cancel"),  # roles without the admin flag count for nothing
    ]:
        with pytest.raises(NotAuthorized):
            run(actions.authorize(who, action))
    for role in Role:  # everyone manages their own second factor
        run(actions.authorize(actor(role.value), "auth.two_factor"))


def test_the_two_factor_rule_still_applies() -> None:
    desk = Desk()
    actions = service(desk, frozenset({"user.credit"}))
    with pytest.raises(TwoFactorNeeded):
        asyncio.run(actions.authorize(actor("operator"), "user.credit"))
    desk.enrolled.add(1)
    asyncio.run(actions.authorize(actor("operator"), "user.credit"))


def test_staff_roles_change_with_one_audit_entry_and_never_leave_no_owner() -> None:
    desk = Desk(
        Account(1, "admin", True, ()),  # a legacy admin: an owner
        Account(2, "carol", False, ()),
    )
    actions = service(desk)
    owner = actor(user_id=1)
    after = asyncio.run(actions.staff_set_roles(owner, 2, ["support", "operator"], "new hire"))
    assert after.roles == ("operator", "support") and after.is_admin
    assert [(e["action"], e["target"], e["before"], e["after"], e["reason"]) for e in desk.audit] == [
        (
            "staff.roles",
            "user:2",
            {"username": "carol", "roles": []},
            {"username": "carol", "roles": ["operator", "support"]},
            "new hire",
        )
    ]
    asyncio.run(actions.staff_set_roles(owner, 2, ["operator", "support"]))  # unchanged: no entry
    assert len(desk.audit) == 1
    with pytest.raises(LastOwner) as refused:
        asyncio.run(actions.staff_set_roles(owner, 1, ["support"], "oops"))
    assert refused.value.code == "LAST_OWNER" and desk.accounts[1].roles == ()
    asyncio.run(actions.staff_set_roles(owner, 2, ["owner"]))  # a second owner...
    asyncio.run(actions.staff_set_roles(owner, 1, ["support"]))  # ...lets the first step down
    assert desk.accounts[1].roles == ("support",)
    asyncio.run(actions.staff_set_roles(actor("owner", user_id=2), 1, []))
    assert not desk.accounts[1].is_admin and desk.audit[-1]["after"]["roles"] == []
    with pytest.raises(GavelError) as bad:
        asyncio.run(actions.staff_set_roles(actor("owner", user_id=2), 1, ["emperor"]))
    assert bad.value.code == "VALIDATION"
    with pytest.raises(NotAuthorized):
        asyncio.run(actions.staff_set_roles(actor("operator", user_id=3), 2, []))


def test_an_unknown_stored_role_grants_nothing() -> None:
    assert effective_roles(True, ["emperor"]) == frozenset()  # not the legacy owner's fallback
    assert effective_roles(True, []) == {Role.OWNER}


def test_mentor_only() -> None:
    assert mentor_only({"mentor"})
    assert not mentor_only({"mentor", "course_manager"}) and not mentor_only({"mentor", "support"})
    assert not mentor_only({"owner"}) and not mentor_only(set())
