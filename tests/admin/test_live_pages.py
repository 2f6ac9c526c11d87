"""The live monitor's pages over HTTP against the whole app: what they show (real users, reserve,
deposits, watchers, history), escaping, which controls each state offers, the numbers in the
confirmations, and refusals (no auctions write: no buttons, 403)."""

from __future__ import annotations

import datetime
import html
import re
from typing import Any

import pytest

from admin.base import AdminHandler
from engine.commands import CloseLot
from tests.admin.conftest import AdminClient, AppServer
from tests.gateway.conftest import archive_and_compact
from tests.gateway.test_ws import Bidder

XSS = "<script>window.__x=1</script>"
DEPOSIT = 500_00


async def pay_deposit(server: AppServer, token: str, session_id: int, lot_id: int | None) -> None:
    answer = await server.call(
        "POST",
        "/api/v1/deposits",
        {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
        token=token,
    )
    assert answer.status == 201 and answer.json["status"] == "paid", answer.body


async def bid(server: AppServer, token: str, lot_id: int, price: int) -> dict[str, Any]:
    bidder = await Bidder.connect(server, token)
    try:
        frame: dict[str, Any] = await bidder.bid(lot_id, price, f"t-{lot_id}-{price}")
        return frame
    finally:
        bidder.close()


class Scene:
    """A bidding session: lot A (deposit ¥500, reserve ¥150) with bids by alice (¥100) then bob
    (¥120), both holding its deposit; lot B bidding without a bid."""

    def __init__(self, server: AppServer) -> None:
        self.server = server

    async def build(self) -> Scene:
        server = self.server
        self.session_id = await server.create_session(title="Evening sale")
        self.lot_a = await server.create_lot(
            self.session_id, title=XSS, start_price=10_000, unit=1_000, reserve_price=15_000, deposit=DEPOSIT
        )
        self.lot_b = await server.create_lot(self.session_id, title="Tea set", start_price=5_000, unit=500)
        await server.start_bidding(self.session_id)
        self.alice_id, self.alice = await server.register("alice_live")
        self.bob_id, self.bob = await server.register("bob_live")
        for user_id, token in ((self.alice_id, self.alice), (self.bob_id, self.bob)):
            await server.credit(user_id, 10_000_00)
            await pay_deposit(server, token, self.session_id, self.lot_a)
        assert (await bid(server, self.alice, self.lot_a, 10_000))["type"] == "accepted"
        assert (await bid(server, self.bob, self.lot_a, 12_000))["type"] == "accepted"
        return self


@pytest.fixture
async def scene(admin_client: AdminClient) -> Scene:
    await admin_client.sign_in()
    return await Scene(admin_client.server).build()


def text(body: bytes) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(rb"<[^>]+>", b" ", body).decode()))


async def test_session_monitor_shows_real_users_reserve_deposits_and_controls(
    admin_client: AdminClient, scene: Scene
) -> None:
    page = await admin_client.get(f"/admin/sessions/{scene.session_id}/monitor")
    assert page.status == 200
    body = page.body.decode()
    shown = text(page.body)
    pseudonym = admin_client.server.ctx.pseudonym(scene.session_id, scene.bob_id)
    assert pseudonym in shown and f"bob_live #{scene.bob_id}" in shown
    assert f'href="/admin/users/{scene.bob_id}"' in body
    assert "¥150.00 not met" in shown  # reserve ¥150, price ¥120
    assert "2 · ¥1,000.00" in shown  # two lot deposits of ¥500 held
    assert "Hammer total so far ¥0.00" in shown
    assert "Bidders 2" in shown
    assert "Asia/Shanghai (UTC+08:00)" in shown  # the header names the zone once
    # The escaped title, never markup.
    assert XSS not in body and html.escape(XSS) in body
    row = re.search(rf'<tr data-lot-id="{scene.lot_a}".*?</tr>', body, re.S)
    assert row is not None
    for verb in ("pause", "extend", "withdraw"):
        assert f'href="/admin/lots/{scene.lot_a}/{verb}?back=session"' in row.group(0)
    assert "/resume" not in row.group(0)
    assert f'href="/admin/sessions/{scene.session_id}/pause"' in body
    assert f'href="/admin/sessions/{scene.session_id}/resume"' not in body


