"""What every admin handler shares: sign-in by signed cookie, XSRF, security headers, rendering, audit.

Security model (docs/admin.md):
- The cookie `gavel_admin` holds an admin-scoped bearer token (from `Accounts.login(admin=True)`),
  signed with the admin cookie secret, HttpOnly, SameSite=Strict, path /admin, Secure over https.
  Every request re-checks the token (`Accounts.user_for_token`), so sign-out and demotion take
  effect at once; a non-admin is refused on every page (redirect to /admin/login) and every JSON
  endpoint (401 without credentials, 403 with a non-admin's).
- Every non-GET request must carry the XSRF token (form field `_xsrf` or header `X-XSRFToken`)
  matching the `_xsrf` cookie; `check_xsrf_cookie()` is called here, explicitly, because the
  application itself runs with `xsrf_cookies=False` for the bearer-token JSON API.
- Pages are Tornado templates with autoescape on; scripts only from /admin/static (CSP).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import hashlib
import http.client
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import tornado.escape
import tornado.web

from backoffice.actions import Actor, AdminActions, NotAuthorized
from backoffice.roles import can, effective_roles
from backoffice.timezone import business_zone, format_local, input_value, parse_local, zone_label
from engine.book.errors import GavelError
from persistence.accounts import AuthUser
from persistence.audit import AuditLog
from persistence.media import MediaStore
from persistence.mongo import from_ms, iso_utc, to_ms
from web.context import AppContext
from web.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    code_for_status,
    dependency_fault,
    describe_fault,
    error_body,
    status_for,
)
from web.media import media_of

log = logging.getLogger("gavel.admin")

ADMIN_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = ADMIN_DIR / "templates"
STATIC_DIR = ADMIN_DIR / "static"
PREFIX = "/admin"
LOGIN_URL = PREFIX + "/login"
SESSION_COOKIE = "gavel_admin"
FLASH_COOKIE = "gavel_admin_flash"
XSRF_COOKIE = "_xsrf"
# A sign-in lasts at most this long (the signed value carries its own time; the cookie has no
# expiry, so it also ends with the browser session).
SESSION_MAX_AGE_DAYS = 0.5
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_MONEY_FEN = 10**13  # as the REST API (web/catalog_fields.py)
_MONEY = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,2})?")
_INT = re.compile(r"[0-9]{1,16}")
_HOST = re.compile(r"[A-Za-z0-9.\[\]:-]{1,255}")


class FormError(GavelError):
    """A form field that cannot be read; shown next to the form, status 400."""

    code = "VALIDATION"


class Unavailable(GavelError):
    code = "UNAVAILABLE"


# -- the admin side's services, built once per application ------------------------------------------
class AdminServices:
    """Audit log, media store and cookie secret; handler argument `admin`."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.audit = AuditLog(ctx.db)
        self._media: MediaStore | None = None
        # COOKIE_SECRET, or derived from the pseudonym secret (web/context.py).
        self.cookie_secret: bytes = ctx.cookie_secret

    @property
    def media(self) -> MediaStore:
        """The media store, rooted at `ctx.media_dir` (read at first use)."""
        if self._media is None:
            self._media = media_of(self.ctx)
        return self._media

    def media_url(self, path: str) -> str:
        """The URL stored on lots and sessions: absolute on the public origin when known."""
        ctx = getattr(self, "ctx", None)
        base = ctx.base_url.rstrip("/") if ctx is not None else ""
        return base + path if base else path


# -- formatting helpers (templates) ------------------------------------------------------------------
def money(fen: int | None) -> str:
    """12345 -> "¥123.45" (integer arithmetic only)."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def money_input(fen: int | None) -> str:
    """12345 -> "123.45", the value of a money <input>."""
    if fen is None:
        return ""
    yuan, cents = divmod(int(fen), 100)
    return f"{yuan}.{cents:02d}"


def when(value: datetime.datetime | int | None, zone: ZoneInfo) -> str:
    """A time as "2026-12-06 20:00:00" in the business zone (datetimes or epoch ms); the page's
    header names the zone once (`zone_label`), so the value carries no suffix."""
    return format_local(value, zone)


def day(value: datetime.datetime | int | None, zone: ZoneInfo) -> str:
    """A moment's business-zone date ("2026-12-07"): validity windows shown by the day."""
    return format_local(value, zone)[:10]


