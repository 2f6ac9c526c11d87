"""Bad input of every kind gets a 4xx with a stable code; nothing a client sends produces a 500."""

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import AppServer

JSON = {"Content-Type": "application/json"}


async def test_body_must_be_json(app_server: AppServer) -> None:
    for raw in (b"", b"   ", b"not json", b"{", b"\xff\xfe", b'{"a": NaN}', b"[" * 2000 + b"]" * 2000):
        answer = await app_server.call("POST", "/api/v1/auth/register", raw=raw, headers=JSON)
        assert answer.status == 400 and answer.code == "INVALID_JSON", raw[:20]


async def test_body_must_be_an_object_with_known_fields(app_server: AppServer) -> None:
    for body in ([], [1, 2], "text", 12, None, True):
        answer = await app_server.call("POST", "/api/v1/auth/register", body)
        assert answer.status == 400 and answer.code == "VALIDATION", body
    unknown = await app_server.call(
        "POST", "/api/v1/auth/register", {"username": "ann", "password": "long-enough", "admin": True}
    )
    assert unknown.status == 400 and "admin" in unknown.json["error"]["message"]
    missing = await app_server.call("POST", "/api/v1/auth/register", {"username": "ann"})
    assert missing.status == 400 and "password" in missing.json["error"]["message"]


@pytest.mark.parametrize(
    "amount",
    [True, False, 1.0, 1.5, "100", None, -1, 0, 2**53, 2**63, 2**64 + 1, 10**30, [100], {"v": 100}],
)
async def test_integers_must_be_real_integers_in_range(app_server: AppServer, amount: Any) -> None:
    user_id, _ = await app_server.register()
    answer = await app_server.call(
        "POST",
        f"/api/v1/admin/users/{user_id}/credit",
        {"amount": amount},
        token=await app_server.admin_token(),
    )
    assert answer.status == 400 and answer.code == "VALIDATION", amount
    me = await app_server.ctx.accounts.profile(user_id)
    assert me.balance == 0


async def test_huge_integer_literal_is_refused(app_server: AppServer) -> None:
    user_id, _ = await app_server.register()
    raw = b'{"amount": 123456789012345678901234567890}'
    answer = await app_server.call(
        "POST",
        f"/api/v1/admin/users/{user_id}/credit",
        raw=raw,
        headers=JSON,
        token=await app_server.admin_token(),
    )
    assert answer.status == 400 and answer.code == "VALIDATION"


async def test_oversized_body(app_server: AppServer) -> None:
    just_over = b'{"username": "' + b"x" * (64 * 1024) + b'"}'
    answer = await app_server.call("POST", "/api/v1/auth/register", raw=just_over, headers=JSON)
    assert answer.status == 413 and answer.code == "PAYLOAD_TOO_LARGE"
    # Declared far beyond the limit: refused before the body is read.
    huge = b"x" * (2 * 1024 * 1024)
    answer = await app_server.call("POST", "/api/v1/auth/register", raw=huge, headers=JSON)
    assert answer.status == 413 and answer.code == "PAYLOAD_TOO_LARGE"
    # Just under is read normally (and refused for its content).
    under = b'{"username": "' + b"x" * (60 * 1024) + b'", "password": "long-enough"}'
    answer = await app_server.call("POST", "/api/v1/auth/register", raw=under, headers=JSON)
    assert answer.status == 400 and answer.code == "VALIDATION"


async def test_unknown_paths_and_methods(app_server: AppServer) -> None:
    for path in ("/api/v1/nothing", "/api/v1/lots/abc", "/api/v1/lots/-1", "/api/v2/me"):
        answer = await app_server.call("GET", path)
        assert answer.status == 404 and answer.code == "NOT_FOUND", path
    for path in ("/api/v1/lots/0", "/api/v1/lots/99999999999999999999", "/api/v1/sessions/12345"):
        answer = await app_server.call("GET", path)
        assert answer.status == 404 and answer.code == "NOT_FOUND", path
    wrong_method = await app_server.call("DELETE", "/api/v1/me")
    assert wrong_method.status == 405 and wrong_method.code == "METHOD_NOT_ALLOWED"
    put = await app_server.call("PUT", "/api/v1/auth/register", {"username": "x"})
    assert put.status == 405


