"""The public application: the gateway's routes, the payment handlers' and the admin UI's, joined
here (not in gateway/), so no entry point imports another. Both write through one admin-actions service."""

from __future__ import annotations

import tornado.web

import admin
from composition.backoffice import build_admin_actions
from gateway import app as gateway_app
from gateway.app import make_engine_app as make_engine_app  # re-exported: run.py takes both from here
from gateway.ws import BidderSocket
from payments.handlers import payment_routes
from web.context import AppContext


def make_app(
    ctx: AppContext, *, debug: bool = False, websocket: type[BidderSocket] = BidderSocket
) -> tornado.web.Application:
    """`websocket` serves /ws: benchmarks/e2e/gavel_server.py passes its variants' subclasses."""
    actions = build_admin_actions(ctx)
    ctx.admin_actions = actions  # the shop's admin refund decisions (gateway/rest_shop_orders.py)
    services = admin.services(ctx)
    # The provider's endpoints (and the sandbox's pages) are served when a provider is configured.
    payments = payment_routes(ctx) if ctx.payment_provider is not None else []
    rules = gateway_app.routes(ctx, actions, websocket=websocket, payment_routes=payments)
    rules.extend(admin.routes(ctx, services, actions))  # /admin (own cookie secret and XSRF) and /media
    return gateway_app.application(ctx, rules, cookie_secret=ctx.cookie_secret, debug=debug)
