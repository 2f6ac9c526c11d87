"""The roles' areas: who may read and who may write what (docs/admin.md "Roles")."""

from __future__ import annotations

from backoffice.roles import AREAS, Role, can, effective_roles


def test_an_admin_account_without_roles_is_an_owner() -> None:
    assert effective_roles(True, []) == {Role.OWNER}
    assert effective_roles(False, []) == frozenset()
    assert effective_roles(True, ["support", "nonsense"]) == {Role.SUPPORT}


def test_support_reads_and_writes_notes_only() -> None:
    support = {"support"}
    assert can(support, "orders") and not can(support, "orders", write=True)
    assert can(support, "notes", write=True)
    assert not can(support, "staff") and not can(support, "exports")


def test_lanes() -> None:
    assert can({"operator"}, "auctions", write=True) and not can({"operator"}, "catalogue")
    assert can({"course_manager"}, "degree", write=True) and not can({"course_manager"}, "auctions")
    assert can({"moderator"}, "community", write=True) and not can({"moderator"}, "orders")
    assert can({"mentor"}, "mentoring", write=True) and not can({"mentor"}, "degree")
    assert can({"operator", "moderator"}, "community", write=True)  # roles add up


def test_unclassified_area_is_the_owners_alone() -> None:
    assert can({"owner"}, None, write=True) and can({"owner"}, "no-such-area")
    for role in Role:
        if role is not Role.OWNER:
            assert not can({role}, None) and not can({role}, "no-such-area")


def test_owner_may_read_every_area_and_write_all_but_audit() -> None:
    for area in AREAS:
        assert can({"owner"}, area)
        assert can({"owner"}, area, write=True) == (area not in {"audit", "exports"})
