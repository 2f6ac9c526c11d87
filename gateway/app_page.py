"""The bidder app's page at `/`: one static HTML shell; the app itself is ES modules under
/static/app/ (docs/app.md). The page's only inline script is the import map, allowed by its hash."""

import base64
import hashlib
import re
from pathlib import Path

import tornado.web

APP_DIR = Path(__file__).resolve().parent / "static" / "app"
APP_PAGE = APP_DIR / "index.html"
IMPORT_MAP = re.compile(rb'<script type="importmap">(.*?)</script>', re.S)
PRELOAD_MARKER = re.compile(rb"<!-- modulepreload:[^>]*-->")


def with_module_preloads(page: bytes, app_dir: Path = APP_DIR) -> bytes:
    """The page with a modulepreload link for every module of the app: the browser fetches them
    all at once instead of discovering them import by import (one round trip per level)."""
    modules = sorted(app_dir.glob("vendor/*.js")) + sorted(app_dir.glob("js/*.js"))
    links = b"\n".join(
        b'<link rel="modulepreload" href="/static/app/' + str(path.relative_to(app_dir)).encode() + b'">'
        for path in modules
    )
    return PRELOAD_MARKER.sub(lambda _: links, page, count=1)


def content_security_policy(page: bytes) -> str:
    """No inline script but the import map (by its sha256), no plugins, no framing; images from us
    (and data: URLs for generated placeholders); the websocket on the same host."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(found).digest()).decode() + "'"
        for found in IMPORT_MAP.findall(page)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class AppPageHandler(tornado.web.RequestHandler):
    """`GET /`: the app shell, never cached (it names the modules; they revalidate by ETag)."""

    def initialize(self) -> None:
        self.page = with_module_preloads(APP_PAGE.read_bytes())
        self.policy = content_security_policy(self.page)

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", self.policy)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-cache")
        self.write(self.page)