async def test_query_parameters(app_server: AppServer) -> None:
    for query in (
        "page=0",
        "page=-1",
        "page=x",
        "page=1.5",
        "page_size=0",
        "page_size=101",
        "state=0",
        "state=5",
    ):
        answer = await app_server.call("GET", f"/api/v1/sessions?{query}")
        assert answer.status == 400 and answer.code == "VALIDATION", query
    ok = await app_server.call("GET", "/api/v1/sessions?page=3&page_size=100&state=1")
    assert ok.status == 200 and ok.json["items"] == []


async def test_session_times_are_checked(app_server: AppServer) -> None:
    token = await app_server.admin_token()
    bad_times: list[dict[str, Any]] = [
        {"bidding_start": "2030-01-01T00:00:00"},  # no offset
        {"bidding_start": "yesterday"},
        {"bidding_start": 1_700_000_000_000},
        {"bidding_start": "2030-13-01T00:00:00Z"},
        {"bidding_end": "0001-01-01T00:00:00+14:00"},
        {"bidding_end": "1969-12-31T23:59:59Z"},
    ]
    for override in bad_times:
        answer = await app_server.call(
            "POST", "/api/v1/admin/sessions", app_server.session_body(**override), token=token
        )
        assert answer.status == 400 and answer.code == "VALIDATION", override
    body = app_server.session_body()
    body["bidding_end"], body["bidding_start"] = body["bidding_start"], body["bidding_end"]
    disordered = await app_server.call("POST", "/api/v1/admin/sessions", body, token=token)
    assert disordered.status == 400 and disordered.code == "VALIDATION"
    past = app_server.session_body(
        preview_start="2020-01-01T00:00:00Z",
        preview_end="2020-01-01T00:00:00Z",
        bidding_start="2020-01-01T00:00:00Z",
        bidding_end="2020-01-02T00:00:00Z",
    )
    answer = await app_server.call("POST", "/api/v1/admin/sessions", past, token=token)
    assert answer.status == 400 and answer.code == "VALIDATION"
    # Offsets other than UTC are accepted and converted.
    shifted = await app_server.call(
        "POST",
        "/api/v1/admin/sessions",
        app_server.session_body(bidding_end="2099-01-01T08:00:00+08:00"),
        token=token,
    )
    assert shifted.status == 201 and shifted.json["bidding_end"] == "2099-01-01T00:00:00.000Z"


