"""Sign-in throttling (web/signin.py) through the JSON login, over real Redis and MongoDB.

Other client addresses are real: the server listens on 127.0.0.1 and the client connects from
127.0.0.x (the whole of 127/8 is loopback), so `remote_ip` differs as it would on the internet.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
import tornado.httpclient
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import persistence.accounts
from tests.gateway.conftest import Answer, AppServer
from web.signin import SigninGuard, SigninPolicy, SigninRefused, signin_guard

HOUR_MS = 3_600_000


async def call_from(
    server: AppServer, address: str, method: str, path: str, body: Any, *, token: str | None = None
) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = tornado.httpclient.HTTPRequest(
        server.base_url + path,
        method=method,
        headers=headers,
        body=json.dumps(body).encode(),
        network_interface=address,
        request_timeout=30,
    )
    response = await server.http.fetch(request, raise_error=False)
    if response.code == 599:
        raise response.error or RuntimeError("request failed")
    return Answer(response.code, response.body or b"", dict(response.headers.get_all()))


async def login_from(server: AppServer, address: str, username: str, password: str) -> Answer:
    return await call_from(
        server, address, "POST", "/api/v1/auth/login", {"username": username, "password": password}
    )


def use_policy(server: AppServer, **limits: int) -> SigninGuard:
    server.ctx.signin_policy = SigninPolicy(**limits)
    server.ctx.signin_guard = None
    return signin_guard(server.ctx)


class LeapingClock:
    """A clock that jumps a day at every reading: back-off never holds, only the counts do."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.ticks = itertools.count()
        self.start = start

    def __call__(self) -> int:
        return self.start + next(self.ticks) * 24 * HOUR_MS


