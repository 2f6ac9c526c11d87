"""Register, login, me, logout and the admin login, through the real server."""

from tests.gateway.conftest import ADMIN_PASSWORD, AppServer


async def test_register_login_me_logout(app_server: AppServer) -> None:
    user_id, token = await app_server.register("alice", "correct-horse")
    me = await app_server.call("GET", "/api/v1/me", token=token)
    assert me.status == 200
    assert me.json == {
        "user_id": user_id,
        "username": "alice",
        "display_name": "alice",
        "balance": 0,
        "is_mentor": False,
    }

    login = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "alice", "password": "correct-horse"}
    )
    assert login.status == 200
    assert login.json["user_id"] == user_id
    second_token = login.json["token"]
    assert second_token != token

    logout = await app_server.call("POST", "/api/v1/auth/logout", token=token)
    assert logout.status == 200 and logout.json == {"ok": True}
    # The revoked token is refused at once (the cache is dropped on logout)...
    gone = await app_server.call("GET", "/api/v1/me", token=token)
    assert gone.status == 401 and gone.code == "UNAUTHORIZED"
    # ...and the other session stays valid.
    still = await app_server.call("GET", "/api/v1/me", token=second_token)
    assert still.status == 200


async def test_username_taken_regardless_of_case(app_server: AppServer) -> None:
    await app_server.register("Carol")
    for name in ("Carol", "carol"):
        again = await app_server.call(
            "POST", "/api/v1/auth/register", {"username": name, "password": "another-pass"}
        )
        assert again.status == 409 and again.code == "USERNAME_TAKEN"


async def test_bad_credentials_look_the_same(app_server: AppServer) -> None:
    await app_server.register("bob", "right-password")
    wrong = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "bob", "password": "wrong-password"}
    )
    unknown = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "nobody", "password": "wrong-password"}
    )
    assert wrong.status == unknown.status == 401
    assert wrong.json == unknown.json
    assert wrong.code == "BAD_CREDENTIALS"


async def test_register_rules(app_server: AppServer) -> None:
    cases = [
        {"username": "ab", "password": "long-enough"},
        {"username": "x" * 33, "password": "long-enough"},
        {"username": "has space", "password": "long-enough"},
        {"username": "名字名字", "password": "long-enough"},
        {"username": "dave", "password": "short"},
        {"username": "dave", "password": "p" * 129},
    ]
    for body in cases:
        answer = await app_server.call("POST", "/api/v1/auth/register", body)
        assert answer.status == 400 and answer.code == "VALIDATION", body
    ok = await app_server.call(
        "POST", "/api/v1/auth/register", {"username": "d.a-v_e", "password": "p" * 128}
    )
    assert ok.status == 201


async def test_tokens_are_checked(app_server: AppServer) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": "Basic YWxpY2U6cGFzcw=="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer " + "x" * 5000},
    ):
        answer = await app_server.call("GET", "/api/v1/me", headers=headers)
        assert answer.status == 401 and answer.code == "UNAUTHORIZED", headers
    anonymous = await app_server.call("GET", "/api/v1/me")
    assert anonymous.status == 401
    logout = await app_server.call("POST", "/api/v1/auth/logout")
    assert logout.status == 401


async def test_admin_login(app_server: AppServer) -> None:
    await app_server.register("eve", "eve-password")
    refused = await app_server.call(
        "POST", "/api/v1/admin/login", {"username": "eve", "password": "eve-password"}
    )
    assert refused.status == 401 and refused.code == "BAD_CREDENTIALS"
    admin = await app_server.call(
        "POST", "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert admin.status == 200
    user = await app_server.ctx.accounts.user_for_token(admin.json["token"])
    assert user is not None and user.is_admin
    # A bidder-side login of the admin account does not carry admin rights.
    plain = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert plain.status == 200
    plain_user = await app_server.ctx.accounts.user_for_token(plain.json["token"])
    assert plain_user is not None and not plain_user.is_admin
    session = await app_server.call(
        "POST", "/api/v1/admin/sessions", app_server.session_body(), token=plain.json["token"]
    )
    assert session.status == 403 and session.code == "FORBIDDEN"


async def test_failed_logins_are_throttled(app_server: AppServer) -> None:
    # web/signin.py: a wrong guess starts a back-off (1 s, doubling); tests/gateway/test_signin.py
    # covers the limits themselves.
    await app_server.register("frank", "frank-password")
    answer = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "frank", "password": "nope-nope"}
    )
    assert answer.status == 401
    throttled = await app_server.call(
        "POST", "/api/v1/auth/login", {"username": "frank", "password": "frank-password"}
    )
    assert throttled.status == 429 and throttled.code == "RATE_LIMITED"
    assert throttled.headers["Retry-After"] == "1" and throttled.json["error"]["retry_after_s"] == 1