async def test_lot_fields_are_checked(app_server: AppServer) -> None:
    session_id = await app_server.create_session()
    token = await app_server.admin_token()
    bad: list[dict[str, Any]] = [
        {"start_price": 0},
        {"unit": 0},
        {"unit": None},  # neither unit nor increment_bands
        {"images": ["javascript:alert(1)"]},
        {"images": "https://x.test/a.jpg"},
        {"images": ["https://x.test/a.jpg"] * 21},
        {"specs": [{"key": "size"}]},
        {"specs": [{"key": "size", "value": "1", "extra": 1}]},
        {"specs": [["size", "1"]]},
        {"increment_bands": []},
        {"increment_bands": [[100, 10]]},  # the last band must be open (null)
        {"increment_bands": [[None, 10], [None, 20]]},
        {"increment_bands": [[200, 10], [100, 20], [None, 50]]},
        {"increment_bands": [[100]]},
        {"title": "line\nbreak"},
        {"title": ""},
        {"catalogue_no": "x" * 33},
    ]
    for override in bad:
        answer = await app_server.call(
            "POST", f"/api/v1/admin/sessions/{session_id}/lots", app_server.lot_body(**override), token=token
        )
        assert answer.status == 400 and answer.code == "VALIDATION", override


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "username",
        "password",
        "amount",
        "session_id",
        "lot_id",
        "pay_with",
        "title",
        "deposit",
        "bidding_start",
        "bidding_end",
        "preview_start",
        "preview_end",
        "soft_close_seconds",
        "catalogue_no",
        "start_price",
        "unit",
        "increment_bands",
        "images",
        "specs",
        "reason",
        "idempotency_key",
        "outcome",
    ]
)
bodies = st.one_of(json_values, st.dictionaries(field_names, json_values, max_size=8))
ENDPOINTS = [
    ("POST", "/api/v1/auth/register", False),
    ("POST", "/api/v1/auth/login", False),
    ("POST", "/api/v1/admin/login", False),
    ("POST", "/api/v1/deposits", True),
    ("POST", "/api/v1/admin/sessions", True),
    ("PATCH", "/api/v1/admin/sessions/1", True),
    ("POST", "/api/v1/admin/sessions/1/lots", True),
    ("PATCH", "/api/v1/admin/lots/1", True),
    ("POST", "/api/v1/admin/users/1/credit", True),
    ("POST", "/api/v1/admin/lots/1/cancel", True),
    ("POST", "/api/v1/admin/lots/1/open", True),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
async def test_no_body_causes_a_server_error(
    app_server: AppServer, endpoint: tuple[str, str, bool], body: Any
) -> None:
    method, path, as_admin = endpoint
    if not app_server.engine.book.sessions:
        session_id = await app_server.create_session(deposit=100)
        await app_server.create_lot(session_id)
    token = await app_server.admin_token() if as_admin else None
    answer = await app_server.call(method, path, body, token=token)
    assert answer.status < 500, (method, path, body, answer.body)
    if answer.status >= 400:
        assert isinstance(answer.code, str)


def valid_bodies(app_server: AppServer) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """One valid request per writing endpoint (session 1 and lot 1 exist)."""
    return {
        "register": ("POST", "/api/v1/auth/register", {"username": "fuzzer", "password": "long-enough"}),
        "deposit": ("POST", "/api/v1/deposits", {"session_id": 1, "lot_id": 1, "pay_with": "balance"}),
        "session": ("POST", "/api/v1/admin/sessions", app_server.session_body()),
        "patch_session": ("PATCH", "/api/v1/admin/sessions/1", {"title": "t", "deposit": 5}),
        "lot": (
            "POST",
            "/api/v1/admin/sessions/1/lots",
            app_server.lot_body(increment_bands=[[50_000, 100], [None, 500]]),
        ),
        "patch_lot": ("PATCH", "/api/v1/admin/lots/1", {"unit": 100, "specs": [{"key": "k", "value": "v"}]}),
        "credit": ("POST", "/api/v1/admin/users/2/credit", {"amount": 5, "idempotency_key": "k-1"}),
        "cancel": ("POST", "/api/v1/admin/lots/1/cancel", {"reason": "r"}),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(
        ["register", "deposit", "session", "patch_session", "lot", "patch_lot", "credit", "cancel"]
    ),
    field_index=st.integers(min_value=0, max_value=20),
    value=json_values,
    drop=st.booleans(),
)
async def test_one_bad_field_never_causes_a_server_error(
    app_server: AppServer, which: str, field_index: int, value: Any, drop: bool
) -> None:
    """Starting from a valid request, one field replaced (or removed) still gets a clean answer."""
    if not app_server.engine.book.sessions:
        session_id = await app_server.create_session(deposit=100)
        await app_server.create_lot(session_id)
        await app_server.register()
    method, path, body = valid_bodies(app_server)[which]
    name = sorted(body)[field_index % len(body)]
    if drop:
        del body[name]
    else:
        body[name] = value
    token = None if which == "register" else await app_server.admin_token()
    answer = await app_server.call(method, path, body, token=token)
    assert answer.status < 500, (method, path, body, answer.body)
    if answer.status >= 400:
        assert isinstance(answer.code, str)
