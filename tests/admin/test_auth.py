"""Admin sign-in, cookies, XSRF, refusals and security headers, over plain HTTP (no browser)."""

from __future__ import annotations

import re

import tornado.web

from admin.base import SESSION_COOKIE
from tests.admin.conftest import ADMIN_PASSWORD, AdminClient
from web.context import derived_cookie_secret

PAGES = (
    "/admin/",
    "/admin/sessions",
    "/admin/sessions/new",
    "/admin/sessions/1",
    "/admin/sessions/1/monitor",
    "/admin/lots/1",
    "/admin/orders",
    "/admin/refunds",
    "/admin/forfeits",
    "/admin/users",
    "/admin/users/1",
    "/admin/coupons",
    "/admin/courses",
    "/admin/audit",
    "/admin/no-such-page",
)
POSTS = (
    "/admin/sessions/new",
    "/admin/sessions/1",
    "/admin/lots/1",
    "/admin/lots/1/cancel",
    "/admin/lots/1/images",
    "/admin/orders/1/ship",
    "/admin/users/1/credit",
    "/admin/users/1/clear-non-payer",
    "/admin/coupons/auction",
    "/admin/courses/new",
    "/admin/logout",
)


async def test_every_page_redirects_to_sign_in(admin_client: AdminClient) -> None:
    for path in PAGES:
        answer = await admin_client.get(path)
        assert answer.status == 302, path
        assert answer.headers["Location"].startswith("/admin/login?next="), path


async def test_every_post_is_refused_without_sign_in(admin_client: AdminClient) -> None:
    await admin_client.get("/admin/login")  # a valid XSRF pair: only the missing sign-in refuses
    for path in POSTS:
        answer = await admin_client.post(path, {"title": "x"})
        assert answer.status == 303 and answer.headers["Location"] == "/admin/login", path


async def test_json_endpoint_answers_401_and_403(admin_client: AdminClient) -> None:
    server = admin_client.server
    session_id = await server.create_session()
    path = f"/admin/api/sessions/{session_id}"
    answer = await admin_client.get(path)
    assert answer.status == 401 and answer.json["error"]["code"] == "UNAUTHORIZED"
    _, bidder = await server.register()
    answer = await server.call("GET", path, token=bidder)
    assert answer.status == 403 and answer.code == "FORBIDDEN"
    # The admin account's ordinary (not admin-scoped) token is not enough either.
    login = await server.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    answer = await server.call("GET", path, token=login.json["token"])
    assert answer.status == 403
    answer = await server.call("GET", path, token=await server.admin_token())
    assert answer.status == 200 and answer.json["id"] == session_id
    answer = await server.call("GET", path, headers={"Authorization": "Basic eDp5"})
    assert answer.status == 401


