"""The exports page and its CSV downloads, against seeded data (admin/exports.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest
import tornado.httpclient

from admin import exports
from tests.admin.conftest import AdminClient
from tests.admin.exports_data import WHEN, Seeded, parse, seed


async def signed_in(client: AdminClient) -> tuple[AdminClient, Seeded]:
    await client.sign_in()
    return client, await seed(client.server)


async def test_the_exports_page_offers_every_kind(admin_client: AdminClient) -> None:
    client, seeded = await signed_in(admin_client)
    page = await client.get("/admin/exports")
    assert page.status == 200
    for kind in ("orders", "payments", "refunds", "ledgers", "bids", "enrolments"):
        assert f'action="/admin/exports/{kind}.csv"'.encode() in page.body
    assert f'<option value="{seeded.session_id}">'.encode() in page.body


async def test_orders_export_headers_cells_and_filters(admin_client: AdminClient) -> None:
    client, seeded = await signed_in(admin_client)
    answer = await client.get("/admin/exports/orders.csv")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = answer.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="gavel-orders-[0-9]{8}-[0-9]{4}\.csv"', disposition)
    rows = parse(answer.body)
    assert [r["order_id"] for r in rows] == ["701", "702"]  # by id
    first = rows[0]
    assert (
        first["username"] == "zhang_san"
        and first["price_yuan"] == "1234.50"
        and first["price_fen"] == "123450"
    )
    assert (
        first["created_at_utc"] == "2026-12-06T12:15:00Z"
        and first["created_at_local"] == "2026-12-06 20:15:00"
    )
    assert first["tracking_no"].startswith("'=HYPERLINK")  # defused
    assert first["status_name"] == "awaiting_delivery" and first["cash_paid_yuan"] == "1234.50"
    only_unpaid = parse((await client.get("/admin/exports/orders.csv?status=1")).body)
    assert [r["order_id"] for r in only_unpaid] == ["702"]
    that_day = parse((await client.get("/admin/exports/orders.csv?from=2026-12-06&to=2026-12-06")).body)
    assert [r["order_id"] for r in that_day] == ["701"]
    none = parse((await client.get(f"/admin/exports/orders.csv?session={seeded.session_id + 1000}")).body)
    assert none == []
    entries = [e async for e in client.server.ctx.db.audit.find({"action": "export.orders"}).sort("at", 1)]
    assert [e["after"]["rows"] for e in entries] == [2, 1, 1, 0]
    assert entries[1]["after"]["filters"] == {"status": "1"} and entries[1]["after"]["complete"] is True
    assert entries[0]["admin_username"] == "admin"
    page = await client.get("/admin/exports")
    recent = page.body.split(b'id="recent-exports"')[1].split(b"</table>")[0]
    assert recent.count(b"<td>export.orders</td>") == 4 and b"<td>status=1</td>" in recent


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/admin/exports/orders.csv?status=7", b"status: one of"),
        ("/admin/exports/orders.csv?from=2026-02-30", b"is not a date"),
        ("/admin/exports/bids.csv", b"session: required"),
        ("/admin/exports/ledgers.csv?user=-1", b"user: give a number"),
    ],
)
async def test_bad_filters_answer_400_with_a_message(
    admin_client: AdminClient, path: str, message: bytes
) -> None:
    await admin_client.sign_in()
    answer = await admin_client.get(path)
    assert answer.status == 400 and message in answer.body
    assert answer.headers["Content-Type"].startswith("text/html")
    assert await admin_client.server.ctx.db.audit.count_documents({"action": {"$regex": "^export"}}) == 0


async def test_unknown_kind_and_unknown_session(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    assert (await admin_client.get("/admin/exports/secrets.csv")).status == 404
    assert (await admin_client.get("/admin/exports/bids.csv?session=999999")).status == 404
    assert await admin_client.server.ctx.db.audit.count_documents({"action": "export.bids"}) == 0


async def test_signed_out_is_sent_to_sign_in(admin_client: AdminClient) -> None:
    answer = await admin_client.get("/admin/exports/orders.csv")
    assert answer.status == 302 and "/admin/login" in answer.headers["Location"]


async def test_payments_refunds_ledgers_bids_enrolments(admin_client: AdminClient) -> None:
    client, seeded = await signed_in(admin_client)
    payments = parse((await client.get("/admin/exports/payments.csv")).body)
    assert [(p["out_trade_no"], p["order"], p["kind"], p["provider"], p["status"]) for p in payments] == [
        ("ord-paid1", "", "auction_order", "sandbox", "paid"),
        ("shop-failed1", "", "shop_order", "sandbox", "failed"),
        ("", "S20261206001", "shop_order", "balance", "paid"),  # the part paid from the balance
    ]
    assert payments[2]["amount_yuan"] == "10.00" and payments[2]["subject"] == "Python 入门"
    from_balance = parse((await client.get("/admin/exports/payments.csv?provider=balance")).body)
    assert [p["order"] for p in from_balance] == ["S20261206001"]
    assert parse((await client.get("/admin/exports/payments.csv?provider=balance&status=failed")).body) == []
    failed = parse((await client.get("/admin/exports/payments.csv?status=failed")).body)
    assert [p["out_trade_no"] for p in failed] == ["shop-failed1"] and failed[0]["amount_yuan"] == "59.90"
    shop_only = parse((await client.get("/admin/exports/payments.csv?kind=shop_order")).body)
    assert [p["out_trade_no"] or p["order"] for p in shop_only] == ["shop-failed1", "S20261206001"]

    refunds = parse((await client.get("/admin/exports/refunds.csv")).body)
    assert [(r["source"], r["amount_yuan"], r["status"]) for r in refunds] == [
        ("deposit", "500.00", "refunded"),
        ("shop", "59.90", "requested"),
    ]
    assert refunds[1]["to_balance_fen"] == "1000" and refunds[1]["via_provider_fen"] == "4990"
    pending = parse((await client.get("/admin/exports/refunds.csv?status=pending")).body)
    assert [r["source"] for r in pending] == ["shop"]

    ledger = parse((await client.get(f"/admin/exports/ledgers.csv?user={seeded.user_id}")).body)
    assert [(e["kind"], e["amount_yuan"], e["balance_after_fen"]) for e in ledger] == [
        ("admin_credit", "2000.00", "200000"),
        ("deposit", "-500.00", "150000"),
    ]

    bids = parse((await client.get(f"/admin/exports/bids.csv?session={seeded.session_id}")).body)
    assert [(b["seq"], b["username"], b["price_yuan"], b["auto"], b["status"]) for b in bids] == [
        ("1", "li_si", "1000.00", "false", "bidding"),
        ("2", "zhang_san", "1234.50", "true", "won"),
    ]
    pseudonym = client.server.ctx.pseudonym(seeded.session_id, seeded.user_id)
    assert bids[1]["pseudonym"] == pseudonym and pseudonym.startswith("Bidder-")
    assert bids[0]["at_utc"] == WHEN.strftime("%Y-%m-%dT%H:%M:%SZ")

    enrolments = parse((await client.get("/admin/exports/enrolments.csv")).body)
    assert [(e["type"], e["course_name"], e["status"]) for e in enrolments] == [
        ("course", "Python 入门", "valid"),
        ("degree", "Back-end degree", "studying"),
    ]
    degree = parse((await client.get("/admin/exports/enrolments.csv?kind=degree&course=77")).body)
    assert len(degree) == 1 and degree[0]["mentor_fee_yuan"] == "300.00"


async def test_a_role_without_the_data_area_is_refused(admin_client: AdminClient) -> None:
    _, seeded = await signed_in(admin_client)
    server = admin_client.server
    manager_id, _ = await server.register("course_boss", "staff-password")
    await server.ctx.accounts.set_staff_roles(manager_id, ["course_manager"])
    client = AdminClient(server)
    assert (await client.sign_in("course_boss", "staff-password")).status == 303
    assert (await client.get("/admin/exports/orders.csv")).status == 200  # orders: read
    assert (await client.get(f"/admin/exports/bids.csv?session={seeded.session_id}")).status == 403
    page = await client.get("/admin/exports")
    assert b'action="/admin/exports/enrolments.csv"' in page.body
    assert b'action="/admin/exports/bids.csv"' not in page.body
    assert b'id="recent-exports"' not in page.body  # who exported what is the audit log's (owner, support)
    entry = await server.ctx.db.audit.find_one({"action": "export.orders"})
    assert entry is not None and entry["admin_username"] == "course_boss"


async def test_list_pages_link_to_their_export_with_their_filters(admin_client: AdminClient) -> None:
    client, seeded = await signed_in(admin_client)
    assert b'href="/admin/exports/orders.csv?status=2"' in (await client.get("/admin/orders?status=2")).body
    assert b'href="/admin/exports/orders.csv"' in (await client.get("/admin/orders")).body
    refunds = await client.get("/admin/refunds?status=refunded")
    assert b'href="/admin/exports/refunds.csv?kind=deposit&amp;status=refunded"' in refunds.body
    assert b"/admin/exports/orders.csv?status=4" in (await client.get("/admin/forfeits")).body
    user_page = await client.get(f"/admin/users/{seeded.user_id}")
    assert f"/admin/exports/ledgers.csv?user={seeded.user_id}".encode() in user_page.body
    monitor = await client.get(f"/admin/sessions/{seeded.session_id}/monitor")
    assert f"/admin/exports/bids.csv?session={seeded.session_id}".encode() in monitor.body


async def test_a_download_cut_off_part_way_is_recorded_as_incomplete(
    admin_client: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, seeded = await signed_in(admin_client)
    db = client.server.ctx.db
    await db.ledger.insert_many(
        [
            {
                "user_id": seeded.user_id,
                "kind": "bulk",
                "amount": n,
                "balance_after": n,
                "ref": f"b{n}",
                "at": WHEN,
            }
            for n in range(1, 2001)
        ]
    )
    monkeypatch.setattr(exports, "CHUNK_ROWS", 10)
    received: list[bytes] = []

    def hang_up(chunk: bytes) -> None:
        received.append(chunk)
        raise ConnectionAbortedError("the browser went away")

    request = tornado.httpclient.HTTPRequest(
        client.server.base_url + "/admin/exports/ledgers.csv?kind=bulk",
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())},
        streaming_callback=hang_up,
    )
    with contextlib.suppress(Exception):
        await client.server.http.fetch(request)
    assert received
    for _ in range(200):  # the server notices at its next flush
        entry = await db.audit.find_one({"action": "export.ledgers"})
        if entry is not None:
            break
        await asyncio.sleep(0.02)
    assert entry is not None and entry["after"]["complete"] is False
    assert 0 < entry["after"]["rows"] < 2000
    assert (await client.get("/admin/exports")).status == 200  # the server carries on