def iso(value: datetime.datetime | int | None) -> str:
    """A time as ISO-8601 UTC, for machines (data attributes, JSON): never shown to people."""
    if value is None:
        return ""
    return iso_utc(from_ms(value) if isinstance(value, int) else value)


def local_input(value: datetime.datetime | int | None, zone: ZoneInfo) -> str:
    """The value of a datetime-local input ("2026-12-06T20:00"): the time in the business zone."""
    return input_value(value, zone)


@functools.lru_cache(maxsize=8)
def zone_named(name: str) -> ZoneInfo:
    """The business zone (BUSINESS_TZ), looked up once per name."""
    return business_zone(name)


def parse_money(raw: str, name: str, *, minimum: int = 0, required: bool = True) -> int | None:
    """A yuan amount typed in a form ("1200", "1,200.5", "¥12.30") as integer fen."""
    text = raw.strip().replace(",", "").replace("¥", "").replace("￥", "")
    if not text:
        if required:
            raise FormError(f"{name}: required")
        return None
    if not _MONEY.fullmatch(text):
        raise FormError(f"{name}: give an amount in yuan with at most two decimals, e.g. 1200.50")
    fen = int(decimal.Decimal(text) * 100)
    if not minimum <= fen <= MAX_MONEY_FEN:
        raise FormError(f"{name}: must be from {money(minimum)} to {money(MAX_MONEY_FEN)}")
    return fen


def parse_int(raw: str, name: str, *, minimum: int = 0, maximum: int = 2**53 - 1) -> int:
    text = raw.strip()
    if not _INT.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise FormError(f"{name}: give a whole number from {minimum} to {maximum}")
    return int(text)


def parse_time(value: str, name: str, zone: ZoneInfo) -> datetime.datetime:
    """A time typed in a form: a datetime-local value ("2026-12-06T20:00", seconds optional) is a
    wall-clock time in the business zone; a value with an explicit offset ("…Z", "…+08:00") is
    taken as given. Stored in UTC, to the millisecond (as the engine keeps times)."""
    text = value.strip()
    if not text:
        raise FormError(f"{name}: give a date and time")
    try:
        parsed = parse_local(text, zone)
    except ValueError:
        raise FormError(f"{name}: give a date and time such as 2026-12-06T20:00") from None
    return from_ms(to_ms(parsed))


def parse_day(raw: str, name: str) -> datetime.date | None:
    """A date filter ("2026-12-06", a business-zone date; see `backoffice.timezone.date_start`);
    None when empty."""
    text = raw.strip()
    if not text:
        return None
    try:
        day = datetime.date.fromisoformat(text[:10]) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or day.year < 1970:
        raise FormError(f"{name}: give a date such as 2026-12-06")
    return day


def text_field(
    raw: str, name: str, *, max_length: int, required: bool = True, multiline: bool = False
) -> str:
    value = raw.replace("\r\n", "\n").strip()
    if required and not value:
        raise FormError(f"{name}: required")
    if len(value) > max_length:
        raise FormError(f"{name}: at most {max_length} characters")
    allowed = "\n\t" if multiline else ""
    if any((ch < " " or ch == "\x7f") and ch not in allowed for ch in value):
        raise FormError(f"{name}: control characters are not allowed")
    return value


def safe_next(raw: str | None) -> str:
    """Where to go after sign-in: only a path inside /admin (no open redirect)."""
    if not raw or not raw.startswith(PREFIX) or raw.startswith("//") or "\\" in raw:
        return PREFIX + "/"
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme or parts.netloc or any(ch < " " for ch in raw):
        return PREFIX + "/"
    return raw


