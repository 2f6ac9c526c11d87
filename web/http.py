"""The JSON handler every REST endpoint builds on: bodies, strict validation, auth, errors, paging.

Bad input always gets a 4xx with a stable code; a 500 (code INTERNAL) means a bug and is logged
with its traceback but never shown to the client.
"""

import dataclasses
import datetime
import http.client
import logging
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from types import TracebackType
from typing import Any, NoReturn

import orjson
import tornado.web

from backoffice.actions import Actor
from backoffice.roles import can, effective_roles
from engine.book.errors import GavelError, NotFound
from persistence.accounts import AuthUser
from persistence.kept_json import kept_json
from persistence.mongo import UTC, from_ms, to_ms
from persistence.read_cache import MISSING
from web.context import AppContext
from web.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    Forbidden,
    InvalidJson,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
    code_for_status,
    dependency_fault,
    describe_fault,
    error_body,
    status_for,
)

log = logging.getLogger("gavel.gateway")

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_BODY_BYTES = 64 * 1024
# Bodies up to this size are read and dropped so the client reliably receives the 413 answer;
# anything declared larger is refused before reading (the connection is then closed).
DRAIN_BODY_BYTES = 1024 * 1024
# A chunked body (no declared size) is drained this far; the body timeout (HEADER_TIMEOUT) bounds
# how long that may take.
CHUNKED_DRAIN_BYTES = 8 * 1024 * 1024
MAX_SAFE_INT = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: ids and fen survive a JS client
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_PAGE = 1_000_000
_MISSING: Any = object()
_QUERY_INT = re.compile(r"[0-9]{1,16}")


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    page: int
    page_size: int

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.page_size

    def answer(self, items: Sequence[Any], total: int) -> dict[str, Any]:
        return {"items": list(items), "page": self.page, "page_size": self.page_size, "total": total}


