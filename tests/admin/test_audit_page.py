"""The audit page: filters (admin, object, action, business-zone dates), reasons, readable diffs."""

from __future__ import annotations

import datetime
import re
import urllib.parse
from typing import Any

from persistence.audit import AuditLog
from tests.admin.conftest import AdminClient

UTC = datetime.UTC
XSS = "<script>alert(1)</script>"


def entry(at: datetime.datetime, who: str, action: str, target: str, **fields: Any) -> dict[str, Any]:
    return {
        "at": at,
        "admin_user_id": 1,
        "admin_username": who,
        "action": action,
        "target": target,
        "before": None,
        "after": None,
        "ip": "10.0.0.9",
        "reason": "",
        "surface": "ui",
        **fields,
    }


def shown(body: bytes) -> list[str]:
    """The actions of the entries listed, in order."""
    return [a.decode() for a in re.findall(rb'data-audit-entry="([a-z_.]+)"', body)]


async def seeded(client: AdminClient) -> AdminClient:
    await client.sign_in()
    await client.server.ctx.db.audit.delete_many({})
    await client.server.ctx.db.audit.insert_many(
        [
            # 2026-12-05 23:30 in Shanghai is 15:30 UTC: a business-zone date filter puts it on the 5th.
            entry(
                datetime.datetime(2026, 12, 5, 15, 30, tzinfo=UTC),
                "ops1",
                "lot.update",
                "lot:12",
                before={"title": "Bowl", "reserve_price": 300_00},
                after={"title": "Bowl", "reserve_price": 350_00},
            ),
            entry(
                datetime.datetime(2026, 12, 5, 16, 30, tzinfo=UTC),
                "ops2",
                "lot.cancel",
                "lot:13",
                after={"state": 5, "reason": "consignor withdrew"},
            ),
            entry(
                datetime.datetime(2026, 12, 6, 2, 0, tzinfo=UTC),
                "ops1",
                "session.update",
                "session:4",
                before={"title": XSS},
                after={"title": "Autumn"},
                reason=f"typo {XSS}",
            ),
            entry(
                datetime.datetime(2026, 12, 7, 2, 0, tzinfo=UTC),
                "ops2",
                "user.credit",
                "user:3",
                before={"balance": 0},
                after={"balance": 1234_56, "amount": 1234_56},
                reason="goodwill",
                surface="rest",
            ),
        ]
    )
    return client


async def page(client: AdminClient, **filters: str) -> bytes:
    answer = await client.get("/admin/audit?" + urllib.parse.urlencode(filters))
    assert answer.status == 200, answer.body[-800:]
    return answer.body


async def test_filters_by_admin_object_action_and_dates(admin_client: AdminClient) -> None:
    client = await seeded(admin_client)
    assert shown(await page(client)) == ["user.credit", "session.update", "lot.cancel", "lot.update"]
    assert shown(await page(client, user="ops1")) == ["session.update", "lot.update"]
    assert shown(await page(client, target="lot")) == ["lot.cancel", "lot.update"]
    assert shown(await page(client, target="lot:12")) == ["lot.update"]
    assert shown(await page(client, action="lot")) == ["lot.cancel", "lot.update"]
    assert shown(await page(client, action="lot.cancel")) == ["lot.cancel"]
    assert shown(await page(client, action="lo")) == []  # a prefix is a whole dotted part
    # Business-zone days (Asia/Shanghai): the 5th ends at 2026-12-05 16:00 UTC.
    assert shown(await page(client, **{"from": "2026-12-05", "to": "2026-12-05"})) == ["lot.update"]
    assert shown(await page(client, **{"from": "2026-12-06", "to": "2026-12-06"})) == [
        "session.update",
        "lot.cancel",
    ]
    assert shown(await page(client, **{"from": "2026-12-07"})) == ["user.credit"]
    assert shown(await page(client, user="ops2", target="lot")) == ["lot.cancel"]
    # A filter that is not one is ignored (never a regex of the user's), a bad date is a message.
    assert len(shown(await page(client, user=".*", action="$where"))) == 4
    bad = await client.get("/admin/audit?from=2026-02-30")
    assert bad.status == 400 and b"From: give a date such as 2026-12-06" in bad.body


async def test_each_entry_shows_its_reason_diff_origin_and_link(admin_client: AdminClient) -> None:
    client = await seeded(admin_client)
    body = (await page(client)).decode()
    assert XSS not in body and "typo &lt;script&gt;" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; → Autumn" in body  # the diff, escaped
    assert "consignor withdrew" in body  # the reason an older entry kept inside `after`
    assert "¥300.00 (30000) → ¥350.00 (35000)" in body  # reserve_price, in yuan too
    assert "(added)</span> ¥1,234.56 (123456)" in body  # user.credit's new amount field
    assert 'href="/admin/lots/12"' in body and 'href="/admin/sessions/4"' in body
    assert 'href="/admin/users/3"' in body
    assert "10.0.0.9" in body and "· rest" in body
    assert "<details><summary>Raw JSON</summary>" in body
    assert "2026-12-06 10:00:00" in body  # 02:00 UTC shown at UTC+8


async def test_admin_writes_record_their_reason(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    session_id = await client.server.create_session()
    lot_id = await client.server.create_lot(session_id)
    await client.get(f"/admin/lots/{lot_id}")
    answer = await client.post(f"/admin/lots/{lot_id}/cancel", {"reason": "damaged in transit"})
    assert answer.status == 303
    stored = await client.server.ctx.db.audit.find_one({"action": "lot.cancel"})
    assert stored["reason"] == "damaged in transit" and stored["surface"] == "ui"
    entries, _ = await AuditLog(client.server.ctx.db).page(target=f"lot:{lot_id}")
    assert [e["action"] for e in entries][:1] == ["lot.cancel"]
