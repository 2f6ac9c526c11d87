"""The admin UI's course refund queue: a student's request listed, approved or rejected with a
reason through the admin-actions service (audited), against the real app and the sandbox."""

from __future__ import annotations

import html

from tests.admin.conftest import AdminClient
from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import running_shop
from tests.gateway.test_shop_order_life_api import paid_order, user_id_of


async def test_the_refund_queue_approves_and_rejects_with_a_reason(app_server: AppServer) -> None:
    async with running_shop(app_server) as s:
        token, trade_no, first = await paid_order(s)
        other, _, second = await paid_order(s)  # another student's order
        requests = ((token, first, "Bought the wrong course"), (other, second, "Too hard <b>"))
        for who, order, reason in requests:
            path = f"/api/v1/shop/orders/{order['order_no']}/refund"
            assert (await s.call("POST", path, {"reason": reason}, token=who)).status == 200
        client = AdminClient(s.api)
        await client.sign_in()

        page = await client.get("/admin/shop/refunds")
        assert page.status == 200
        text = page.body.decode()
        assert first["order_no"] in text and second["order_no"] in text
        assert "Bought the wrong course" in text and html.escape("Too hard <b>") in text
        assert "Too hard <b>" not in text  # escaped
        assert "Waiting (2)" in text

        approved = await client.post(
            f"/admin/shop/orders/{first['order_no']}/refund/approve", {"reason": "Within 7 days"}
        )
        assert approved.status == 303 and approved.headers["Location"] == "/admin/shop/refunds"
        rejected = await client.post(
            f"/admin/shop/orders/{second['order_no']}/refund/reject", {"reason": "Watched it all"}
        )
        assert rejected.status == 303
        flashed = (await client.get("/admin/shop/refunds?status=refunded")).body.decode()
        assert first["order_no"] in flashed and "Within 7 days" in flashed
        listed = (await client.get("/admin/shop/refunds?status=rejected")).body.decode()
        assert second["order_no"] in listed and "Watched it all" in listed

        db = s.shop_ctx.db
        done = await db.shop_orders.find_one({"_id": first["order_no"]})
        assert done is not None and done["status"] == "refunded"
        back = await db.shop_orders.find_one({"_id": second["order_no"]})
        assert back is not None and back["status"] == "paid" and back["refund"]["status"] == "rejected"
        user_id = await user_id_of(s, token)
        entries = [e async for e in db.ledger.find({"user_id": user_id, "kind": "shop_refund"})]
        assert [(e["amount"], e["ref"]) for e in entries] == [(1500, f"shop-refund:{first['order_no']}")]
        refund = await db.payment_refunds.find_one({"_id": f"shop-refund:{first['order_no']}"})
        assert refund is not None and (refund["out_trade_no"], refund["amount"]) == (trade_no, 6500)
        decided = {"action": {"$in": ["shop_refund.approve", "shop_refund.reject"]}}
        audit = [a async for a in db.audit.find(decided)]
        assert sorted((a["action"], a["target"], a["admin_username"]) for a in audit) == [
            ("shop_refund.approve", f"shop_order:{first['order_no']}", "admin"),
            ("shop_refund.reject", f"shop_order:{second['order_no']}", "admin"),
        ]
        # Approving again (a double submit) changes nothing and records nothing.
        again = await client.post(f"/admin/shop/orders/{first['order_no']}/refund/approve", {"reason": ""})
        assert again.status == 303
        assert await db.audit.count_documents({"action": "shop_refund.approve"}) == 1
        refused = await client.post(f"/admin/shop/orders/{second['order_no']}/refund/approve", {"reason": ""})
        assert refused.status == 303
        assert "REFUND_NOT_REQUESTED" in (await client.get("/admin/shop/refunds")).body.decode()