class Fields:
    """A strict reader of one JSON object: exact types, ranges, and no unknown keys.

    Integers must be JSON integers (not booleans, floats such as 1.0, or strings) within
    [minimum, maximum], and never beyond 2**53 - 1.
    """

    def __init__(self, data: Any, allowed: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise ValidationFailed("the body must be a JSON object")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValidationFailed(f"unknown field(s): {', '.join(unknown)[:200]}")
        self.data: dict[str, Any] = data

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, default: Any) -> Any:
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            raise ValidationFailed(f"missing field: {name}")
        return default

    def integer(
        self, name: str, *, minimum: int = 0, maximum: int = MAX_SAFE_INT, default: Any = _MISSING
    ) -> int:
        value = self._get(name, default)
        if type(value) is not int or not minimum <= value <= min(maximum, MAX_SAFE_INT):
            raise ValidationFailed(
                f"{name} must be an integer from {minimum} to {min(maximum, MAX_SAFE_INT)}"
            )
        return value

    def optional_integer(
        self, name: str, *, minimum: int = 0, maximum: int = MAX_SAFE_INT, default: int | None = None
    ) -> int | None:
        """An integer or JSON null (absent: `default`)."""
        if self.data.get(name) is None:
            return default
        return self.integer(name, minimum=minimum, maximum=maximum)

    def text(
        self,
        name: str,
        *,
        min_length: int = 1,
        max_length: int = 200,
        multiline: bool = False,
        default: Any = _MISSING,
    ) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or not min_length <= len(value) <= max_length:
            raise ValidationFailed(f"{name} must be a string of {min_length}-{max_length} characters")
        if _has_control_characters(value, multiline):
            raise ValidationFailed(f"{name} must not contain control characters")
        return value

    def one_of(self, name: str, choices: Sequence[str], *, default: Any = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or value not in choices:
            raise ValidationFailed(f"{name} must be one of: {', '.join(choices)}")
        return value

    def timestamp(self, name: str, *, default: Any = _MISSING) -> datetime.datetime:
        """An ISO-8601 time with an explicit offset (`Z` or `+00:00`...), returned in UTC, ms precision."""
        value = self._get(name, default)
        if isinstance(value, datetime.datetime):  # a default
            return value
        problem = f"{name} must be an ISO-8601 time with a UTC offset, e.g. 2025-05-01T12:00:00Z"
        if not isinstance(value, str) or len(value) > 40:
            raise ValidationFailed(problem)
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValidationFailed(problem) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValidationFailed(problem)
        try:
            ms = to_ms(parsed.astimezone(UTC))
        except OverflowError:
            raise ValidationFailed(problem) from None
        if ms < 0:
            raise ValidationFailed(f"{name} must not be before 1970")
        return from_ms(ms)

    def url(self, name: str, *, max_length: int = 500, allow_empty: bool = False) -> str:
        value = self._get(name, _MISSING)
        if allow_empty and value == "":
            return ""
        if not isinstance(value, str) or not _is_web_url(value, max_length):
            raise ValidationFailed(f"{name} must be an http(s) URL of at most {max_length} characters")
        return value

    def urls(self, name: str, *, max_items: int = 20, max_length: int = 500) -> tuple[str, ...]:
        value = self._get(name, ())
        if not isinstance(value, list | tuple) or len(value) > max_items:
            raise ValidationFailed(f"{name} must be a list of at most {max_items} URLs")
        for url in value:
            if not isinstance(url, str) or not _is_web_url(url, max_length):
                raise ValidationFailed(f"{name} must hold http(s) URLs of at most {max_length} characters")
        return tuple(value)

    def objects(self, name: str, *, allowed: Iterable[str], max_items: int) -> list["Fields"]:
        """A list of JSON objects (absent: empty), each read with its own strict `Fields`."""
        value = self._get(name, [])
        if not isinstance(value, list) or len(value) > max_items:
            raise ValidationFailed(f"{name} must be a list of at most {max_items} objects")
        keys = tuple(allowed)
        items = []
        for item in value:
            if not isinstance(item, dict):
                raise ValidationFailed(f"every item of {name} must be an object")
            items.append(Fields(item, keys))
        return items

    def array(self, name: str, *, max_items: int) -> list[Any]:
        value = self._get(name, _MISSING)
        if not isinstance(value, list) or not 1 <= len(value) <= max_items:
            raise ValidationFailed(f"{name} must be a list of 1-{max_items} items")
        return value


def _has_control_characters(value: str, multiline: bool) -> bool:
    allowed = "\n\t" if multiline else ""
    return any((ch < " " or ch == "\x7f") and ch not in allowed for ch in value)


def _is_web_url(url: str, max_length: int) -> bool:
    if len(url) > max_length or any(ch.isspace() or ch < " " for ch in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@tornado.web.stream_request_body
class JsonHandler(tornado.web.RequestHandler):
    """Base of the REST handlers: `initialize(ctx)`, JSON in and out, errors as `{"error": ...}`.

    The body is streamed so that an oversized one gets a clean 413 instead of tornado's bare 400.
    """

    ctx: AppContext
    # The back-office area of an admin endpoint (backoffice/roles.py, docs/admin.md "Roles"): what
    # `require_admin` checks. None: the owner's alone (an endpoint nobody classified stays closed).
    admin_area: str | None = None

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._body = bytearray()
        self._body_too_large = False
        self._chunked = False
        self._received = 0

    def set_default_headers(self) -> None:
        # A caller's request id (if sane) is kept so one request can be followed across services.
        incoming = self.request.headers.get("X-Request-Id", "")
        request_id = incoming if REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        # Straight into the answer's headers: every value is a constant or matched REQUEST_ID, and
        # `set_header` would check and convert each one again on every request (a few percent of
        # a small answer's CPU).
        headers = self._headers
        headers["X-Request-Id"] = request_id
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Cache-Control"] = "no-store"
        headers["X-Content-Type-Options"] = "nosniff"

    def compute_etag(self) -> str | None:
        # Every answer is `Cache-Control: no-store`: nothing keeps one to revalidate it, so the
        # hash of each body Tornado would compute for an ETag is work for nobody.
        return None

    # -- body ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > DRAIN_BODY_BYTES:
            raise PayloadTooLarge(f"the body must not exceed {MAX_BODY_BYTES} bytes")
        # A chunked body says its size only by arriving: it is read and dropped up to
        # CHUNKED_DRAIN_BYTES and answered 413 at its end; past that, 413 at once and the
        # connection is closed, as for a sized one (Tornado's own limit would answer a bare 400).
        self._chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        self._received = 0
        connection = self.request.connection
        set_max_body_size = getattr(connection, "set_max_body_size", None)
        if set_max_body_size is not None:
            set_max_body_size(2 * CHUNKED_DRAIN_BYTES if self._chunked else DRAIN_BODY_BYTES)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._chunked and self._received > CHUNKED_DRAIN_BYTES and not self._finished:
            error = PayloadTooLarge(f"the body must not exceed {MAX_BODY_BYTES} bytes")
            self.send_error(413, exc_info=(PayloadTooLarge, error, None))
            return
        if self._body_too_large:
            return
        if len(self._body) + len(chunk) > MAX_BODY_BYTES:
            self._body_too_large = True
            self._body.clear()
            return
        self._body += chunk

    def raw_body(self) -> bytes:
        if self._body_too_large:
            raise PayloadTooLarge(f"the body must not exceed {MAX_BODY_BYTES} bytes")
        return bytes(self._body)

    def json_body(self) -> Any:
        body = self.raw_body()
        if not body.strip():
            raise InvalidJson("a JSON body is required")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidJson("the body is not valid JSON (UTF-8, no NaN, nesting under 1024)") from None

    def fields(self, allowed: Iterable[str]) -> Fields:
        return Fields(self.json_body(), allowed)

    # -- answers -------------------------------------------------------------------------------
    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(payload))

    async def reply_shared(self, domain: str, key: Hashable, build: Callable[[], Awaitable[Any]]) -> None:
        """Reply 200 with an answer that is the same for every caller (never anything personal),
        its JSON kept in the read cache (persistence/read_cache.py) until `domain` changes."""
        cache = self.ctx.read_cache
        body = cache.get(domain, key)
        if body is MISSING:
            stamp = cache.stamp(domain)
            body = kept_json(await build())
            cache.put(domain, key, body, stamp)
        self.set_status(200)
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, GavelError):
            code, message = error.code, error.message
            status = status_for(code)
        elif isinstance(error, tornado.web.HTTPError):
            status = error.status_code
            code = code_for_status(status)
            message = error.reason or http.client.responses.get(status, "error")
        elif dependency_fault(error):
            status, code, message = 503, "UNAVAILABLE", UNAVAILABLE_MESSAGE
        else:
            status = status_code if 400 <= status_code < 600 else 500
            code = code_for_status(status)
            message = "internal error" if status >= 500 else http.client.responses.get(status, "error")
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        body = error_body(code, message)
        retry_after = getattr(error, "retry_after_s", None)
        if isinstance(retry_after, int):  # a rate limit that knows when it lifts (web/signin.py)
            self.set_header("Retry-After", str(retry_after))
            body["error"]["retry_after_s"] = retry_after
        elif status == 503:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        self.finish(orjson.dumps(body))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, GavelError):
            log.debug("%s refused: %s %s", self._request_summary(), value.code, value.message)
            return
        if dependency_fault(value):
            # An outage is one line per request, not a traceback each: the cause is not in our code.
            log.warning("%s unavailable: %s", self._request_summary(), describe_fault(value))
            return
        super().log_exception(typ, value, tb)

    # -- auth ----------------------------------------------------------------------------------
    async def authenticate(self) -> AuthUser | None:
        """The caller named by `Authorization: Bearer <token>`; None without the header."""
        header = self.request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use the header Authorization: Bearer <token>")
        user = await self.ctx.accounts.user_for_token(token)
        if user is None:
            raise Unauthorized("the token is invalid, expired or revoked")
        self.current_user = user
        return user

    async def require_user(self) -> AuthUser:
        user = await self.authenticate()
        if user is None:
            raise Unauthorized("log in first: send Authorization: Bearer <token>")
        return user

    async def require_admin(self) -> AuthUser:
        """An admin token whose roles may read (GET, HEAD) or write (anything else) this endpoint's
        `admin_area` (backoffice/roles.py; None: the owner's alone): 401 / 403 otherwise."""
        user = await self.require_user()
        if not user.is_admin:
            raise Forbidden("this needs an admin token (POST /api/v1/admin/login)")
        write = self.request.method not in ("GET", "HEAD", "OPTIONS")
        if not self.staff_may(user, self.admin_area, write=write):
            access = "write" if write else "read"
            raise Forbidden(f"this needs {access} access to {self.admin_area or 'owner-only endpoints'}")
        return user

    @staticmethod
    def staff_may(user: AuthUser, area: str | None, *, write: bool = False) -> bool:
        """Whether `user` (an admin token's) may read or write `area` of the back office."""
        return user.is_admin and can(effective_roles(user.is_admin, user.roles), area, write=write)

    def staff_actor(self, user: AuthUser) -> Actor:
        """Who acts in an admin write over REST, with the token's roles (AdminActions authorizes)."""
        roles = frozenset(effective_roles(user.is_admin, user.roles))
        return Actor(user.user_id, user.username, user.is_admin, self.request.remote_ip or "", "rest", roles)

    def bearer_token(self) -> str:
        return self.request.headers.get("Authorization", "").strip().partition(" ")[2].strip()

    # -- URL parts -----------------------------------------------------------------------------
    @staticmethod
    def path_id(raw: str, what: str) -> int:
        """A numeric id from the path; ids that cannot exist are simply not found."""
        if not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= MAX_SAFE_INT:
            raise NotFound(f"no {what} {raw[:20]}")
        return int(raw)

    def query_int(self, name: str, *, minimum: int, maximum: int, default: int | None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        if not _QUERY_INT.fullmatch(raw) or not minimum <= int(raw) <= maximum:
            raise ValidationFailed(f"{name} must be an integer from {minimum} to {maximum}")
        return int(raw)

    def page(self) -> Page:
        """`?page=` (from 1) and `?page_size=` (1-100, default 20)."""
        page = self.query_int("page", minimum=1, maximum=MAX_PAGE, default=1)
        size = self.query_int("page_size", minimum=1, maximum=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)
        assert page is not None and size is not None
        return Page(page, size)


class NotFoundHandler(JsonHandler):
    """The application's default handler: any unknown path is a JSON 404."""

    def prepare(self) -> NoReturn:
        raise NotFound(f"no such endpoint: {self.request.path[:200]}")


class HealthHandler(JsonHandler):
    """Liveness: 200 whenever the process answers at all. What it depends on (the engine, MongoDB,
    Redis) is readiness, `/readyz` (web/health.py): a process whose dependency is down must
    not be restarted for it, nor a gateway taken out because an engine is."""

    def get(self) -> None:
        self.reply({"ok": True})
