"""gateway/app.py remembers the first rule each path matched: it must pick exactly what Tornado's
own search over the rules picks, the first time and from memory."""

from __future__ import annotations

import tornado.httputil
import tornado.web

from gateway.app import Application
from tests.gateway.conftest import AppServer

PATHS = (
    "/",
    "/healthz",
    "/api/v1/sessions",
    "/api/v1/sessions/12",
    "/api/v1/lots/3",
    "/api/v1/lots/3/bids",
    "/api/v1/lots/3/result",
    "/api/v1/courses",
    "/api/v1/courses/7",
    "/api/v1/shop/categories",
    "/api/v1/cart",
    "/api/v1/cart/9",
    "/api/v1/posts",
    "/api/v1/posts/5",
    "/api/v1/posts/5/like",
    "/api/v1/admin/lots/4",
    "/static/app.js",
    "/api/v1/no/such/thing",
    "/api/v1/lots/abc",
)


def request(path: str) -> tornado.httputil.HTTPServerRequest:
    return tornado.httputil.HTTPServerRequest(
        headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1"}),
        start_line=tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1"),
    )


async def test_the_remembered_route_is_the_one_tornado_finds(app_server: AppServer) -> None:
    app = app_server.edge.request_callback
    assert isinstance(app, Application)
    for _ in range(2):  # found, then remembered
        for path in PATHS:
            ours = app.find_handler(request(path))
            tornados = tornado.web.Application.find_handler(app, request(path))
            assert (ours.handler_class, ours.path_args, ours.handler_kwargs) == (
                tornados.handler_class,
                tornados.path_args,
                tornados.handler_kwargs,
            ), path