async def test_session_json_has_the_admin_fields(admin_client: AdminClient, scene: Scene) -> None:
    answer = await admin_client.get(f"/admin/api/sessions/{scene.session_id}")
    assert answer.status == 200
    lots = {lot["id"]: lot for lot in answer.json["lots"]}
    live = lots[scene.lot_a]["live"]
    assert live["leader_user"] == {"id": scene.bob_id, "username": "bob_live"}
    assert live["reserve"] == 15_000 and live["reserve_met"] is False
    assert live["deposits"] == {"count": 2, "total": 2 * DEPOSIT, "users": 2}
    assert set(live["controls"]) == {"pause", "extend", "withdraw", "void"}
    assert answer.json["totals"]["bidders"] == 2
    assert answer.json["totals"]["watchers"] == {"viewers": 0, "users": 0, "sockets": 0}
    assert answer.json["controls"] == ["pause"]


async def test_watchers_count_sockets_and_users(admin_client: AdminClient, scene: Scene) -> None:
    server = admin_client.server
    watching = [await Bidder.connect(server, scene.alice), await Bidder.connect(server, scene.alice)]
    anonymous = await Bidder.connect(server, None)
    try:
        for socket in [*watching, anonymous]:
            await socket.request({"op": "subscribe", "session_id": scene.session_id})  # the snapshot
        answer = await admin_client.get(f"/admin/api/lots/{scene.lot_a}")
        # alice's two sockets are one viewer, the anonymous socket another
        assert answer.json["watchers"] == {"viewers": 2, "users": 1, "sockets": 3}
    finally:
        for socket in [*watching, anonymous]:
            socket.close()


async def test_lot_monitor_shows_history_deposits_bidders_and_audit(
    admin_client: AdminClient, scene: Scene
) -> None:
    page = await admin_client.get(f"/admin/lots/{scene.lot_a}/monitor")
    assert page.status == 200
    shown = text(page.body)
    ctx = admin_client.server.ctx
    for user_id, name in ((scene.alice_id, "alice_live"), (scene.bob_id, "bob_live")):
        assert f"{name} #{user_id}" in shown
        assert ctx.pseudonym(scene.session_id, user_id) in shown
    assert "¥120.00" in shown and "¥100.00" in shown
    assert "Reserve ¥150.00 · not met" in shown
    assert "Deposits held on the lot 2 · ¥1,000.00" in shown
    assert page.body.count(b"<td>this lot</td>") == 2
    assert f'href="/admin/bidders/{scene.alice_id}/block?lot={scene.lot_a}"' in page.body.decode()
    assert "Audit entries for this lot" in shown
    detail = (await admin_client.get(f"/admin/api/lots/{scene.lot_a}")).json
    assert [point["price"] for point in detail["points"]] == [10_000, 12_000]
    assert detail["history"][0]["user"]["username"] == "bob_live"  # newest first
    assert detail["live"]["leader_user"]["id"] == scene.bob_id
    assert {b["user"]["username"]: b["leading"] for b in detail["bidders"]} == {
        "bob_live": True,
        "alice_live": False,
    }


