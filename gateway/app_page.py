"""The bidder app's page at `/`: one static HTML shell; the app itself is ES modules under
/static/app/ (docs/app.md). The page's only inline script is the import map, allowed by its hash."""

import base64
import functools
import hashlib
import re
from pathlib import Path

import tornado.web

APP_DIR = Path(__file__).resolve().parent / "static" / "app"
APP_PAGE = APP_DIR / "index.html"
IMPORT_MAP = re.compile(rb'<script type="importmap">(.*?)</script>', re.S)
PRELOAD_MARKER = re.compile(rb"<!-- modulepreload:[^>]*-->")


# Loaded on demand (main.js `lazyGroups`), so not preloaded: the account's, the shop's, the degree's
# and the community's.
LAZY_MODULES = re.compile(r"js/(account|shop|degree|community)[^/]*\.js")
LANGUAGES = ("zh-CN", "en")


def with_module_preloads(page: bytes, language: str = "en", app_dir: Path = APP_DIR) -> bytes:
    """The page with a modulepreload link for every module the first screen needs and the strings
    of `language`: the browser fetches them all at once instead of discovering them import by
    import (one round trip per level)."""
    modules = [
        path.relative_to(app_dir).as_posix()
        for path in sorted(app_dir.glob("vendor/*.js")) + sorted(app_dir.glob("js/*.js"))
    ]
    modules = [module for module in modules if not LAZY_MODULES.fullmatch(module)]
    modules.append(f"js/lang/{language}.js")
    links = b"\n".join(b'<link rel="modulepreload" href="/static/app/' + m.encode() + b'">' for m in modules)
    return PRELOAD_MARKER.sub(lambda _: links, page, count=1)


def preferred_language(accept_language: str) -> str:
    """The app's language for an Accept-Language header, as js/i18n.js decides it (Chinese when
    preferred before English; English otherwise); the app may still switch to a remembered choice."""
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag == "zh" or tag.startswith("zh-"):
            return "zh-CN"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return "en"


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


@functools.cache
def app_pages() -> tuple[dict[str, bytes], str]:
    """The page per language and its policy, built once per process (the files do not change)."""
    shell = APP_PAGE.read_bytes()
    return {
        language: with_module_preloads(shell, language) for language in LANGUAGES
    }, content_security_policy(shell)


class AppPageHandler(tornado.web.RequestHandler):
    """`GET /`: the app shell, never cached (it names the modules; they revalidate by ETag)."""

    def get(self) -> None:
        pages, policy = app_pages()
        language = preferred_language(self.request.headers.get("Accept-Language", ""))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", policy)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept-Language")
        self.write(pages[language])
