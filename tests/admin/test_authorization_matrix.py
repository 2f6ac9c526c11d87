"""The authorization matrix: every admin route × every role (docs/admin.md "Roles").

One server with every route served (the shop's and the payments' too: a sandbox provider), one
account per role (the owner is the seeded legacy `admin`, an admin without roles), a signed-in
non-staff user and nobody. Every admin page (`admin.routes`) and every REST rule under
`/api/v1/admin/` is found by walking the application's router, and must be listed in ROUTE_AREAS
below — a hand-written table, not imported from the code, so a new route cannot slip through
unclassified and a wrong classification in the code shows as a mismatch.

For each route, identity and method the handler defines: GET, and POST/PUT/PATCH/DELETE with a
valid XSRF token (pages) or a bearer token (REST); the answer must be a refusal (302/303 to the
sign-in page, 401, 403) exactly when the identity lacks the access, and never a 5xx.

When a change adds routes, add one line per route to ROUTE_AREAS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.routing
import tornado.simple_httpclient
import tornado.web

from composition.app import make_app
from engine.settle.ports import PaymentRouter
from payments.records import ensure_payment_indexes
from payments.sandbox import SandboxProvider
from persistence.shop import ensure_shop_indexes
from tests.admin.conftest import ADMIN_PASSWORD, AdminClient
from tests.gateway.conftest import Answer, AppServer
from tests.gateway.test_shop_api import APP_ID, key_pair

# -- the expected table (hand-written; docs/admin.md "Roles") ------------------------------------------
# role -> area -> "r" or "rw" (the matrix).
GRANTS: dict[str, dict[str, str]] = {
    "owner": {
        "dashboard": "rw", "auctions": "rw", "orders": "rw", "users": "rw", "notes": "rw",
        "catalogue": "rw", "degree": "rw", "mentoring": "rw", "community": "rw", "audit": "r",
        "staff": "rw", "exports": "r", "account": "rw",
    },
    "operator": {
        "dashboard": "r", "auctions": "rw", "orders": "rw", "users": "rw", "notes": "rw",
        "exports": "r", "account": "rw",
    },
    "course_manager": {
        "dashboard": "r", "orders": "r", "users": "r", "catalogue": "rw", "degree": "rw",
        "mentoring": "rw", "exports": "r", "account": "rw",
    },
    "mentor": {"dashboard": "r", "mentoring": "rw", "account": "rw"},
    "moderator": {"dashboard": "r", "users": "r", "community": "rw", "account": "rw"},
    "support": {
        "dashboard": "r", "auctions": "r", "orders": "r", "users": "r", "notes": "rw",
        "catalogue": "r", "degree": "r", "mentoring": "r", "community": "r", "audit": "r",
        "account": "rw",
    },
}  # fmt: skip

# route pattern (as registered) -> (areas whose read access opens GET, "a|b" = either; area writes need)
ROUTE_AREAS: dict[str, tuple[str, str]] = {
    # the back office's pages (admin/)
    r"/admin/account/two-factor": ("account", "account"),
    r"/admin/logout": ("account", "account"),
    r"/admin/?": ("dashboard", "dashboard"),
    r"/admin/sessions": ("auctions", "auctions"),
    r"/admin/sessions/new": ("auctions", "auctions"),
    r"/admin/sessions/([0-9]+)": ("auctions", "auctions"),
    r"/admin/sessions/([0-9]+)/cover": ("auctions", "auctions"),
    r"/admin/sessions/([0-9]+)/cover/remove": ("auctions", "auctions"),
    r"/admin/sessions/([0-9]+)/lots/new": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/(open|close|cancel)": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/images": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/images/([0-9]+)/(up|down|cover|remove)": ("auctions", "auctions"),
    r"/admin/orders": ("orders", "orders"),
    r"/admin/orders/([0-9]+)/(ship|complete)": ("orders", "orders"),
    r"/admin/refunds": ("orders", "orders"),
    r"/admin/forfeits": ("orders", "orders"),
    r"/admin/users": ("users", "users"),
    r"/admin/users/([0-9]+)": ("users", "users"),
    r"/admin/users/([0-9]+)/credit": ("users", "users"),
    r"/admin/users/([0-9]+)/clear-non-payer": ("users", "users"),
    r"/admin/users/([0-9]+)/notes": ("notes", "notes"),  # support notes (admin/user_page.py)
    r"/admin/search": ("dashboard", "dashboard"),  # the header's search box (admin/search.py)
    r"/admin/coupons": ("catalogue|auctions", "catalogue"),
    r"/admin/coupons/auction": ("auctions", "auctions"),
    r"/admin/coupons/course": ("catalogue", "catalogue"),
    r"/admin/coupons/course/([0-9]+)/grant": ("catalogue", "catalogue"),
    r"/admin/courses": ("catalogue", "catalogue"),
    r"/admin/courses/categories": ("catalogue", "catalogue"),
    r"/admin/courses/new": ("catalogue", "catalogue"),
    r"/admin/courses/([0-9]+)/status": ("catalogue", "catalogue"),
    r"/admin/courses/([0-9]+)/policies": ("catalogue", "catalogue"),
    r"/admin/policies/([0-9]+)/remove": ("catalogue", "catalogue"),
    r"/admin/shop/refunds": ("orders", "orders"),
    r"/admin/shop/orders/([0-9]{1,24})/refund/(approve|reject)": ("orders", "orders"),
    r"/admin/courses/([0-9]+)/reviews": ("catalogue", "catalogue"),
    r"/admin/reviews/([0-9]+)/(hide|show|recommend|unrecommend)": ("catalogue", "catalogue"),
    r"/admin/faqs": ("catalogue", "catalogue"),
    r"/admin/faqs/new": ("catalogue", "catalogue"),
    r"/admin/faqs/([0-9]+)/(edit|delete)": ("catalogue", "catalogue"),
    r"/admin/degrees": ("degree", "degree"),
    r"/admin/degrees/homework": ("degree", "degree"),
    r"/admin/degrees/homework/new": ("degree", "degree"),
    r"/admin/degrees/homework/([0-9]+)/edit": ("degree", "degree"),
    r"/admin/degrees/records": ("mentoring", "mentoring"),
    r"/admin/degrees/records/([0-9]+)": ("mentoring", "mentoring"),
    r"/admin/degrees/([0-9]+)": ("degree", "degree"),
    r"/admin/degrees/([0-9]+)/(online|offline)": ("degree", "degree"),
    r"/admin/degrees/enrolments/([0-9]+:[0-9]+)/(mentor|open|suspend|resume)": ("degree", "degree"),
    r"/admin/mentors": ("degree", "degree"),
    r"/admin/mentors/grant": ("degree", "degree"),
    r"/admin/mentors/([0-9]+)/revoke": ("degree", "degree"),
    r"/admin/community": ("community", "community"),
    r"/admin/community/reports/([0-9]+)/resolve": ("community", "community"),
    r"/admin/community/posts": ("community", "community"),
    r"/admin/community/comments": ("community", "community"),
    r"/admin/community/(posts|comments)/([0-9]+)/(hide|unhide|delete)": ("community", "community"),
    r"/admin/community/users/([0-9]+)": ("community", "community"),
    r"/admin/community/users/([0-9]+)/(block|unblock|erase)": ("community", "community"),
    r"/admin/community/topics": ("community", "community"),
    r"/admin/community/topics/new": ("community", "community"),
    r"/admin/community/topics/([0-9]+)": ("community", "community"),
    r"/admin/articles": ("community", "community"),
    r"/admin/articles/new": ("community", "community"),
    r"/admin/articles/([0-9]+)": ("community", "community"),
    r"/admin/articles/([0-9]+)/(publish|withdraw)": ("community", "community"),
    r"/admin/articles/([0-9]+)/head-image": ("community", "community"),
    r"/admin/article-sources": ("community", "community"),
    r"/admin/sessions/([0-9]+)/monitor": ("auctions", "auctions"),
    r"/admin/api/sessions/([0-9]+)": ("auctions", "auctions"),
    r"/admin/sessions/([0-9]+)/(pause|resume)": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/monitor": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/(pause|resume|extend|withdraw)": ("auctions", "auctions"),
    r"/admin/lots/([0-9]+)/bids/([0-9]+)/void": ("auctions", "auctions"),
    r"/admin/bidders/([0-9]+)/(block|unblock)": ("auctions", "auctions"),
    r"/admin/api/lots/([0-9]+)": ("auctions", "auctions"),
    r"/admin/staff": ("staff", "staff"),
    r"/admin/audit": ("audit", "audit"),
    r"/admin/exports": ("exports", "exports"),
    r"/admin/exports/(orders|payments|refunds|ledgers|bids|enrolments)\.csv": ("exports", "exports"),
    r"/admin/.*": ("account", "account"),  # any other path: the admin's 404 page
    # REST (gateway/rest_*.py)
    r"/api/v1/admin/sessions": ("auctions", "auctions"),
    r"/api/v1/admin/sessions/([0-9]+)": ("auctions", "auctions"),
    r"/api/v1/admin/sessions/([0-9]+)/lots": ("auctions", "auctions"),
    r"/api/v1/admin/lots/([0-9]+)": ("auctions", "auctions"),
    r"/api/v1/admin/lots/([0-9]+)/(open|close|cancel)": ("auctions", "auctions"),
    r"/api/v1/admin/lots/([0-9]+)/(pause|resume|withdraw|extend)": ("auctions", "auctions"),
    r"/api/v1/admin/lots/([0-9]+)/bids/([0-9]+)/void": ("auctions", "auctions"),
    r"/api/v1/admin/sessions/([0-9]+)/(pause|resume)": ("auctions", "auctions"),
    r"/api/v1/admin/bidders/([0-9]+)/(block|unblock)": ("auctions", "auctions"),
    r"/api/v1/admin/users/([0-9]+)/credit": ("users", "users"),
    r"/api/v1/admin/sessions/([0-9]+)/coupons": ("auctions", "auctions"),
    r"/api/v1/admin/orders": ("orders", "orders"),
    r"/api/v1/admin/orders/([0-9]+)/(ship|complete)": ("orders", "orders"),
    r"/api/v1/admin/users/([0-9]+)/clear-non-payer": ("users", "users"),
    r"/api/v1/admin/shop/reviews/([0-9]+)/(hide|show|recommend|unrecommend)": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/categories": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/teachers": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/degree-courses": ("degree", "degree"),
    r"/api/v1/admin/shop/degree-courses/([0-9]+)": ("degree", "degree"),
    r"/api/v1/admin/shop/degree-courses/([0-9]+)/policies": ("degree", "degree"),
    r"/api/v1/admin/shop/courses": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/courses/([0-9]+)": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/courses/([0-9]+)/detail": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/courses/([0-9]+)/policies": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/policies/([0-9]+)": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/courses/([0-9]+)/chapters": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/chapters/([0-9]+)/sections": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/faqs": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/coupons": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/coupons/([0-9]+)/grant": ("catalogue", "catalogue"),
    r"/api/v1/admin/shop/orders/([0-9]{1,24})/refund/(approve|reject)": ("orders", "orders"),
    r"/api/v1/admin/degree/homework": ("degree", "degree"),
    r"/api/v1/admin/degree/homework/([0-9]+)": ("degree", "degree"),
    r"/api/v1/admin/degree/courses/([0-9]+)/homework": ("degree", "degree"),
    r"/api/v1/admin/degree/enrolments/([0-9]{1,16}:[0-9]{1,16})/modules/([0-9]+)/open": ("degree", "degree"),
    r"/api/v1/admin/degree/enrolments/([0-9]{1,16}:[0-9]{1,16})/(suspend|resume)": ("degree", "degree"),
    r"/api/v1/admin/degree/mentors": ("degree", "degree"),
    r"/api/v1/admin/degree/mentors/([0-9]+)": ("degree", "degree"),
    r"/api/v1/admin/degree/enrolments/([0-9]{1,18}:[0-9]{1,18})/mentor": ("degree", "degree"),
    r"/api/v1/admin/degree/courses/([0-9]+)/cohort": ("degree", "degree"),
    r"/api/v1/admin/degree/sweep": ("degree", "degree"),
    r"/api/v1/admin/community/reports": ("community", "community"),
    r"/api/v1/admin/community/reports/([0-9]+)/resolve": ("community", "community"),
    r"/api/v1/admin/community/(posts|comments)/([0-9]+)/(hide|unhide|delete)": ("community", "community"),
    r"/api/v1/admin/community/users/([0-9]+)/block": ("community", "community"),
    r"/api/v1/admin/community/users/([0-9]+)/erase": ("community", "community"),
    r"/api/v1/admin/articles": ("community", "community"),
    r"/api/v1/admin/articles/([^/]{1,40})": ("community", "community"),
    r"/api/v1/admin/articles/([^/]{1,40})/(publish|withdraw)": ("community", "community"),
    r"/api/v1/admin/articles/([^/]{1,40})/head-image": ("community", "community"),
    r"/api/v1/admin/article-sources": ("community", "community"),
}  # fmt: skip

# Not back-office routes: signing in, and the public files.
NOT_CHECKED = (r"/admin/login", r"/admin/login/code", r"/admin/static/(.*)", r"/api/v1/admin/login")
WRITE_METHODS = ("post", "put", "patch", "delete")
ROLES = tuple(GRANTS)
MISSING_ID = "987654"


def may(identity: str, areas: str, *, write: bool) -> bool:
    grants = GRANTS.get(identity, {})
    return any(("w" if write else "r") in grants.get(area, "") for area in areas.split("|"))


# -- the server and who asks -------------------------------------------------------------------------------
@dataclasses.dataclass
class Matrix:
    server: AppServer
    app: tornado.web.Application
    session_id: int
    lot_id: int
    bidder_id: int
    pages: dict[str, AdminClient]  # identity -> a cookie client (signed in unless anonymous)
    tokens: dict[str, str | None]  # identity -> bearer token (None: anonymous)


@pytest.fixture
async def matrix(app_server: AppServer, tmp_path: Any) -> AsyncIterator[Matrix]:
    ctx = app_server.ctx
    ctx.media_dir = tmp_path / "media"
    await ensure_shop_indexes(ctx.db)
    await ensure_payment_indexes(ctx.db)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    http = tornado.simple_httpclient.SimpleAsyncHTTPClient(force_instance=True)
    private, public = key_pair()
    provider = SandboxProvider(
        base_url, APP_ID, private, public, PaymentRouter(), http, db=ctx.db, request_timeout=5
    )
    ctx.payment_provider = provider
    ctx.shop = None
    app = make_app(ctx)  # every route: the gateway's (with the shop and orders), the admin's
    httpd = tornado.httpserver.HTTPServer(app)
    httpd.add_sockets([sock])
    server = dataclasses.replace(app_server, base_url=base_url)
    try:
        session_id = await server.create_session()
        lot_id = await server.create_lot(session_id)
        bidder_id, bidder_token = await server.register("matrixbidder")
        pages: dict[str, AdminClient] = {}
        tokens: dict[str, str | None] = {"anonymous": None, "non_staff": bidder_token}
        for role in ROLES:
            username, password = (
                ("admin", ADMIN_PASSWORD) if role == "owner" else (f"staff_{role}", "staff-password")
            )
            if role != "owner":  # the owner is the seeded admin: a legacy admin without roles
                user_id, _ = await server.register(username, password)
                await ctx.accounts.set_staff_roles(user_id, [role])
            client = AdminClient(server)
            signed_in = await client.sign_in(username, password)
            assert signed_in.status == 303, (role, signed_in.status)
            await client.get("/admin/account/two-factor")  # the XSRF token of this sign-in
            assert client.xsrf, role
            pages[role] = client
            credentials = {"username": username, "password": password}
            login = await server.call("POST", "/api/v1/admin/login", credentials)
            assert login.status == 200, login.body
            tokens[role] = login.json["token"]
        pages["anonymous"] = AdminClient(server)
        # A bidder's (non-admin) token in a correctly signed admin cookie: still refused.
        non_staff = AdminClient(server)
        non_staff.cookies["gavel_admin"] = tornado.web.create_signed_value(
            ctx.cookie_secret, "gavel_admin", bidder_token
        ).decode()
        pages["non_staff"] = non_staff
        yield Matrix(server, app, session_id, lot_id, bidder_id, pages, tokens)
    finally:
        await provider.aclose()
        httpd.stop()
        await httpd.close_all_connections()
        http.close()


# -- the routes, from the application itself -----------------------------------------------------------
def walk(rules: list[tornado.routing.Rule]) -> Iterator[tuple[str, type]]:
    for rule in rules:
        target = rule.target
        if isinstance(target, tornado.routing.RuleRouter):
            yield from walk(target.rules)
        elif isinstance(rule.matcher, tornado.routing.PathMatches) and isinstance(target, type):
            yield rule.matcher.regex.pattern.removesuffix("$"), target


def admin_routes(app: tornado.web.Application) -> dict[str, type]:
    found: dict[str, type] = {}
    for pattern, handler in [*walk(app.wildcard_router.rules), *walk(app.default_router.rules)]:
        if pattern in NOT_CHECKED:
            continue
        if pattern.startswith(("/admin", "/api/v1/admin/")):
            found.setdefault(pattern, handler)
    return found


def methods_of(handler: type) -> list[str]:
    return [
        name
        for name in ("get", *WRITE_METHODS)
        if getattr(handler, name, None) is not getattr(tornado.web.RequestHandler, name)
    ]


def sample(group: str, before: str, m: Matrix) -> str:
    """A value for one capture group: the first of an alternation, a seeded id where the path names
    sessions, lots or users, else an id that does not exist (a 404 is a fine answer)."""
    if re.fullmatch(r"[a-z-]+(\|[a-z-]+)+", group):
        return group.split("|")[0]
    if ":" in group:
        return f"{MISSING_ID}:1"
    if group == ".*":
        return "no-such-page"
    last = before.rstrip("/").rsplit("/", 1)[-1]
    if last == "sessions":
        return str(m.session_id)
    if last == "lots":
        return str(m.lot_id)
    if last == "users":
        return str(m.bidder_id)
    return MISSING_ID


def concrete(pattern: str, m: Matrix) -> str:
    path = pattern.replace("/?", "/")
    out, depth, start, i = "", 0, 0, 0
    while i < len(path):
        ch = path[i]
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out += sample(path[start + 1 : i], out, m)
        elif depth == 0 and ch == "\\" and i + 1 < len(path):  # an escaped character: itself
            i += 1
            out += path[i]
        elif depth == 0:
            out += ch
        i += 1
    out = out.replace(".*", "no-such-page")
    assert re.fullmatch(pattern, out), (pattern, out)
    return out


# -- one request, judged ---------------------------------------------------------------------------------
def flash_of(m: Matrix, answer: Answer) -> str:
    """The one-time message a POST left (its refusal code, when refused by AdminActions)."""
    for name, value in answer.headers.items():
        if name.lower() == "set-cookie" and "gavel_admin_flash=" in value:
            raw = value.split("gavel_admin_flash=", 1)[1].split(";", 1)[0].strip('"')
            decoded = tornado.web.decode_signed_value(
                m.server.ctx.cookie_secret, "gavel_admin_flash", raw, max_age_days=1
            )
            return str(orjson.loads(decoded)["m"]) if decoded else ""
    return ""


def refused(answer: Answer, flash: str) -> bool:
    location = answer.headers.get("Location", "")
    if answer.status in (302, 303) and location.startswith("/admin/login"):
        return True
    return answer.status in (401, 403) or "(FORBIDDEN)" in flash


async def ask(m: Matrix, identity: str, method: str, path: str) -> tuple[Answer, str]:
    if path.startswith("/api/"):
        body = None if method == "GET" else b"{}"
        headers = {"Content-Type": "application/json"} if body else {}
        token = m.tokens[identity]
        answer = await m.server.call(method, path, raw=body, token=token, headers=headers)
        return answer, ""
    client = m.pages[identity]
    if method == "GET":
        return await client.get(path), ""
    answer = await client.request(method, path, form={})
    return answer, flash_of(m, answer)


async def test_every_admin_route_for_every_role(matrix: Matrix) -> None:
    m = matrix
    routes = admin_routes(m.app)
    unlisted = sorted(set(routes) - set(ROUTE_AREAS))
    assert not unlisted, f"admin routes missing from ROUTE_AREAS (classify them): {unlisted}"
    gone = sorted(set(ROUTE_AREAS) - set(routes))
    assert not gone, f"ROUTE_AREAS lists routes the application does not serve: {gone}"
    assert len(routes) > 100

    checks: list[tuple[str, str, str, str, bool]] = []  # identity, method, pattern, path, allowed
    for pattern, handler in routes.items():
        read_areas, write_area = ROUTE_AREAS[pattern]
        path = concrete(pattern, m)
        for method in methods_of(handler):
            write = method != "get"
            for identity in (*ROLES, "anonymous", "non_staff"):
                allowed = may(identity, write_area if write else read_areas, write=write)
                checks.append((identity, method.upper(), pattern, path, allowed))
    # Signing out ends the session: last.
    checks.sort(key=lambda c: c[2] == r"/admin/logout")

    failures: list[str] = []
    limit = asyncio.Semaphore(8)

    async def check(identity: str, method: str, pattern: str, path: str, allowed: bool) -> None:
        async with limit:
            answer, flash = await ask(m, identity, method, path)
        what = f"{identity} {method} {path} ({pattern})"
        if pattern == r"/admin/logout" and allowed:  # signing out ends at the sign-in page: not refused
            if answer.status in (401, 403) or answer.status >= 500:
                failures.append(f"{what}: {answer.status}")
            return
        if answer.status >= 500:
            failures.append(f"{what}: {answer.status} {answer.body[:200]!r}")
        elif refused(answer, flash) == allowed:
            detail = f"{answer.status} {answer.headers.get('Location', '')} {flash} {answer.body[:160]!r}"
            failures.append(f"{what}: {'refused' if allowed else 'let through'}: {detail}")
        elif not allowed and identity in ROLES and answer.status != 403:
            failures.append(f"{what}: a signed-in admin without access gets 403, not {answer.status}")

    regular = [c for c in checks if c[2] != r"/admin/logout"]
    await asyncio.gather(*(check(*c) for c in regular))
    for c in checks:
        if c[2] == r"/admin/logout":
            await check(*c)
    assert not failures, f"{len(failures)} of {len(checks)} checks failed:\n" + "\n".join(failures[:60])


async def test_the_refusal_names_the_area(matrix: Matrix) -> None:
    page = await matrix.pages["moderator"].get("/admin/sessions")
    assert page.status == 403
    assert b"You do not have access to this page (needs auctions)" in page.body
    assert b'href="/admin/community"' in page.body and b'href="/admin/sessions"' not in page.body
    answer = await matrix.pages["moderator"].get(
        f"/admin/api/sessions/{matrix.session_id}", headers={"Accept": "application/json"}
    )
    assert answer.status == 403 and answer.json["error"]["code"] == "FORBIDDEN"
    rest = await matrix.server.call("GET", "/api/v1/admin/orders", token=matrix.tokens["moderator"])
    assert rest.status == 403 and rest.json["error"]["code"] == "FORBIDDEN"
    query = urllib.parse.urlencode({"q": "x"})
    assert (await matrix.pages["support"].get(f"/admin/users?{query}")).status == 200


async def test_a_mentors_admin_token_reaches_only_their_own_students(matrix: Matrix) -> None:
    """The mentors' REST (not under /api/v1/admin/): an admin token lets staff over every mentor's
    records only when their roles reach the homework other than as a mentor."""
    db = matrix.server.ctx.db
    mentor_id = await matrix.server.ctx.accounts.user_id_for("staff_mentor")
    await db.shop_mentors.insert_one({"_id": mentor_id, "name": "M", "intro": "", "active": True})
    await db.shop_degree_enrolments.insert_one({"_id": "5:5", "user_id": 5, "mentor_id": 999_999})
    await db.shop_homework_records.insert_one(
        {"_id": 9100, "enrolment_id": "5:5", "user_id": 5, "status": "submitted", "submissions": []}
    )
    path = "/api/v1/mentor/records/9100"
    answers = {
        who: await matrix.server.call("GET", path, token=matrix.tokens[who])
        for who in ("mentor", "owner", "course_manager", "support", "operator")
    }
    assert answers["mentor"].status == 403 and answers["mentor"].code == "NOT_YOUR_STUDENT"
    assert answers["owner"].status == answers["course_manager"].status == answers["support"].status == 200
    assert answers["operator"].status == 403  # not a mentor, no access to the homework
    grade = {"submission": 1, "grade": "A", "comment": ""}
    by_support = await matrix.server.call("POST", path + "/grade", grade, token=matrix.tokens["support"])
    assert by_support.status == 403  # support reads, never grades
