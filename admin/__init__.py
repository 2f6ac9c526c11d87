"""The admin web UI (运营中心), served under /admin; uploaded media under /media.

`composition/app.py` adds `admin.routes(ctx, services, actions)` to the gateway's routes. Every
write goes through `actions` (backoffice/actions.py), the service the REST admin endpoints use too.
Read from the context:
`media_dir` (where uploads are kept; DATA_DIR/media in production), `cookie_secret` (signs the
admin cookies; derived from the pseudonym secret when COOKIE_SECRET is unset), `media_max_bytes`
(default 5 MiB); sign-in limits are web/signin.py's, shared with the JSON login. See
docs/admin.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tornado.routing
import tornado.web

if TYPE_CHECKING:
    from admin.base import AdminServices
    from backoffice.actions import AdminActions
    from web.context import AppContext


def services(ctx: AppContext) -> AdminServices:
    """The admin side's services (cookie secret, media store, audit reads), for one application."""
    from admin.base import AdminServices

    return AdminServices(ctx)


def routes(ctx: AppContext, services: AdminServices, actions: AdminActions) -> list[tornado.routing.Rule]:
    """Every admin route; handlers receive the services and the admin-actions service explicitly."""
    from admin import (
        account,
        articles,
        audit,
        auth,
        catalog,
        community,
        degree,
        exports,
        live,
        moderation,
        money,
        pages,
        search,
        shop,
        staff,
        user_page,
    )
    from admin.base import STATIC_DIR, AdminHandler, AdminStaticHandler

    args = {"ctx": ctx, "admin": services, "actions": actions}
    handlers: list[tuple[str, type[AdminHandler]]] = [
        (r"/admin/login", auth.LoginHandler),
        (r"/admin/login/code", auth.CodeHandler),
        *account.ROUTES,
        (r"/admin/logout", auth.LogoutHandler),
        *pages.ROUTES,
        *catalog.ROUTES,
        *money.ROUTES,
        *shop.ROUTES,
        *community.ROUTES,
        *degree.ROUTES,
        *moderation.ROUTES,
        *articles.ROUTES,  # the community's articles (issue 23)
        *live.ROUTES,  # the live monitor per session and lot, and its controls (issue 24)
        *search.ROUTES,  # one search box (issue 24)
        *user_page.ROUTES,  # a user's whole page and support notes (issue 24)
        *exports.ROUTES,  # streamed CSV exports and the dashboard's figures (issue 24)
        *staff.ROUTES,  # staff and their roles (issue 24)
        *audit.ROUTES,
    ]
    rules: list[tornado.routing.Rule] = [
        tornado.web.url(pattern, handler, args) for pattern, handler in handlers
    ]
    rules.append(tornado.web.url(r"/admin/static/(.*)", AdminStaticHandler, {"path": str(STATIC_DIR)}))
    rules.append(tornado.web.url(r"/media/(.*)", pages.MediaHandler, {"admin": services}))
    # Anything else under /admin: the admin's own 404 page (still refusing non-admins first).
    rules.append(tornado.web.url(r"/admin/.*", pages.NotFoundPage, args))
    return rules
