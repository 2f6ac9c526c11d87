"""An export is a read: `AdminActions.export_allowed` asks read access to `exports`, and
`export_done` records one audit entry with the filters and the rows (docs/admin.md "Exports")."""

from __future__ import annotations

import asyncio

import pytest

from backoffice.actions import NotAuthorized
from tests.backoffice.test_action_areas import Desk, actor, service


def test_readers_of_exports_may_export_and_others_may_not() -> None:
    actions = service(Desk())
    for role in ("owner", "operator", "course_manager"):
        asyncio.run(actions.export_allowed(actor(role), "orders"))  # `exports` is read-only for all
    asyncio.run(actions.export_allowed(actor(), "ledgers"))  # an admin without roles is an owner
    for who in (actor("support"), actor("mentor"), actor("moderator"), actor("owner", is_admin=False)):
        with pytest.raises(NotAuthorized):
            asyncio.run(actions.export_allowed(who, "orders"))


def test_an_export_is_one_audit_entry_with_its_filters_and_rows() -> None:
    desk = Desk()
    actions = service(desk)
    asyncio.run(actions.export_done(actor("operator"), "orders", {"status": "1"}, 42))
    asyncio.run(actions.export_done(actor("operator"), "bids", {"session": "3"}, 7, complete=False))
    assert [(e["action"], e["target"], e["after"]) for e in desk.audit] == [
        ("export.orders", "export:orders", {"filters": {"status": "1"}, "rows": 42, "complete": True}),
        ("export.bids", "export:bids", {"filters": {"session": "3"}, "rows": 7, "complete": False}),
    ]
    assert desk.audit[0]["admin_username"] == "u1" and desk.audit[0]["surface"] == "ui"
