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
        self.page = APP_PAGE.read_bytes()
        self.policy = content_security_policy(self.page)

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", self.policy)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-cache")
        self.write(self.page)
