"""The community's moderation in the admin-actions service, on the moderation fakes: each action
authorized first (a bidder changes nothing), one audit entry per change with the reason, none for a
repeat, and the erase asking for the second factor when the policy names it."""

from __future__ import annotations

import pytest

from backoffice.actions import NotAuthorized, TwoFactorNeeded
from community.errors import TextRejected
from tests.backoffice.test_actions import ADMIN, BIDDER, Fakes, service
from tests.community.test_moderation import ALICE, BOB, World


async def test_a_bidder_is_refused_before_anything_changes() -> None:
    fakes, world = Fakes(), World()
    actions = service(fakes)
    actions.moderation = world.service
    report_id = await world.service.report(BOB, "post:1", "spam")
    with pytest.raises(NotAuthorized):
        await actions.community_resolve_report(BIDDER, report_id, "hide", "x")
    with pytest.raises(NotAuthorized):
        await actions.community_moderate(BIDDER, "post", 1, "delete", "x")
    with pytest.raises(NotAuthorized):
        await actions.community_block(BIDDER, ALICE, "x", None)
    with pytest.raises(NotAuthorized):
        await actions.community_erase(BIDDER, ALICE, "x")
    assert fakes.audit == [] and world.content.calls == [] and world.blocks.docs == {}


async def test_one_entry_per_change_with_the_reason_and_none_for_a_repeat() -> None:
    fakes, world = Fakes(), World()
    actions = service(fakes)
    actions.moderation = world.service
    report_id = await world.service.report(BOB, "post:1", "spam")
    answer = await actions.community_resolve_report(ADMIN, report_id, "hide", " ads ")
    assert answer == {"target": "post:1", "action": "hide", "reason": "ads", "changed": True, "reports": 1}
    await actions.community_resolve_report(ADMIN, report_id, "hide", "ads")  # nothing open: no entry
    await actions.community_moderate(ADMIN, "post", 1, "unhide", "appeal")
    await actions.community_moderate(ADMIN, "post", 1, "unhide", "appeal")  # already shown: no entry
    await actions.community_block(ADMIN, ALICE, "abuse", 7)
    assert await actions.community_unblock(ADMIN, ALICE, "served") is True
    assert await actions.community_unblock(ADMIN, ALICE, "again") is False
    assert [(e["action"], e["target"], e["after"]["reason"]) for e in fakes.audit] == [
        ("community.report_resolve", f"report:{report_id}", "ads"),
        ("community.post_unhide", "post:1", "appeal"),
        ("community.block", f"user:{ALICE}", "abuse"),
        ("community.unblock", f"user:{ALICE}", "served"),
    ]
    assert fakes.audit[0]["before"] == {"content": {"user_id": ALICE, "hidden": False, "text": ""}}


async def test_erase_needs_the_second_factor_when_the_policy_names_it() -> None:
    fakes, world = Fakes(), World()
    actions = service(fakes, frozenset({"community.erase"}))
    actions.moderation = world.service
    with pytest.raises(TwoFactorNeeded):
        await actions.community_erase(ADMIN, ALICE, "privacy request")
    assert world.content.calls == []
    fakes.enrolled.add(ADMIN.user_id)
    with pytest.raises(TextRejected, match="reason"):
        await actions.community_erase(ADMIN, ALICE, "")  # refused before anything goes
    assert world.content.calls == []
    counts = await actions.community_erase(ADMIN, ALICE, "privacy request")
    assert counts["posts"] == 2
    [entry] = fakes.audit
    assert (entry["action"], entry["target"], entry["after"]["reason"]) == (
        "community.erase",
        f"user:{ALICE}",
        "privacy request",
    )
    assert entry["after"]["posts"] == 2


async def test_without_the_service_the_actions_are_unavailable() -> None:
    actions = service(Fakes())
    with pytest.raises(Exception) as refused:
        await actions.community_block(ADMIN, ALICE, "x", None)
    assert getattr(refused.value, "code", None) == "UNAVAILABLE"
