"""Roles in the back office (docs/admin.md "Roles"): the staff page, a role change taking effect at
once, the menu by role, a mentor who sees only their own students, the demo staff."""

from __future__ import annotations

import datetime

from composition.demo_staff import DEMO_STAFF, seed_demo_staff
from tests.admin.conftest import AdminClient, AppServer
from tests.admin.test_degree_pages import Cohort

UTC = datetime.UTC


async def staff(server: AppServer, username: str, *roles: str) -> tuple[int, AdminClient]:
    """An account with `roles`, signed in to the back office."""
    user_id, _token = await server.register(username, "staff-password")
    await server.ctx.accounts.set_staff_roles(user_id, list(roles))
    client = AdminClient(server)
    answer = await client.sign_in(username, "staff-password")
    assert answer.status == 303, answer.body
    await client.get("/admin/account/two-factor")  # this sign-in's XSRF token
    return user_id, client


def nav_links(page: bytes) -> list[str]:
    menu = page.split(b'<nav class="menu"', 1)[1].split(b"</nav>", 1)[0].decode()
    return [part.split('"', 1)[0] for part in menu.split('href="')[1:]]


async def test_the_owner_sets_roles_on_the_staff_page(admin_client: AdminClient) -> None:
    server = admin_client.server
    carol_id, _ = await server.register("carol", "carol-password")
    await admin_client.sign_in()
    page = await admin_client.get("/admin/staff")
    assert page.status == 200 and b'data-staff="admin"' in page.body and b"made before roles" in page.body

    answer = await admin_client.post(
        "/admin/staff",
        [("username", "Carol"), ("role", "support"), ("role", "operator"), ("reason", "new hire")],
    )
    assert answer.status == 303
    account = await server.ctx.accounts.staff_account(carol_id)
    assert account.is_admin and account.roles == ("operator", "support")
    entries = [e async for e in server.ctx.db.audit.find({"action": "staff.roles"})]
    assert [(e["target"], e["before"]["roles"], e["after"]["roles"], e["reason"]) for e in entries] == [
        (f"user:{carol_id}", [], ["operator", "support"], "new hire")
    ]

    carol = AdminClient(server)
    assert (await carol.sign_in("carol", "carol-password")).status == 303
    home = await carol.get("/admin/")
    assert nav_links(home.body) == [
        "/admin/",
        "/admin/sessions",
        "/admin/orders",
        "/admin/coupons",
        "/admin/courses",
        "/admin/degrees",
        "/admin/shop/refunds",
        "/admin/community",
        "/admin/articles",
        "/admin/users",
        "/admin/exports",
        "/admin/audit",
    ]
    assert (await carol.get("/admin/staff")).status == 403
    listing = await admin_client.get("/admin/staff")
    assert b'data-staff="carol"' in listing.body and b'<td class="nowrap">20' in listing.body  # signed in

    # Unknown usernames are a message on the page, not a 500.
    missing = await admin_client.post("/admin/staff", {"username": "nobody", "role": "support"})
    assert missing.status == 400 and b"no account with the username" in missing.body


async def test_a_role_change_takes_effect_at_once(admin_client: AdminClient) -> None:
    server = admin_client.server
    user_id, operator = await staff(server, "olga", "operator")
    assert (await operator.get("/admin/sessions")).status == 200
    await admin_client.sign_in()
    await admin_client.get("/admin/staff")
    await admin_client.post("/admin/staff", [("user_id", str(user_id)), ("role", "moderator")])
    assert (await operator.get("/admin/sessions")).status == 403  # the cached sign-in was dropped
    assert (await operator.get("/admin/community")).status == 200
    # Taking every role away ends staff membership and the back-office sign-in.
    await admin_client.post("/admin/staff", [("user_id", str(user_id))])
    gone = await operator.get("/admin/community")
    assert gone.status == 302 and gone.headers["Location"].startswith("/admin/login")
    assert not (await server.ctx.accounts.staff_account(user_id)).is_admin
    entries = [
        e["after"]["roles"] async for e in server.ctx.db.audit.find({"action": "staff.roles"}).sort("_id", 1)
    ]
    assert entries == [["moderator"], []]