async def test_sign_in_sets_a_signed_httponly_samesite_cookie(admin_client: AdminClient) -> None:
    answer = await admin_client.sign_in()
    assert answer.status == 303 and answer.headers["Location"] == "/admin/"
    cookie = next(h for h in answer.headers["Set-Cookie"].split(", ") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here; https adds Secure
    value = admin_client.cookies[SESSION_COOKIE]
    assert value.startswith("2|")  # a signed value, not the bare token
    page = await admin_client.get("/admin/")
    assert page.status == 200 and b"Sign out" in page.body


async def test_sign_in_returns_to_the_page_asked_for_but_never_elsewhere(admin_client: AdminClient) -> None:
    await admin_client.get("/admin/login")
    good = await admin_client.post(
        "/admin/login", {"username": "admin", "password": ADMIN_PASSWORD, "next": "/admin/users?q=a"}
    )
    assert good.headers["Location"] == "/admin/users?q=a"
    for target in ("https://evil.example/", "//evil.example/admin", "/api/v1/me", "/admin\\@evil"):
        client = AdminClient(admin_client.server)
        await client.get("/admin/login")
        answer = await client.post(
            "/admin/login", {"username": "admin", "password": ADMIN_PASSWORD, "next": target}
        )
        assert answer.headers["Location"] == "/admin/", target


async def test_wrong_password_and_non_admins_are_refused(admin_client: AdminClient) -> None:
    server = admin_client.server
    answer = await admin_client.sign_in(password="wrong-password")
    assert answer.status == 401 and SESSION_COOKIE not in admin_client.cookies
    assert b"Wrong username or password" in answer.body
    await server.register("dave", "dave-password")
    answer = await admin_client.sign_in("dave", "dave-password")
    assert answer.status == 401 and SESSION_COOKIE not in admin_client.cookies
    entries = [e async for e in server.ctx.db.audit.find({"action": "auth.login_failed"})]
    assert {e["admin_username"] for e in entries} == {"admin", "dave"}


async def test_forged_or_foreign_cookies_are_refused(admin_client: AdminClient) -> None:
    server = admin_client.server
    _, bidder_token = await server.register()
    admin_token = await server.admin_token()
    services_secret = server.ctx.cookie_secret
    # derived from the pseudonym secret (no COOKIE_SECRET in the fixture)
    assert services_secret == derived_cookie_secret(server.ctx.pseudonym_secret)
    forged = {
        "bare admin token": admin_token,
        "signed with another secret": tornado.web.create_signed_value(
            b"x" * 32, SESSION_COOKIE, admin_token
        ).decode(),
        "a bidder's token, correctly signed": tornado.web.create_signed_value(
            services_secret, SESSION_COOKIE, bidder_token
        ).decode(),
        "signed under another cookie name": tornado.web.create_signed_value(
            services_secret, "other", admin_token
        ).decode(),
    }
    for what, value in forged.items():
        client = AdminClient(server)
        client.cookies[SESSION_COOKIE] = value
        answer = await client.get("/admin/users")
        assert answer.status == 302, what
    client = AdminClient(server)
    client.cookies[SESSION_COOKIE] = tornado.web.create_signed_value(
        services_secret, SESSION_COOKIE, admin_token
    ).decode()
    assert (await client.get("/admin/users")).status == 200


async def test_sign_out_revokes_the_token(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    await admin_client.get("/admin/")
    stolen = dict(admin_client.cookies)
    answer = await admin_client.post("/admin/logout")
    assert answer.status == 303 and answer.headers["Location"] == "/admin/login"
    assert SESSION_COOKIE not in admin_client.cookies
    replay = AdminClient(admin_client.server)
    replay.cookies.update(stolen)
    assert (await replay.get("/admin/")).status == 302
    revoked = await admin_client.server.ctx.db.tokens.count_documents({"revoked": True})
    assert revoked == 1
    actions = [e["action"] async for e in admin_client.server.ctx.db.audit.find().sort("at", 1)]
    assert actions == ["auth.login", "auth.logout"]


async def test_demoted_admin_is_refused_at_once(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    server = admin_client.server
    await server.ctx.db.users.update_one({"username": "admin"}, {"$set": {"is_admin": False}})
    server.ctx.accounts.cache.discard_user(1)  # another process would notice within the cache TTL
    assert (await admin_client.get("/admin/")).status == 302


async def test_every_form_post_needs_the_xsrf_token(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    page = await admin_client.get("/admin/sessions/new")
    assert page.status == 200 and admin_client.xsrf
    body = admin_client.server.session_body()
    form = {
        "title": "t",
        **{k: body[k] for k in ("preview_start", "preview_end", "bidding_start", "bidding_end")},
    }
    missing = await admin_client.post("/admin/sessions/new", form, xsrf=False)
    assert missing.status == 403 and b"XSRF" in missing.body
    wrong = await admin_client.post(
        "/admin/sessions/new", {**form, "_xsrf": "2|00000000|" + "ab" * 16 + "|1"}
    )
    assert wrong.status == 403
    no_cookie = AdminClient(admin_client.server)
    no_cookie.cookies = {SESSION_COOKIE: admin_client.cookies[SESSION_COOKIE]}
    no_cookie.xsrf = admin_client.xsrf
    assert (await no_cookie.post("/admin/sessions/new", form)).status == 403
    assert await admin_client.server.ctx.db.sessions.count_documents({}) == 0
    # The same token in the X-XSRFToken header (how the pages' scripts send it) is accepted.
    header = await admin_client.post(
        "/admin/users/1/credit",
        {"amount": "1.00", "idempotency_key": "k1"},
        xsrf=False,
        headers={"X-XSRFToken": admin_client.xsrf or ""},
    )
    assert header.status == 303


async def test_sign_in_is_rate_limited_per_address(admin_client: AdminClient) -> None:
    from web.signin import SigninPolicy

    ctx = admin_client.server.ctx
    ctx.signin_policy = SigninPolicy(failures_per_address=3)
    for name in ("nobody1", "nobody2", "nobody3"):
        assert (await admin_client.sign_in(username=name, password="wrong-password")).status == 401
    answer = await admin_client.sign_in()
    assert answer.status == 429 and SESSION_COOKIE not in admin_client.cookies
    assert b"Too many sign-in attempts" in answer.body and int(answer.headers["Retry-After"]) > 60
    refused = await ctx.db.audit.count_documents({"action": "auth.login_refused"})
    assert refused == 1


async def test_sign_in_is_throttled_per_account_across_both_doors(admin_client: AdminClient) -> None:
    assert (await admin_client.sign_in(password="wrong-password")).status == 401
    answer = await admin_client.sign_in()
    assert answer.status == 429 and answer.headers["Retry-After"] == "1"
    # The JSON login shares the guard: guessing cannot switch doors.
    json_login = await admin_client.server.call(
        "POST", "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert json_login.status == 429 and json_login.json["error"]["retry_after_s"] == 1


async def test_security_headers(admin_client: AdminClient) -> None:
    for answer in (await admin_client.get("/admin/login"), await admin_client.get("/admin/")):
        headers = answer.headers
        csp = headers["Content-Security-Policy"]
        assert csp.startswith("default-src 'self'") and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
    page = await admin_client.get("/admin/login")
    assert not re.search(rb"<script(?![^>]*\bsrc=)", page.body), "inline scripts would break the CSP"
    assert b'name="_xsrf"' in page.body


async def test_static_files_are_versioned_and_nosniff(admin_client: AdminClient) -> None:
    page = await admin_client.get("/admin/login")
    css = re.search(rb'href="(/admin/static/admin\.css\?v=[0-9a-f]+)"', page.body)
    assert css
    answer = await admin_client.get(css.group(1).decode())
    assert answer.status == 200 and answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (await admin_client.get("/admin/static/vendor/uplot/uPlot.iife.min.js")).status == 200
    assert (await admin_client.get("/admin/static/../base.py")).status in (403, 404)
