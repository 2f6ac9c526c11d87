"""The tornado application: every REST route, the websocket, the bidder app's page and static files."""

import pathlib
from collections.abc import Sequence
from typing import Any

import tornado.routing
import tornado.web
from tornado.log import access_log

from backoffice.actions import AdminActions
from gateway import rest_admin, rest_auction, rest_auth, rest_community, rest_deposits
from gateway.app_page import AppPageHandler
from gateway.community import community_routes
from gateway.rest_orders import order_routes
from gateway.rest_shop import shop_routes
from gateway.ws import BidderSocket
from web.context import AppContext
from web.health import ReadyHandler, readiness_of
from web.http import HealthHandler, NotFoundHandler
from web.observability import MetricsHandler, metrics_of

STATIC_DIR = pathlib.Path(__file__).parent / "static"
# Frames over 64 KiB get an `error` from the handler; Tornado itself closes (1009) only past 1 MiB.
WEBSOCKET_MAX_MESSAGE_BYTES = 1 << 20


def routes(
    ctx: AppContext,
    actions: AdminActions,
    *,
    websocket: type[BidderSocket] = BidderSocket,
    payment_routes: Sequence[tuple[str, type, dict[str, Any]]] = (),
) -> list[tornado.routing.Rule]:
    """The gateway's routes. With `ctx.payment_provider` (see payments/config.py) the
    provider's notify/return/status endpoints (and the sandbox's pages, with the sandbox only), the
    course shop and auction orders (settlement) are served, and deposits are paid through it. The
    REST admin endpoints write through `actions`, the admin-actions service the admin UI uses too.
    `websocket` serves /ws (the benchmarks' variants subclass BidderSocket). `payment_routes` are
    payments/handlers.py's, which composition/app.py passes in (the gateway does not import them)."""
    metrics_of(ctx)  # one registry per process, its gauges installed (web/observability.py)
    readiness_of(ctx)  # one cached readiness per process (web/health.py)
    args = {"ctx": ctx}
    admin_args = {"ctx": ctx, "actions": actions}
    rest_routes = [
        *rest_auth.ROUTES,
        *rest_auction.ROUTES,
        *rest_deposits.ROUTES,
    ]
    # The community (issue 23: feed, articles, reactions, moderation): docs/community.md.
    community = [
        tornado.web.url(pattern, handler, kwargs) for pattern, handler, kwargs in community_routes(ctx)
    ]
    provider_routes: list[tornado.routing.URLSpec] = []
    if ctx.payment_provider is not None:
        router = ctx.payment_router or ctx.payment_provider.router
        rest_deposits.register_deposit_payments(ctx, router)
        provider_routes = [
            tornado.web.url(pattern, handler, kwargs)
            for pattern, handler, kwargs in [*payment_routes, *shop_routes(ctx), *order_routes(ctx)]
        ]
        # The shop's review moderation, written through `actions` (audited) like the admin endpoints.
        provider_routes += [tornado.web.url(p, h, admin_args) for p, h in rest_community.ADMIN_ROUTES]
    return [
        *provider_routes,
        *community,
        tornado.web.url(r"/healthz", HealthHandler, args),
        tornado.web.url(r"/readyz", ReadyHandler, args),
        tornado.web.url(r"/metrics", MetricsHandler, args),
        *(tornado.web.url(pattern, handler, args) for pattern, handler in rest_routes),
        *(tornado.web.url(pattern, handler, admin_args) for pattern, handler in rest_admin.ROUTES),
        tornado.web.url(r"/ws", websocket, args),
        tornado.web.url(r"/", AppPageHandler),
    ]


def application(
    ctx: AppContext, routes: list[tornado.routing.Rule], *, cookie_secret: bytes, debug: bool = False
) -> tornado.web.Application:
    """The public application over `routes` (composition/app.py joins the gateway's and the admin's)."""
    args = {"ctx": ctx}
    return tornado.web.Application(
        routes,
        debug=debug,
        # COOKIE_SECRET (or the admin's derived key): any handler's signed cookies use the same key.
        cookie_secret=cookie_secret,
        # Bearer tokens, not cookies, authorize the JSON API, so there is no cookie to forge.
        xsrf_cookies=False,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        # Ping idle sockets so dead phones do not pile up.
        websocket_ping_interval=ctx.limits.ws_ping_interval,
        websocket_ping_timeout=ctx.limits.ws_ping_timeout,
        static_path=str(STATIC_DIR),
        static_url_prefix="/static/",
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        # Never send tracebacks to clients, even in debug mode.
        serve_traceback=False,
        log_function=log_request,
    )


def make_engine_app(ctx: AppContext) -> tornado.web.Application:
    """An engine process's own port: health, readiness and metrics only (no public API)."""
    metrics_of(ctx)
    readiness_of(ctx)
    args = {"ctx": ctx}
    return tornado.web.Application(
        [
            tornado.web.url(r"/healthz", HealthHandler, args),
            tornado.web.url(r"/readyz", ReadyHandler, args),
            tornado.web.url(r"/metrics", MetricsHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        serve_traceback=False,
        log_function=log_request,
    )


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One JSON-ready access log record per request, with its request id."""
    status = handler.get_status()
    level = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    level(
        "%s %s %d",
        handler.request.method,
        handler.request.path,
        status,
        extra={
            "request_id": handler._headers.get("X-Request-Id", ""),
            "status": status,
            "duration_ms": round(1000.0 * handler.request.request_time(), 2),
            "remote_ip": handler.request.remote_ip,
        },
    )