async def test_the_last_owner_keeps_the_owner_role(admin_client: AdminClient) -> None:
    server = admin_client.server
    await admin_client.sign_in()
    admin_id = await server.ctx.accounts.user_id_for("admin")
    assert admin_id is not None
    await admin_client.get("/admin/staff")
    answer = await admin_client.post("/admin/staff", [("user_id", str(admin_id)), ("role", "support")])
    assert answer.status == 303
    page = await admin_client.get("/admin/staff")
    assert b"LAST_OWNER" in page.body
    assert (await server.ctx.accounts.staff_account(admin_id)).roles == ()  # still the legacy owner
    assert await server.ctx.db.audit.count_documents({"action": "staff.roles"}) == 0
    # A non-owner may not touch roles at all.
    _, support = await staff(server, "sue", "support")
    assert (await support.post("/admin/staff", {"username": "sue", "role": "owner"})).status == 403


async def test_a_mentor_sees_only_their_own_students(admin_client: AdminClient) -> None:
    server = admin_client.server
    db = server.ctx.db
    mine_id, mentor = await staff(server, "mentor_a", "mentor")
    other_id, _ = await staff(server, "mentor_b", "mentor")
    now = datetime.datetime.now(UTC)
    for n, mentor_id in enumerate((mine_id, other_id), start=1):
        await db.shop_degree_enrolments.insert_one(
            {"_id": f"{n}:{n}", "user_id": 900 + n, "mentor_id": mentor_id, "degree_name": "Full-stack"}
        )
        await db.shop_homework_records.insert_one(
            {
                "_id": 8000 + n,
                "enrolment_id": f"{n}:{n}",
                "user_id": 900 + n,
                "module_id": 1,
                "homework_title": f"Homework of student {n}",
                "mentor_id": mentor_id,
                "status": "submitted",
                "submit_count": 1,
                "handed_in_at": now,
            }
        )
    for query in ("", f"?mentor_id={other_id}", "?mentor_id=0"):
        page = await mentor.get(f"/admin/degrees/records{query}")
        assert page.status == 200
        assert b'data-record="8001"' in page.body and b'data-record="8002"' not in page.body
        assert b'name="mentor_id"' not in page.body  # no filter to widen the view
        assert b"waiting for a grade (1)" in page.body  # the counts are theirs too
    assert nav_links(page.body) == ["/admin/", "/admin/degrees/records"]
    assert (await mentor.get("/admin/degrees")).status == 403
    assert (await mentor.get("/admin/users/901")).status == 403
    # The owner sees every mentor's records.
    await admin_client.sign_in()
    everyone = await admin_client.get("/admin/degrees/records")
    assert b'data-record="8001"' in everyone.body and b'data-record="8002"' in everyone.body
    assert b"waiting for a grade (2)" in everyone.body


async def test_granting_a_degree_mentor_gives_the_mentor_role(admin_client: AdminClient) -> None:
    server = admin_client.server
    user_id, _ = await server.register("tutor", "tutor-password")
    await admin_client.sign_in()
    await admin_client.get("/admin/mentors")
    answer = await admin_client.post("/admin/mentors/grant", {"user": "tutor", "name": "Tutor", "intro": ""})
    assert answer.status == 303
    account = await server.ctx.accounts.staff_account(user_id)
    assert account.is_admin and account.roles == ("mentor",)
    tutor = AdminClient(server)
    assert (await tutor.sign_in("tutor", "tutor-password")).status == 303
    assert (await tutor.get("/admin/degrees/records")).status == 200
    await admin_client.post(f"/admin/mentors/{user_id}/revoke")
    account = await server.ctx.accounts.staff_account(user_id)
    assert not account.is_admin and account.roles == ()
    assert (await tutor.get("/admin/degrees/records")).status == 302


