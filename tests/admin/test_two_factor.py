"""TOTP second factor for admin accounts: enrol with a QR code, sign in with a code, no replay,
single-use recovery codes, turning it off; the JSON logins ask for the code too."""

from __future__ import annotations

import re
import time

import pyotp

from admin.base import SESSION_COOKIE
from tests.admin.conftest import ADMIN_PASSWORD, AdminClient
from web.signin import signin_guard

PAGE = "/admin/account/two-factor"
_SECRET = re.compile(rb'<code class="totp-secret">([A-Z2-7]+)</code>')
_RECOVERY = re.compile(rb"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>")


class SteppedClock:
    """The sign-in guard's clock: the tests wait out the 1 s back-off by moving it, not by sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 60_000
        return self.now


async def enrol(admin_client: AdminClient) -> tuple[pyotp.TOTP, list[str]]:
    assert (await admin_client.sign_in()).status == 303
    page = await admin_client.get(PAGE)
    assert page.status == 200 and b"<strong>off</strong>" in page.body
    started = await admin_client.post(PAGE, {"action": "start"})
    assert started.status == 200 and b'src="data:image/svg+xml' in started.body
    found = _SECRET.search(started.body)
    assert found is not None
    totp = pyotp.TOTP(found.group(1).decode())
    # Nothing changes for sign-in until a code confirms the device has the key.
    wrong = await admin_client.post(
        PAGE, {"action": "confirm", "code": "000000" if totp.now() != "000000" else "111111"}
    )
    assert wrong.status == 400 and b"does not match" in wrong.body
    confirmed = await admin_client.post(PAGE, {"action": "confirm", "code": totp.now()})
    assert confirmed.status == 200
    codes = [c.decode() for c in _RECOVERY.findall(confirmed.body)]
    assert len(codes) == 10 and len(set(codes)) == 10
    return totp, codes


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30 s step (accepted: one step of drift), as the confirming one is spent."""
    return totp.at(time.time() + 30)


async def test_enrol_then_sign_in_needs_a_code_that_cannot_be_replayed(admin_client: AdminClient) -> None:
    signin_guard(admin_client.server.ctx).now_ms = SteppedClock()
    totp, codes = await enrol(admin_client)
    ctx = admin_client.server.ctx
    user = await ctx.db.users.find_one({"username_key": "admin"})
    assert user is not None and user["totp_secret"] == totp.secret and "totp_pending" not in user
    assert all(code not in str(user) for code in codes)  # stored hashed
    assert await ctx.db.audit.count_documents({"action": "auth.two_factor_enabled"}) == 1

    browser = AdminClient(admin_client.server)
    password_step = await browser.sign_in()
    assert password_step.status == 303 and password_step.headers["Location"] == "/admin/login/code"
    assert SESSION_COOKIE not in browser.cookies
    assert (await browser.get("/admin/")).status == 302  # not signed in yet
    assert (await browser.get("/admin/login/code")).status == 200
    # The code that confirmed the set-up is spent.
    reused = await browser.post("/admin/login/code", {"code": totp.now()})
    assert reused.status == 401 and SESSION_COOKIE not in browser.cookies
    code = next_code(totp)
    signed_in = await browser.post("/admin/login/code", {"code": code})
    assert signed_in.status == 303 and SESSION_COOKIE in browser.cookies
    assert (await browser.get("/admin/")).status == 200

    # The same code again, even right away from another browser: refused.
    thief = AdminClient(admin_client.server)
    assert (await thief.sign_in()).status == 303
    replayed = await thief.post("/admin/login/code", {"code": code})
    assert replayed.status == 401 and b"already used" in replayed.body
    assert SESSION_COOKIE not in thief.cookies

    # A recovery code works once.
    recovered = await thief.post("/admin/login/code", {"code": codes[0].upper()})
    assert recovered.status == 303 and SESSION_COOKIE in thief.cookies
    again = AdminClient(admin_client.server)
    await again.sign_in()
    assert (await again.post("/admin/login/code", {"code": codes[0]})).status == 401
    page = await admin_client.get(PAGE)
    assert b"Recovery codes left: 9" in page.body


async def test_the_code_step_needs_the_password_step_first(admin_client: AdminClient) -> None:
    signin_guard(admin_client.server.ctx).now_ms = SteppedClock()
    totp, _ = await enrol(admin_client)
    stranger = AdminClient(admin_client.server)
    await stranger.get("/admin/login")
    assert (await stranger.get("/admin/login/code")).status == 302
    answer = await stranger.post("/admin/login/code", {"code": next_code(totp)})
    assert answer.status == 303 and answer.headers["Location"] == "/admin/login"
    assert SESSION_COOKIE not in stranger.cookies


async def test_json_logins_ask_for_the_code(admin_client: AdminClient) -> None:
    signin_guard(admin_client.server.ctx).now_ms = SteppedClock()
    totp, codes = await enrol(admin_client)
    server = admin_client.server
    credentials = {"username": "admin", "password": ADMIN_PASSWORD}
    for path in ("/api/v1/admin/login", "/api/v1/auth/login"):
        missing = await server.call("POST", path, credentials)
        assert missing.status == 401 and missing.code == "TWO_FACTOR_REQUIRED"
    wrong = await server.call("POST", "/api/v1/admin/login", {**credentials, "totp": "12345x"})
    assert wrong.status == 401 and wrong.code == "TWO_FACTOR_INVALID"
    code = next_code(totp)
    ok = await server.call("POST", "/api/v1/admin/login", {**credentials, "totp": code})
    assert ok.status == 200 and ok.json["token"]
    replayed = await server.call("POST", "/api/v1/auth/login", {**credentials, "totp": code})
    assert replayed.status == 401 and replayed.code == "TWO_FACTOR_INVALID"
    recovered = await server.call("POST", "/api/v1/auth/login", {**credentials, "totp": codes[3]})
    assert recovered.status == 200


async def test_turning_it_off_needs_a_code(admin_client: AdminClient) -> None:
    signin_guard(admin_client.server.ctx).now_ms = SteppedClock()
    _, codes = await enrol(admin_client)
    refused = await admin_client.post(PAGE, {"action": "disable", "code": "not-a-code"})
    assert refused.status == 400
    off = await admin_client.post(PAGE, {"action": "disable", "code": codes[5]})
    assert off.status == 303
    assert b"<strong>off</strong>" in (await admin_client.get(PAGE)).body
    assert await admin_client.server.ctx.db.audit.count_documents({"action": "auth.two_factor_disabled"}) == 1
    plain = AdminClient(admin_client.server)
    assert (await plain.sign_in()).status == 303 and SESSION_COOKIE in plain.cookies