class SteppedClock:
    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check the accounts service makes (the scrypt comparisons), counted."""
    checked: list[str] = []
    real = persistence.accounts.verify_password

    def counting(password: str, stored: str) -> bool:
        checked.append(password)
        return real(password, stored)

    monkeypatch.setattr(persistence.accounts, "verify_password", counting)
    return checked


def assert_refused(answer: Answer) -> int:
    assert answer.status == 429 and answer.code == "RATE_LIMITED", answer.body
    retry = answer.json["error"]["retry_after_s"]
    assert isinstance(retry, int) and retry >= 1
    assert answer.headers["Retry-After"] == str(retry)
    return retry


async def test_concurrent_wrong_guesses_never_get_more_checks_than_configured(
    app_server: AppServer, password_checks: list[str]
) -> None:
    guard = use_policy(app_server, failures_per_account_address=10)
    guard.now_ms = LeapingClock()  # only the count may stop them, as after a long, slow attack
    await app_server.register("victim", "victim-password")
    password_checks.clear()
    answers = await asyncio.gather(
        *(login_from(app_server, "127.0.0.1", "victim", f"guess-{i:04d}") for i in range(50))
    )
    assert len(password_checks) == 10
    assert sorted(a.status for a in answers) == [401] * 10 + [429] * 40
    for answer in answers:
        if answer.status == 429:
            assert_refused(answer)


async def test_concurrent_wrong_guesses_with_backoff_get_one_check(
    app_server: AppServer, password_checks: list[str]
) -> None:
    guard = use_policy(app_server)
    guard.now_ms = SteppedClock()
    await app_server.register("victim", "victim-password")
    password_checks.clear()
    answers = await asyncio.gather(
        *(login_from(app_server, "127.0.0.1", "victim", f"guess-{i:04d}") for i in range(50))
    )
    # The first guess starts a 1 s back-off that every concurrent one meets.
    assert len(password_checks) == 1
    assert sorted(a.status for a in answers) == [401] + [429] * 49


async def test_concurrent_correct_sign_ins_all_succeed_while_wrong_ones_meet_the_limit(
    app_server: AppServer, password_checks: list[str]
) -> None:
    guard = use_policy(app_server, failures_per_account_address=3)
    guard.now_ms = SteppedClock()  # time stands still: any back-off started would refuse
    await app_server.register("twin", "twin-password")
    # Two devices behind one address, and three fresh addresses, sign in at the same moment.
    addresses = ["127.0.0.1"] * 4 + ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
    answers = await asyncio.gather(*(login_from(app_server, a, "twin", "twin-password") for a in addresses))
    assert [a.status for a in answers] == [200] * len(addresses), [a.body for a in answers]
    # Wrong passwords still meet the limit: three failures, then the fourth is refused unchecked.
    guard.now_ms = LeapingClock()  # only the count may stop them
    password_checks.clear()
    for _ in range(3):
        assert (await login_from(app_server, "127.0.0.44", "twin", "wrong-password")).status == 401
    assert_refused(await login_from(app_server, "127.0.0.44", "twin", "wrong-password"))
    assert password_checks == ["wrong-password"] * 3


async def test_backoff_doubles_and_a_success_clears_it(app_server: AppServer) -> None:
    clock = SteppedClock()
    use_policy(app_server).now_ms = clock
    await app_server.register("typist", "typist-password")
    waits = []
    for _ in range(5):
        assert (await login_from(app_server, "127.0.0.1", "typist", "wrong-password")).status == 401
        retry = assert_refused(await login_from(app_server, "127.0.0.1", "typist", "typist-password"))
        waits.append(retry)
        clock.now += retry * 1000
    assert waits == [1, 2, 4, 8, 16]
    assert (await login_from(app_server, "127.0.0.1", "typist", "typist-password")).status == 200
    # Right after the success: no back-off left for this address.
    assert (await login_from(app_server, "127.0.0.1", "typist", "typist-password")).status == 200


async def test_backoff_is_capped_by_the_setting(app_server: AppServer) -> None:
    clock = SteppedClock()
    use_policy(app_server, backoff_max_ms=5_000, failures_per_account_address=50).now_ms = clock
    await app_server.register("capped", "capped-password")
    waits = []
    for _ in range(6):
        assert (await login_from(app_server, "127.0.0.1", "capped", "wrong-password")).status == 401
        retry = assert_refused(await login_from(app_server, "127.0.0.1", "capped", "wrong-password"))
        waits.append(retry)
        clock.now += retry * 1000
    assert waits == [1, 2, 4, 5, 5, 5]


async def test_owner_signs_in_from_another_address_while_a_stranger_hammers(
    app_server: AppServer,
) -> None:
    clock = SteppedClock()
    use_policy(app_server).now_ms = clock
    await app_server.register("owner", "owner-password")
    # The owner used their usual address before.
    assert (await login_from(app_server, "127.0.0.1", "owner", "owner-password")).status == 200
    stranger = "127.0.0.2"
    for _ in range(10):
        clock.now += 20 * 60_000  # the stranger waits out every back-off: only the count stops them
        assert (await login_from(app_server, stranger, "owner", "guess-guess")).status == 401
    # The stranger has used up the account-from-that-address allowance for the hour.
    refused = await login_from(app_server, stranger, "owner", "guess-guess")
    assert assert_refused(refused) > 15 * 60
    # From an address never used before, at most the account-wide back-off (1 min) applies.
    fresh = await login_from(app_server, "127.0.0.3", "owner", "owner-password")
    assert assert_refused(fresh) <= 60
    clock.now += 60_000
    assert (await login_from(app_server, "127.0.0.3", "owner", "owner-password")).status == 200
    # The owner, from the usual address, is not slowed at all, even right after a failure there.
    assert (await login_from(app_server, stranger, "owner", "guess-guess")).status == 429
    assert (await login_from(app_server, "127.0.0.1", "owner", "owner-password")).status == 200


async def test_many_addresses_on_one_account_meet_the_account_limit_but_not_its_owner(
    app_server: AppServer,
) -> None:
    guard = use_policy(app_server, failures_per_account=5)
    guard.now_ms = LeapingClock()
    await app_server.register("target", "target-password")
    assert (await login_from(app_server, "127.0.0.1", "target", "target-password")).status == 200
    statuses = [
        (await login_from(app_server, f"127.0.0.{10 + i}", "target", "guess-guess")).status for i in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3
    # A new address is refused account-wide; the owner's known one is exempt.
    assert (await login_from(app_server, "127.0.0.30", "target", "target-password")).status == 429
    assert (await login_from(app_server, "127.0.0.1", "target", "target-password")).status == 200


async def test_one_address_spraying_many_accounts_meets_the_address_limit(app_server: AppServer) -> None:
    use_policy(app_server, failures_per_address=4).now_ms = LeapingClock()
    statuses = [
        (await login_from(app_server, "127.0.0.4", f"someone{i}", "guess-guess")).status for i in range(6)
    ]
    assert statuses == [401] * 4 + [429] * 2
    # Another address is unaffected.
    assert (await login_from(app_server, "127.0.0.5", "someone9", "guess-guess")).status == 401


async def test_admin_token_login_shares_the_throttle(app_server: AppServer) -> None:
    use_policy(app_server).now_ms = SteppedClock()
    wrong = await call_from(
        app_server, "127.0.0.1", "POST", "/api/v1/admin/login", {"username": "admin", "password": "x" * 9}
    )
    assert wrong.status == 401
    # The same account from the same address, through the other door, meets the back-off.
    assert_refused(await login_from(app_server, "127.0.0.1", "admin", "whatever-else"))


async def test_registration_is_limited_per_address(app_server: AppServer) -> None:
    use_policy(app_server, registrations_per_address=3)
    for i in range(3):
        answer = await call_from(
            app_server,
            "127.0.0.6",
            "POST",
            "/api/v1/auth/register",
            {"username": f"newcomer{i}", "password": "newcomer-password"},
        )
        assert answer.status == 201, answer.body
    refused = await call_from(
        app_server,
        "127.0.0.6",
        "POST",
        "/api/v1/auth/register",
        {"username": "newcomer9", "password": "newcomer-password"},
    )
    assert assert_refused(refused) > 60
    assert await app_server.ctx.db.users.count_documents({"username_key": "newcomer9"}) == 0
    other = await call_from(
        app_server,
        "127.0.0.7",
        "POST",
        "/api/v1/auth/register",
        {"username": "newcomer9", "password": "newcomer-password"},
    )
    assert other.status == 201


async def test_without_redis_the_limits_hold_in_memory(redis_client: aioredis.Redis) -> None:
    # A real client aimed at a port where nothing listens: every call fails as when Redis is down.
    gone = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    clock = SteppedClock()
    guard = SigninGuard(
        gone, SigninPolicy(failures_per_account_address=3, registrations_per_address=2), clock
    )
    try:
        await guard.attempt("alice", "192.0.2.1")
        await guard.failed("alice", "192.0.2.1")
        with pytest.raises(SigninRefused) as refused:
            await guard.attempt("alice", "192.0.2.1")
        assert refused.value.retry_after_s == 1
        clock.now += 1_000
        await guard.attempt("alice", "192.0.2.1")
        await guard.failed("alice", "192.0.2.1")
        clock.now += 2_000
        await guard.attempt("alice", "192.0.2.1")
        await guard.failed("alice", "192.0.2.1")
        clock.now += 600_000  # past any back-off, inside the hour's window
        with pytest.raises(SigninRefused):  # three failures: the limit, not fail-open
            await guard.attempt("alice", "192.0.2.1")
        await guard.succeeded("alice", "192.0.2.1")
        await guard.attempt("alice", "192.0.2.1")
        await guard.succeeded("alice", "192.0.2.1")

        async def right_password(address: str) -> None:
            await guard.attempt("bob", address)
            await asyncio.sleep(0.01)  # the password check
            await guard.succeeded("bob", address)

        # Correct sign-ins at once, from one address and from two: none refuses another.
        await asyncio.gather(*(right_password(a) for a in ("192.0.2.1", "192.0.2.1", "192.0.2.9")))
        await guard.register("192.0.2.1")
        await guard.register("192.0.2.1")
        with pytest.raises(SigninRefused):
            await guard.register("192.0.2.1")
    finally:
        await gone.aclose()


async def test_the_application_signs_cookies_with_cookie_secret(app_server: AppServer) -> None:
    from admin.base import AdminServices
    from composition.app import make_app

    app_server.ctx.cookie_secret = b"c" * 40
    app = make_app(app_server.ctx)
    assert app.settings["cookie_secret"] == b"c" * 40
    assert AdminServices(app_server.ctx).cookie_secret == b"c" * 40