async def test_rest_admin_endpoints_follow_the_roles(admin_client: AdminClient) -> None:
    server = admin_client.server
    user_id, _ = await server.register("rita", "rita-password")
    await server.ctx.accounts.set_staff_roles(user_id, ["course_manager"])
    credentials = {"username": "rita", "password": "rita-password"}
    login = await server.call("POST", "/api/v1/admin/login", credentials)
    token = login.json["token"]
    assert (await server.call("GET", "/api/v1/admin/orders", token=token)).status in (200, 404)
    refused = await server.call("POST", "/api/v1/admin/sessions", server.session_body(), token=token)
    assert refused.status == 403 and refused.json["error"]["code"] == "FORBIDDEN"
    credit = await server.call("POST", f"/api/v1/admin/users/{user_id}/credit", {"amount": 1}, token=token)
    assert credit.status == 403
    assert await server.ctx.db.audit.count_documents({"action": "session.create"}) == 0


async def test_demo_staff_one_per_role(app_server: AppServer) -> None:
    await seed_demo_staff(app_server.ctx)
    await seed_demo_staff(app_server.ctx)  # again: nothing changes
    for username, password, role in DEMO_STAFF:
        user_id = await app_server.ctx.accounts.user_id_for(username)
        assert user_id is not None
        assert (await app_server.ctx.accounts.staff_account(user_id)).roles == (role,)
        client = AdminClient(app_server)
        assert (await client.sign_in(username, password)).status == 303


async def test_read_only_roles_are_not_offered_write_buttons(admin_client: AdminClient) -> None:
    server = admin_client.server
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id)
    bidder_id, _ = await server.register("buyer")
    _, support = await staff(server, "sam", "support")
    await admin_client.sign_in()
    pages = {
        "/admin/sessions": b'href="/admin/sessions/new"',
        f"/admin/sessions/{session_id}": f'action="/admin/sessions/{session_id}"'.encode(),
        f"/admin/lots/{lot_id}": f'action="/admin/lots/{lot_id}"'.encode(),
        "/admin/courses": b'action="/admin/courses/new"',
        "/admin/coupons": b'action="/admin/coupons/auction"',
        f"/admin/users/{bidder_id}": f'action="/admin/users/{bidder_id}/credit"'.encode(),
        f"/admin/community/users/{bidder_id}": f'action="/admin/community/users/{bidder_id}/block"'.encode(),
    }
    for path, button in pages.items():
        as_owner, as_support = await admin_client.get(path), await support.get(path)
        assert as_owner.status == as_support.status == 200, path
        assert button in as_owner.body and button not in as_support.body, path


async def test_a_mentor_grades_their_own_students_homework_in_the_back_office(
    admin_client: AdminClient,
) -> None:
    server = admin_client.server
    cohort = await Cohort(admin_client).build()  # record 7001 waits for mentor_ann's grade
    await server.ctx.accounts.set_staff_roles(cohort.mentor, ["mentor"])
    ann = AdminClient(server)
    assert (await ann.sign_in("mentor_ann", "correct-horse")).status == 303
    _, bob = await staff(server, "mentor_bob", "mentor")
    _, support = await staff(server, "sid", "support")

    page = await ann.get("/admin/degrees/records/7001")
    assert page.status == 200 and b"data-grade" in page.body
    assert (await bob.get("/admin/degrees/records/7001")).status == 404  # not his student
    assert (await bob.post("/admin/degrees/records/7001", {"submission": "1", "grade": "A"})).status == 404
    seen = await support.get("/admin/degrees/records/7001")
    assert seen.status == 200 and b"data-grade" not in seen.body  # support reads, never grades
    assert (
        await support.post("/admin/degrees/records/7001", {"submission": "1", "grade": "A"})
    ).status == 403

    graded = await ann.post("/admin/degrees/records/7001", {"submission": "1", "grade": "A", "comment": "ok"})
    assert graded.status == 303
    record = await server.ctx.db.shop_homework_records.find_one({"_id": 7001})
    assert record is not None and record["status"] == "passed" and record["grade"] == "A"
    entry = await server.ctx.db.audit.find_one({"action": "degree.grade"})
    assert entry is not None and entry["target"] == "homework_record:7001"
    assert entry["before"]["status"] == "submitted" and entry["after"]["status"] == "passed"
    assert entry["admin_username"] == "mentor_ann"