async def test_a_compacted_lot_shows_its_history_from_the_archive(
    admin_client: AdminClient, scene: Scene
) -> None:
    server = admin_client.server
    assert (await server.engine.execute(CloseLot(scene.lot_a))).ok
    before = (await admin_client.get(f"/admin/api/lots/{scene.lot_a}")).json
    await archive_and_compact(server, scene.lot_a)
    assert server.engine.book.lots[scene.lot_a].compacted
    detail = (await admin_client.get(f"/admin/api/lots/{scene.lot_a}")).json
    assert [point["price"] for point in detail["points"]] == [10_000, 12_000]
    assert [entry["user"]["username"] for entry in detail["history"]] == ["bob_live", "alice_live"]
    assert detail["history_kind"] == "lines" and detail["live"]["bidders"] == 2
    assert {b["user"]["username"] for b in detail["bidders"]} == {"bob_live", "alice_live"}
    assert detail["live"]["price"] == before["live"]["price"] == 12_000
    session = (await admin_client.get(f"/admin/api/sessions/{scene.session_id}")).json
    assert session["totals"]["bidders"] == 2
    assert {lot["id"]: lot["live"]["bidders"] for lot in session["lots"]}[scene.lot_a] == 2
    page = await admin_client.get(f"/admin/lots/{scene.lot_a}/monitor")
    assert page.status == 200 and "alice_live" in text(page.body)


