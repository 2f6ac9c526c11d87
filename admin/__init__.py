"""The admin web UI (运营中心), served under /admin; uploaded media under /media.

`gateway/app.py` adds `admin.routes(ctx)` to its route list. Read from the context:
`media_dir` (where uploads are kept; DATA_DIR/media in production), `cookie_secret` (signs the
admin cookies; derived from the pseudonym secret when COOKIE_SECRET is unset), `media_max_bytes`
(default 5 MiB); sign-in limits are gateway/signin.py's, shared with the JSON login. See
docs/admin.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tornado.routing
import tornado.web

if TYPE_CHECKING:
    from gateway.context import AppContext


def routes(ctx: AppContext) -> list[tornado.routing.Rule]:
    """Every admin route, with the admin services built once for this application."""
    from admin import account, auth, catalog, money, pages, shop
    from admin.base import STATIC_DIR, AdminHandler, AdminServices, AdminStaticHandler

    services = AdminServices(ctx)
    args = {"ctx": ctx, "admin": services}
    handlers: list[tuple[str, type[AdminHandler]]] = [
        (r"/admin/login", auth.LoginHandler),
        (r"/admin/login/code", auth.CodeHandler),
        *account.ROUTES,
        (r"/admin/logout", auth.LogoutHandler),
        *pages.ROUTES,
        *catalog.ROUTES,
        *money.ROUTES,
        *shop.ROUTES,
    ]
    rules: list[tornado.routing.Rule] = [
        tornado.web.url(pattern, handler, args) for pattern, handler in handlers
    ]
    rules.append(tornado.web.url(r"/admin/static/(.*)", AdminStaticHandler, {"path": str(STATIC_DIR)}))
    rules.append(tornado.web.url(r"/media/(.*)", pages.MediaHandler, {"admin": services}))
    # Anything else under /admin: the admin's own 404 page (still refusing non-admins first).
    rules.append(tornado.web.url(r"/admin/.*", pages.NotFoundPage, args))
    return rules
