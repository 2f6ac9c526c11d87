"""The tornado application: every REST route, the websocket, the demo page and static files."""

import pathlib

import tornado.routing
import tornado.web

from gateway import rest_admin, rest_auction, rest_auth, rest_deposits, sandbox
from gateway.context import AppContext
from gateway.http import HealthHandler, NotFoundHandler
from gateway.ws import BidderSocket, DemoPageHandler

STATIC_DIR = pathlib.Path(__file__).parent / "static"
# Frames over 64 KiB get an `error` from the handler; Tornado itself closes (1009) only past 1 MiB.
WEBSOCKET_MAX_MESSAGE_BYTES = 1 << 20


def make_app(ctx: AppContext, *, debug: bool = False) -> tornado.web.Application:
    """All routes; `ctx.options["sandbox_payments"] = False` leaves out the sandbox provider."""
    args = {"ctx": ctx}
    rest_routes = [
        *rest_auth.ROUTES,
        *rest_auction.ROUTES,
        *rest_deposits.ROUTES,
        *rest_admin.ROUTES,
    ]
    if ctx.options.get("sandbox_payments", True):
        rest_routes += sandbox.ROUTES
    routes: list[tornado.routing.URLSpec] = [
        tornado.web.url(r"/healthz", HealthHandler, args),
        *(tornado.web.url(pattern, handler, args) for pattern, handler in rest_routes),
        tornado.web.url(r"/ws", BidderSocket, args),
        tornado.web.url(r"/", DemoPageHandler, args),
    ]
    return tornado.web.Application(
        routes,
        debug=debug,
        # Bearer tokens, not cookies, authorize the JSON API, so there is no cookie to forge.
        xsrf_cookies=False,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        # Ping idle sockets so dead phones do not pile up.
        websocket_ping_interval=ctx.options.get("ws_ping_interval", 20),
        websocket_ping_timeout=ctx.options.get("ws_ping_timeout", 20),
        static_path=str(STATIC_DIR),
        static_url_prefix="/static/",
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        # Never send tracebacks to clients, even in debug mode.
        serve_traceback=False,
    )