# -- handlers ------------------------------------------------------------------------------------------
class AdminHandler(tornado.web.RequestHandler):
    """Base of every admin page (HTML). Subclasses set `public = True` for the sign-in page."""

    public = False
    json_api = False
    nav = ""  # which menu entry is current
    # The area of the back office this page belongs to (backoffice/roles.py): GET needs read access
    # to it, every other method write access. None: owner only (fail closed for a page nobody
    # classified). See docs/admin.md "Roles".
    area: str | None = None
    # Where the page's writes (POST, ...) need write access, when not `area` (e.g. support writes
    # notes on a user's page they may only read); None: `area`.
    write_area: str | None = None
    # Further areas any of which also lets one read the page (a page showing two lanes' lists, each
    # part offered only to who may read it).
    read_areas: tuple[str, ...] = ()

    ctx: AppContext
    services: AdminServices
    actions: AdminActions
    admin_user: AuthUser | None
    via_bearer: bool

    def initialize(self, ctx: AppContext, admin: AdminServices, actions: AdminActions) -> None:
        self.ctx = ctx
        self.services = admin
        self.actions = actions
        self.admin_user = None
        self.via_bearer = False
        # set_default_headers ran before `ctx` existed; now the CSP can name the public origin.
        self.set_header("Content-Security-Policy", self.content_security_policy())

    # Tornado reads the XSRF cookie options from `self.settings`; ours apply to admin handlers only.
    @property
    def settings(self) -> dict[str, Any]:
        merged = dict(self.application.settings)
        merged["xsrf_cookie_kwargs"] = {
            "httponly": True,  # pages carry the token in a <meta>; scripts never read the cookie
            "samesite": "Strict",
            "secure": self.request.protocol == "https",
            "path": PREFIX,
        }
        return merged

    def get_template_path(self) -> str:
        return str(TEMPLATE_DIR)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", self.content_security_policy())

    def content_security_policy(self) -> str:
        host = self.request.host if _HOST.fullmatch(self.request.host or "") else "localhost"
        ws = f"wss://{host}" if self.request.protocol == "https" else f"ws://{host}"
        images = "'self' data: blob:"
        ctx = getattr(self, "ctx", None)
        base = ctx.base_url.rstrip("/") if ctx is not None else ""
        if base.startswith(("http://", "https://")):
            images += " " + base
        return (
            f"default-src 'self'; img-src {images}; connect-src 'self' {ws}; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )

    # -- who is asking ---------------------------------------------------------------------------
    async def _admin_from_request(self) -> tuple[AuthUser | None, bool]:
        """(user, via_bearer): a JSON call may use `Authorization: Bearer`; pages use the cookie."""
        accounts = self.ctx.accounts
        if self.json_api:
            header = self.request.headers.get("Authorization", "")
            scheme, _, token = header.strip().partition(" ")
            if header:
                if scheme.lower() != "bearer" or not token.strip():
                    return None, True
                return await accounts.user_for_token(token.strip()), True
        cookie_token = self.session_token()
        if cookie_token is None:
            return None, False
        return await accounts.user_for_token(cookie_token), False

    def session_token(self) -> str | None:
        raw = self.get_cookie(SESSION_COOKIE)
        if not raw:
            return None
        value = tornado.web.decode_signed_value(
            self.services.cookie_secret, SESSION_COOKIE, raw, max_age_days=SESSION_MAX_AGE_DAYS
        )
        return value.decode() if value else None

    def set_session_cookie(self, token: str) -> None:
        self.set_private_cookie(SESSION_COOKIE, token, path=PREFIX)

    def set_private_cookie(self, name: str, value: str | bytes, *, path: str) -> None:
        """A signed cookie scripts cannot read, sent back only to `path` on this site, and only over
        HTTPS when the request came over HTTPS (directly or through a trusted proxy)."""
        signed = tornado.web.create_signed_value(self.services.cookie_secret, name, value)
        self.set_cookie(
            name,
            signed.decode(),
            path=path,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
        )

    def clear_session_cookie(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path=PREFIX)

    async def prepare(self) -> None:
        user, self.via_bearer = await self._admin_from_request()
        self.admin_user = user if user is not None and user.is_admin else None
        if self.admin_user is not None:
            self.current_user = self.admin_user
        elif not self.public:
            self.refuse(signed_in=user is not None)
            return
        if self.request.method not in SAFE_METHODS and not self.via_bearer:
            self.check_xsrf_cookie()
        if self.admin_user is not None and not self.public:
            self.check_area()

    def check_area(self) -> None:
        """Refuse a signed-in admin whose roles may not read (GET, HEAD) or write (anything else)
        this page's area: 403, the error page or `{"error":{"code":"FORBIDDEN"}}`."""
        if self.request.method in SAFE_METHODS:
            if self.may(self.area) or any(self.may(extra) for extra in self.read_areas):
                return
            raise tornado.web.HTTPError(403, f"You do not have access to this page (needs {self.area})")
        needed = self.write_area or self.area
        if not self.may(needed, write=True):
            raise tornado.web.HTTPError(
                403, f"You do not have access to this page (needs {needed}, to write)"
            )

    def answers_json(self) -> bool:
        """JSON endpoints, and page endpoints a script calls with `Accept: application/json`."""
        return self.json_api or "application/json" in self.request.headers.get("Accept", "")

    def refuse(self, *, signed_in: bool) -> None:
        """A non-admin: pages redirect to sign-in, JSON answers 401 (no credentials) or 403."""
        if self.answers_json():
            status, code = (403, "FORBIDDEN") if signed_in else (401, "UNAUTHORIZED")
            self.set_status(status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(orjson.dumps(error_body(code, "admin sign-in required")))
            return
        target = self.request.uri if self.request.method == "GET" else None
        url = LOGIN_URL + ("?" + urllib.parse.urlencode({"next": target}) if target else "")
        self.redirect(url, status=303 if self.request.method != "GET" else 302)

    # -- the business time zone (backoffice/timezone.py) --------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        """The business zone every time on a page is shown and typed in (BUSINESS_TZ)."""
        return zone_named(self.ctx.business_tz)

    def form_time(self, field: str, label: str) -> datetime.datetime:
        """A required datetime-local field, typed in the business zone, as UTC."""
        return parse_time(self.form(field), label, self.zone)

    def optional_form_time(self, field: str, label: str) -> datetime.datetime | None:
        """An optional datetime-local field: None when left empty."""
        return self.form_time(field, label) if self.form(field).strip() else None

    # -- rendering ---------------------------------------------------------------------------------
    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(
            admin=self.admin_user,
            nav=self.nav,
            static=admin_static_url,
            money=money,
            money_input=money_input,
            when=functools.partial(when, zone=self.zone),
            day=functools.partial(day, zone=self.zone),
            iso=iso,
            local_input=functools.partial(local_input, zone=self.zone),
            # the business zone, named once in the header; scripts read it from a <meta>
            business_tz=self.zone.key,
            zone_label=zone_label(self.zone, from_ms(self.ctx.engine.clock.now_ms())),
            may=self.may,  # which links and buttons to offer (the server refuses the rest anyway)
            writable=self.may(self.write_area or self.area, write=True),  # this page's write buttons
            json=lambda value: orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
            pretty=lambda value: orjson.dumps(
                value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
            ).decode(),
            xsrf_value=self.xsrf_token.decode(),
            flash=self._take_flash(),
            page_title="",
            # the header's search box keeps what was searched for (admin/search.py)
            search_query=(self.get_query_argument("q", "") or "")[:100] if self.nav == "search" else "",
        )
        return namespace

    def flash(self, message: str, kind: str = "ok") -> None:
        """A one-time message shown on the next page (after a redirect)."""
        self.set_private_cookie(FLASH_COOKIE, orjson.dumps({"m": message[:500], "k": kind}), path=PREFIX)

    def _take_flash(self) -> dict[str, str] | None:
        raw = self.get_cookie(FLASH_COOKIE)
        if not raw:
            return None
        self.clear_cookie(FLASH_COOKIE, path=PREFIX)
        value = tornado.web.decode_signed_value(
            self.services.cookie_secret, FLASH_COOKIE, raw, max_age_days=1
        )
        if not value:
            return None
        try:
            data = orjson.loads(value)
            return {"message": str(data["m"]), "kind": "error" if data.get("k") == "error" else "ok"}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None

    def done(self, message: str, url: str) -> None:
        """After a successful POST: flash and redirect (303, so a reload does not resubmit)."""
        self.flash(message)
        self.redirect(url, status=303)

    def failed(self, message: str, url: str) -> None:
        self.flash(message, "error")
        self.redirect(url, status=303)

    # -- forms -----------------------------------------------------------------------------------------
    def form(self, name: str, default: str = "") -> str:
        return self.get_body_argument(name, default, strip=False) or ""

    def form_list(self, name: str) -> list[str]:
        return self.get_body_arguments(name, strip=False)

    def path_id(self, raw: str, what: str) -> int:
        if not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= 2**53 - 1:
            raise tornado.web.HTTPError(404, f"no {what} {raw[:20]}")
        return int(raw)

    def query_int(self, name: str, default: int, *, minimum: int = 1, maximum: int = 1_000_000) -> int:
        raw = self.get_query_argument(name, "") or ""
        if _INT.fullmatch(raw) and minimum <= int(raw) <= maximum:
            return int(raw)
        return default

    # -- who acts, for the admin-actions service (it authorizes and audits every write) -------------
    def staff_roles(self) -> frozenset[str]:
        """The signed-in admin's roles (backoffice/roles.py); empty when nobody is signed in."""
        user = self.admin_user
        if user is None:
            return frozenset()
        return frozenset(effective_roles(user.is_admin, getattr(user, "roles", ())))

    def may(self, area: str | None, *, write: bool = False) -> bool:
        """Whether the signed-in admin may read (or write) `area` (pages use it to offer links)."""
        return can(self.staff_roles(), area, write=write)

    def actor(self) -> Actor:
        user = self.admin_user
        if user is None:  # prepare() refused everyone else; a public page has no writes
            raise NotAuthorized("admin sign-in required")
        return Actor(
            user.user_id, user.username, user.is_admin, self.request.remote_ip or "", "ui", self.staff_roles()
        )

    async def guarded(self, action: Callable[[], Awaitable[None]], *, back: str) -> None:
        """Run a POST action; a refusal (GavelError) becomes an error message on the page it came from."""
        try:
            await action()
        except GavelError as error:
            self.failed(f"{error.message} ({error.code})", back)

    # -- errors ----------------------------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, GavelError):
            status, code, message = status_for(error.code), error.code, error.message
        elif isinstance(error, tornado.web.HTTPError):
            status = error.status_code
            code = code_for_status(status)
            message = error.log_message or error.reason or http.client.responses.get(status, "error")
            if status == 403 and "xsrf" in (error.log_message or "").lower():
                code, message = "XSRF", "the form is stale or forged (XSRF check failed); reload and retry"
        elif dependency_fault(error):
            status, code, message = 503, "UNAVAILABLE", UNAVAILABLE_MESSAGE
        else:
            status = status_code if 400 <= status_code < 600 else 500
            code = code_for_status(status)
            message = "internal error" if status >= 500 else http.client.responses.get(status, "error")
        self.set_status(status)
        self.clear_header("Content-Type")
        if status == 503:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        if self.answers_json():
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(orjson.dumps(error_body(code, message)))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.render("error.html", status=status, code=code, message=message, page_title="Error")

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if isinstance(value, GavelError):
            log.debug("%s refused: %s %s", self._request_summary(), value.code, value.message)
            return
        if dependency_fault(value):
            log.warning("%s unavailable: %s", self._request_summary(), describe_fault(value))
            return
        super().log_exception(typ, value, tb)


class AdminJsonHandler(AdminHandler):
    """Base of the admin JSON endpoints the pages' scripts call (same auth; bearer tokens too)."""

    json_api = True

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=utf-8")

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(payload, default=str))


# -- static files ---------------------------------------------------------------------------------------
class AdminStaticHandler(tornado.web.StaticFileHandler):
    """/admin/static/: our CSS, JS and vendored libraries (no CDN at run time)."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'")


_static_versions: dict[str, str] = {}


def admin_static_url(path: str) -> str:
    """`/admin/static/<path>?v=<hash>` so browsers may cache and still see new versions."""
    version = _static_versions.get(path)
    if version is None:
        full = (STATIC_DIR / path).resolve()
        if not full.is_relative_to(STATIC_DIR) or not full.is_file():
            raise ValueError(f"no admin static file {path}")
        version = hashlib.sha256(full.read_bytes()).hexdigest()[:12]
        _static_versions[path] = version
    return f"{PREFIX}/static/{tornado.escape.url_escape(path, plus=False).replace('%2F', '/')}?v={version}"


@dataclasses.dataclass(frozen=True)
class Paging:
    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.size