async def test_a_lot_not_in_the_engine_is_404(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    for path in ("/admin/lots/987654/monitor", "/admin/lots/987654/pause", "/admin/api/lots/987654"):
        answer = await admin_client.get(path)
        assert answer.status == 404, path


async def test_confirmations_state_the_numbers(admin_client: AdminClient, scene: Scene) -> None:
    pause = text((await admin_client.get(f"/admin/lots/{scene.lot_a}/pause")).body)
    assert "2 bidders, 2 deposits ¥1,000.00 held" in pause
    assert "Bidding stops until resumed; the end moves by the pause" in pause
    withdraw = text((await admin_client.get(f"/admin/lots/{scene.lot_a}/withdraw")).body)
    assert "2 deposits (¥1,000.00) refunded to 2 bidders" in withdraw
    assert "2 bids from 2 bidders are set aside (current price ¥120.00)" in withdraw
    extend = await admin_client.get(f"/admin/lots/{scene.lot_a}/extend")
    assert "+10 min from the current end" in text(extend.body)
    assert "(Asia/Shanghai)" in text(extend.body)
    assert re.search(rb'type="datetime-local" name="ends_at" value="\d{4}-\d\d-\d\dT\d\d:\d\d"', extend.body)
    block = text((await admin_client.get(f"/admin/bidders/{scene.bob_id}/block?lot={scene.lot_a}")).body)
    assert "Block bidder bob_live" in block and "leading bids on 1 lot(s)" in block
    session = text((await admin_client.get(f"/admin/sessions/{scene.session_id}/pause")).body)
    assert "2 lots bidding stop; 2 bidders, 2 deposits ¥1,000.00 held" in session


async def test_an_illegal_control_is_not_offered(admin_client: AdminClient, scene: Scene) -> None:
    # A running lot cannot be resumed; a bidder not blocked cannot be unblocked.
    for path in (
        f"/admin/lots/{scene.lot_a}/resume",
        f"/admin/bidders/{scene.bob_id}/unblock?lot={scene.lot_a}",
        f"/admin/sessions/{scene.session_id}/resume",
    ):
        answer = await admin_client.get(path)
        assert answer.status == 303, path
    follow = await admin_client.get(f"/admin/lots/{scene.lot_a}/monitor")
    assert "cannot resume now" in text(follow.body)
    # A closed lot offers nothing.
    server = admin_client.server
    await server.advance_to(server.engine.book.lots[scene.lot_b].ends_at + 1)
    await server.wait_for(lambda: int(server.engine.book.lots[scene.lot_b].state) >= 4)
    detail = (await admin_client.get(f"/admin/api/lots/{scene.lot_b}")).json
    assert detail["controls"] == []
    page = await admin_client.get(f"/admin/lots/{scene.lot_b}/monitor")
    assert b'data-control="' not in page.body


async def test_reason_is_required_and_a_form_error_shows_on_the_page(
    admin_client: AdminClient, scene: Scene
) -> None:
    server = admin_client.server
    path = f"/admin/lots/{scene.lot_a}/pause"
    await admin_client.get(path)
    answer = await admin_client.post(path, {"reason": "  "})
    assert answer.status == 400 and "Reason: required" in text(answer.body)
    assert "2 bidders, 2 deposits ¥1,000.00 held" in text(answer.body)  # the plan is shown again
    assert not server.engine.book.lots[scene.lot_a].paused_since
    answer = await admin_client.post(path, {"reason": "wrong estimate"})
    assert answer.status == 303 and answer.headers["Location"] == f"/admin/lots/{scene.lot_a}/monitor"
    assert server.engine.book.lots[scene.lot_a].paused_since
    entries = [e async for e in server.ctx.db.audit.find({"action": "lot.pause"})]
    assert [(e["target"], e["reason"], e["surface"]) for e in entries] == [
        (f"lot:{scene.lot_a}", "wrong estimate", "ui")
    ]
    # Paused: the monitor now offers resume, and pausing again is refused by the engine.
    page = await admin_client.get(f"/admin/lots/{scene.lot_a}/monitor")
    assert f'href="/admin/lots/{scene.lot_a}/resume"'.encode() in page.body
    assert "Paused 已暂停" in text(page.body)
    again = await admin_client.post(path, {"reason": "twice"})
    assert again.status == 303
    assert "ILLEGAL_STATE" in text((await admin_client.get(again.headers["Location"])).body)


async def test_extend_reads_the_business_zone(admin_client: AdminClient, scene: Scene) -> None:
    lot = admin_client.server.engine.book.lots[scene.lot_a]
    path = f"/admin/lots/{scene.lot_a}/extend"
    await admin_client.get(path)
    early = await admin_client.post(path, {"reason": "late start", "ends_at": "2000-01-01T08:00"})
    assert early.status == 400 and "must be after the current end" in text(early.body)
    bad = await admin_client.post(path, {"reason": "late start", "ends_at": "tomorrow"})
    assert bad.status == 400 and "is not a date and time" in text(bad.body)
    new_end = lot.ends_at + 3_600_000 - lot.ends_at % 60_000
    local = datetime.datetime.fromtimestamp(new_end / 1000, datetime.timezone(datetime.timedelta(hours=8)))
    typed = local.strftime("%Y-%m-%dT%H:%M")
    answer = await admin_client.post(path, {"reason": "late start", "ends_at": typed})
    assert answer.status == 303
    assert lot.ends_at == new_end
    entry = await admin_client.server.ctx.db.audit.find_one({"action": "lot.extend"})
    assert entry is not None and entry["after"]["ends_at"] == new_end and entry["reason"] == "late start"


async def test_support_reads_the_monitor_without_controls(
    admin_client: AdminClient, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AdminHandler, "staff_roles", lambda self: frozenset({"support"}))
    page = await admin_client.get(f"/admin/sessions/{scene.session_id}/monitor")
    assert page.status == 200 and b'data-control="' not in page.body
    page = await admin_client.get(f"/admin/lots/{scene.lot_a}/monitor")
    assert page.status == 200 and b'data-control="' not in page.body
    assert f"bob_live #{scene.bob_id}" in text(page.body)  # support may still see who bids
    assert (await admin_client.get(f"/admin/api/lots/{scene.lot_a}")).json["controls"] == []
    for path in (
        f"/admin/lots/{scene.lot_a}/pause",
        f"/admin/sessions/{scene.session_id}/pause",
        f"/admin/bidders/{scene.bob_id}/block",
    ):
        # What a control would do may be read; the form is not there, and a POST is refused.
        page = await admin_client.get(path)
        assert page.status == 200 and b"data-confirm-submit" not in page.body, path
        assert "Read only" in text(page.body)
        assert (await admin_client.post(path, {"reason": "x"})).status == 403, path
    assert (await admin_client.post(f"/admin/lots/{scene.lot_a}/bids/0/void", {"reason": "x"})).status == 403
