"""The tornado application: every REST route, the websocket, the bidder app's page and static files."""

import logging
import pathlib
from collections.abc import Sequence
from typing import Any

import tornado.httputil
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


# Paths whose first matching rule is remembered; past this many the memory starts again (a scan of
# made-up paths costs the scans, never memory).
ROUTE_MEMORY = 4096


class Application(tornado.web.Application):
    """Tornado's application, with each path's route looked up once: Tornado tries the rules' regular
    expressions in order, and with some two hundred routes that was a third of a small request's
    CPU. A rule on the path alone (`PathMatches`, every `tornado.web.url`) matches as a function of
    the path, so the index of the first rule a path matched is remembered and only that rule is
    matched again (for its arguments). The order of the rules decides exactly as before; any other
    kind of rule (a host rule of `add_handlers`, a nested router) turns the memory off."""

    def __init__(self, handlers: list[tornado.routing.Rule], **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self._first_rule: dict[str, int] = {}
        self._rules_known = -1
        self._path_only = False

    def _check_rules(self) -> None:
        rules = self.wildcard_router.rules
        self._first_rule.clear()
        self._rules_known = len(rules)
        self._path_only = len(self.default_router.rules) == 1 and all(
            isinstance(rule.matcher, tornado.routing.PathMatches) and isinstance(rule.target, type)
            for rule in rules
        )

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        rules = self.wildcard_router.rules
        if len(rules) != self._rules_known or len(self.default_router.rules) != 1:
            self._check_rules()
        path = request.path
        if not self._path_only or path is None:
            return super().find_handler(request, **kwargs)
        index = self._first_rule.get(path)
        if index is None:
            index = next((n for n, rule in enumerate(rules) if rule.matcher.match(request) is not None), -1)
            if len(self._first_rule) >= ROUTE_MEMORY:
                self._first_rule.clear()
            self._first_rule[path] = index
        if index < 0:
            return super().find_handler(request, **kwargs)  # no rule: the default handler
        rule = rules[index]
        params = rule.matcher.match(request)
        if params is None:  # cannot happen for a path-only rule; Tornado's own search then decides
            return super().find_handler(request, **kwargs)
        if rule.target_kwargs:
            params["target_kwargs"] = rule.target_kwargs
        return self.wildcard_router.get_target_delegate(rule.target, request, **params)


def application(
    ctx: AppContext, routes: list[tornado.routing.Rule], *, cookie_secret: bytes, debug: bool = False
) -> tornado.web.Application:
    """The public application over `routes` (composition/app.py joins the gateway's and the admin's)."""
    args = {"ctx": ctx}
    return Application(
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
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return  # the record's fields are not built for nobody (most requests, at LOG_LEVEL=WARNING)
    access_log.log(
        level,
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
