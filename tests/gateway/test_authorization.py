"""The authorization matrix: nobody reads or changes another user's things, and every admin
endpoint refuses non-admins. Routes are enumerated from the application itself, so a new admin
endpoint is covered the day it is added."""

from __future__ import annotations

import re
from typing import Any

import tornado.httpclient
import tornado.web

from composition.app import make_app
from gateway.rest_orders import order_routes
from tests.gateway.test_orders_api import Rig, rig  # noqa: F401  (fixture used by name)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def sample_group(match: re.Match[str]) -> str:
    """A value a path group accepts: the first word of an alternation, else an id."""
    inner = match.group(1).removeprefix("?:")
    return inner.split("|")[0] if re.fullmatch(r"[a-z_|-]+", inner) else "1"


def admin_endpoints(app: tornado.web.Application) -> list[tuple[str, str]]:
    """(method, sample path) of every route under /api/v1/admin/ and /admin/ except sign-in."""
    endpoints = []
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern.rstrip("$")  # type: ignore[attr-defined]
        if not pattern.startswith(("/api/v1/admin/", "/admin")) or pattern.endswith(
            ("login", "static/(.*)", ".*")
        ):
            continue
        path = re.sub(r"\(([^)]*)\)", sample_group, pattern).replace("\\", "")
        handler = rule.target
        for method in METHODS:
            if (isinstance(handler, type) and handler.__dict__.get(method.lower())) or any(
                method.lower() in vars(base) for base in getattr(handler, "__mro__", ())[:-3]
            ):
                endpoints.append((method, path))
    return sorted(set(endpoints))


async def raw_status(rig: Rig, method: str, path: str, token: str | None) -> int:  # noqa: F811
    """The first answer, redirects not followed (a bearer token means nothing to the admin UI)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        rig.api.base_url + path,
        method=method,
        headers=headers,
        body=b"" if method in ("POST", "PUT", "PATCH") else None,
        follow_redirects=False,
        raise_error=False,
    )
    return int(response.code)


async def test_every_admin_endpoint_refuses_anonymous_and_ordinary_users(rig: Rig) -> None:  # noqa: F811
    app = make_app(rig.api.ctx)
    app.add_handlers(r".*", order_routes(rig.api.ctx))
    endpoints = admin_endpoints(app)
    assert len(endpoints) >= 20, endpoints  # the enumeration itself works
    _user, token = await rig.user()
    for method, path in endpoints:
        body: Any = {} if method in ("POST", "PUT", "PATCH") else None
        for who in (None, token):
            if path.startswith("/admin"):
                # Pages redirect to the sign-in page; their JSON and form posts answer 401/403.
                status = await raw_status(rig, method, path, who)
                assert status in (302, 303, 401, 403), (method, path, who is not None, status)
                continue
            if body is None:
                answer = await rig.api.call(method, path, token=who)
            else:
                answer = await rig.api.call(method, path, body, token=who)
            if True:
                assert answer.status in (401, 403), (
                    method,
                    path,
                    who is not None,
                    answer.status,
                    answer.body,
                )


async def test_another_users_orders_addresses_deposits_and_coupons_are_invisible(rig: Rig) -> None:  # noqa: F811
    won = await rig.won_lot()
    order_id = won["order"]["id"]
    owner = won["winner_token"]
    _intruder_id, intruder = await rig.user(50_000)
    address_id = await rig.address(owner)
    session_id = won["session_id"]
    coupon_id = await rig.coupon(session_id)
    assert (await rig.api.call("POST", f"/api/v1/coupons/{coupon_id}/claim", token=owner)).status in (
        200,
        201,
    )

    attempts: list[tuple[str, str, Any]] = [
        ("GET", f"/api/v1/orders/{order_id}", None),
        ("GET", f"/api/v1/orders/{order_id}/checkout", None),
        (
            "POST",
            f"/api/v1/orders/{order_id}/pay",
            {
                "coupon_id": None,
                "address_id": address_id,
                "pay_with": "balance",
                "idempotency_key": "steal-1",
            },
        ),
        ("GET", f"/api/v1/addresses/{address_id}", None),
        (
            "PUT",
            f"/api/v1/addresses/{address_id}",
            {"name": "Thief", "phone": "139 0000 0000", "province": "X", "detail": "Y"},
        ),
        ("DELETE", f"/api/v1/addresses/{address_id}", None),
    ]
    for method, path, body in attempts:
        answer = await (
            rig.api.call(method, path, token=intruder)
            if body is None
            else rig.api.call(method, path, body, token=intruder)
        )
        assert answer.status in (403, 404), (method, path, answer.status, answer.body)
    # Lists are the caller's own only.
    assert (await rig.api.call("GET", "/api/v1/orders", token=intruder)).json["groups"][0]["items"] == []
    assert (await rig.api.call("GET", "/api/v1/deposits", token=intruder)).json["items"] == []
    mine = (await rig.api.call("GET", "/api/v1/coupons/mine", token=intruder)).json
    assert not (mine.get("items") or mine.get("coupons"))
    assert (await rig.api.call("GET", "/api/v1/addresses", token=intruder)).json["items"] == []
    # And the owner's things are untouched.
    order = (await rig.api.call("GET", f"/api/v1/orders/{order_id}", token=owner)).json
    assert order["status"] == 1
    assert (await rig.api.call("GET", f"/api/v1/addresses/{address_id}", token=owner)).status == 200
