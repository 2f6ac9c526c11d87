"""Every setting of the service in one table, parsed once into a frozen `Settings`.

Each setting has an environment variable, a command-line flag (flags win), a default and a
parser. A value that cannot be read stops start-up with one line naming the setting
(`SettingsError`); `production_problems` lists what `GAVEL_ENV=production` refuses.

Durations are written with a unit: `45s`, `15m`, `24h`, `2d`, `500ms`, or sums like `1h30m`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("development", "production")
ROLES = ("all", "engine", "gateway")
ARCHIVERS = ("process", "inline")
PAYMENT_PROVIDERS = ("sandbox", "alipay")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Passwords that must never guard a production admin account (the demo's, the docs' examples).
KNOWN_PASSWORDS = frozenset(
    {"admin", "password", "admin-password", "changeme", "admin-password-for-tests", "alice-demo-pass"}
)
MIN_ADMIN_PASSWORD = 12
MIN_COOKIE_SECRET = 32

_DURATION_PART = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class SettingsError(ValueError):
    """A setting that cannot be used; its message is the one line printed before exiting."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- value parsers (each raises ValueError with the reason) --------------------------------------------
def parse_duration_ms(text: str) -> int:
    """`45s` -> 45000; `1h30m` -> 5400000. A bare number is refused: the unit must be said."""
    value = text.strip().lower()
    position, total = 0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += int(match.group(1)) * _UNIT_MS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise ValueError(f"{text!r} is not a duration (write e.g. 45s, 15m, 24h, 1h30m)")
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return total


def parse_duration_or_off_ms(text: str) -> int:
    """`parse_duration_ms`, or 0 for `0` / `off` (the periodic work is not done)."""
    if text.strip().lower() in ("0", "off"):
        return 0
    return parse_duration_ms(text)


def parse_flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a yes/no value (use 1 or 0)")


def parse_port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def parse_positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 10**7:
        raise ValueError(f"{text!r} must be a positive number of seconds")
    return value


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.1, 192.168.0.0/16, ::1` -> networks (a bare address is a /32 or /128)."""
    networks = []
    for part in text.replace(";", ",").split(","):
        item = part.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def parse_public_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(f"{text!r} is not an http(s) origin such as https://gavel.example")
    return value


def parse_engine_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise ValueError(f"{text!r}: letters, digits, '-' and '_' only")
    return text


def parse_time_zone(text: str) -> str:
    from backoffice.timezone import business_zone

    return business_zone(text).key


def one_of(choices: Sequence[str], *, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


def optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def optional_text(text: str) -> str | None:
    return text if text else None


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting: its field in `Settings`, environment variable, default (as text) and parser."""

    field: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # never echoed in error messages

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")


SPECS: tuple[Spec, ...] = (
    Spec(
        "environment",
        "GAVEL_ENV",
        "development",
        one_of(ENVIRONMENTS),
        "development (make run: sandbox payments, demo data) or production (refuses unsafe settings)",
    ),
    Spec("host", "HOST", "127.0.0.1", str, "address to bind"),
    Spec("port", "PORT", "8000", parse_port, "HTTP (and websocket) port"),
    Spec("data_dir", "DATA_DIR", "var", Path, "journal, embedded servers' data and logs, keys, media"),
    Spec(
        "mongodb_url",
        "MONGODB_URL",
        "",
        optional_text,
        "MongoDB replica set; the embedded SecantusDB when unset",
        secret=True,
    ),
    Spec("mongodb_db", "MONGODB_DB", "gavel", str, "database name"),
    Spec(
        "redis_url",
        "REDIS_URL",
        "",
        optional_text,
        "Redis; the embedded redis-server when unset",
        secret=True,
    ),
    Spec(
        "dependency_timeout_ms",
        "DEPENDENCY_TIMEOUT",
        "3s",
        parse_duration_ms,
        "how long a request waits for MongoDB or Redis before answering 503 UNAVAILABLE",
    ),
    Spec(
        "mongodb_max_idle_ms",
        "MONGODB_MAX_IDLE",
        "30s",
        parse_duration_ms,
        "a pooled MongoDB connection idle this long is closed (the pool shrinks back after a burst)",
    ),
    Spec(
        "admin_password",
        "ADMIN_PASSWORD",
        "",
        optional_text,
        "password of the admin account (generated and printed once when unset in development)",
        secret=True,
    ),
    Spec(
        "cookie_secret",
        "COOKIE_SECRET",
        "",
        optional_text,
        "key that signs the admin UI's cookies (derived from a stored secret when unset in development)",
        secret=True,
    ),
    Spec("journal_fsync", "JOURNAL_FSYNC", "1", parse_flag, "0 skips the journal fsync (benchmarks only)"),
    Spec("snapshot_interval", "SNAPSHOT_INTERVAL", "60", parse_seconds, "seconds between engine snapshots"),
    Spec(
        "snapshot_records",
        "SNAPSHOT_RECORDS",
        "100000",
        parse_positive_int,
        "journal records that trigger a snapshot before SNAPSHOT_INTERVAL (bounds the replay at restart)",
    ),
    Spec(
        "compact_interval",
        "COMPACT_INTERVAL",
        "5",
        parse_seconds,
        "seconds between compactions of closed lots whose bids are archived and whose close is settled",
    ),
    Spec(
        "malloc_trim_interval_ms",
        "MALLOC_TRIM_INTERVAL",
        "60s",
        parse_duration_or_off_ms,
        "how often the C allocator's free memory is handed back to the system (glibc's malloc_trim; "
        "also after each snapshot); 0 or off: never",
    ),
    Spec(
        "seed_demo",
        "SEED_DEMO",
        "1",
        parse_flag,
        "seed a demo session, courses and two bidders on first start",
    ),
    Spec(
        "order_deadline_ms",
        "ORDER_DEADLINE",
        "24h",
        parse_duration_ms,
        "how long a winner has to pay before the order is overdue (e.g. 24h, 45s)",
    ),
    Spec(
        "shop_pending_timeout_ms",
        "SHOP_PENDING_TIMEOUT",
        "30m",
        parse_duration_ms,
        "how long an unpaid shop order holds its coupons and balance before it is cancelled",
    ),
    Spec("log_level", "LOG_LEVEL", "INFO", one_of(LOG_LEVELS, upper=True), "log level (JSON logs on stderr)"),
    Spec(
        "public_url",
        "PUBLIC_URL",
        "",
        parse_public_url,
        "public origin used in links, e.g. https://gavel.example",
    ),
    Spec(
        "role",
        "ROLE",
        "all",
        one_of(ROLES),
        "all: one process; engine: owns the books of its sessions; gateway: sockets, REST, admin over Redis",
    ),
    Spec("engine_id", "ENGINE_ID", "main", parse_engine_id, "this engine's name in the Redis registry"),
    Spec("lease_seconds", "LEASE_SECONDS", "10", parse_seconds, "an engine's lease in the registry"),
    Spec(
        "archiver",
        "ARCHIVER",
        "process",
        one_of(ARCHIVERS),
        "where the write-behind to MongoDB runs: its own process, or inline",
    ),
    # Payments (docs/operations.md, "Payments")
    Spec(
        "payment_provider",
        "PAYMENT_PROVIDER",
        "sandbox",
        one_of(PAYMENT_PROVIDERS),
        "alipay (production) or sandbox (development only)",
    ),
    Spec("alipay_app_id", "ALIPAY_APP_ID", "", str, "the Alipay application id"),
    Spec(
        "alipay_private_key_file",
        "ALIPAY_PRIVATE_KEY_FILE",
        "",
        optional_path,
        "file with the application's RSA private key (PEM or the console's base64)",
    ),
    Spec(
        "alipay_public_key_file",
        "ALIPAY_PUBLIC_KEY_FILE",
        "",
        optional_path,
        "file with Alipay's RSA public key (PEM or base64)",
    ),
    Spec(
        "alipay_gateway_url",
        "ALIPAY_GATEWAY_URL",
        "https://openapi.alipay.com/gateway.do",
        parse_public_url,
        "Alipay's gateway (the sandbox one is https://openapi-sandbox.dl.alipaydev.com/gateway.do)",
    ),
    Spec("alipay_seller_id", "ALIPAY_SELLER_ID", "", optional_text, "expected seller_id in notifications"),
    Spec(
        "alipay_notify_url",
        "ALIPAY_NOTIFY_URL",
        "",
        parse_public_url,
        "where Alipay posts notifications (default PUBLIC_URL/api/v1/payments/notify)",
    ),
    Spec(
        "alipay_return_url",
        "ALIPAY_RETURN_URL",
        "",
        parse_public_url,
        "where the payer returns (default PUBLIC_URL/api/v1/payments/return)",
    ),
    # The edge (docs/security.md)
    Spec("tls_cert", "TLS_CERT", "", optional_path, "certificate chain (PEM) for direct HTTPS/WSS"),
    Spec("tls_key", "TLS_KEY", "", optional_path, "private key (PEM) of TLS_CERT"),
    Spec(
        "trusted_proxies",
        "TRUSTED_PROXIES",
        "",
        parse_networks,
        "addresses or CIDRs whose X-Forwarded-For / X-Forwarded-Proto are believed",
    ),
    Spec(
        "metrics_token",
        "METRICS_TOKEN",
        "",
        optional_text,
        "bearer token for /metrics (without it /metrics answers only loopback clients)",
        secret=True,
    ),
    Spec(
        "max_connections_per_ip",
        "MAX_CONNECTIONS_PER_IP",
        "256",
        parse_positive_int,
        "open connections (HTTP and websocket) one client address may hold",
    ),
    Spec(
        "max_connections",
        "MAX_CONNECTIONS",
        "20000",
        parse_positive_int,
        "open connections in all; beyond it new ones are closed at once",
    ),
    Spec(
        "websockets_per_user",
        "WEBSOCKETS_PER_USER",
        "16",
        parse_positive_int,
        "open websockets one signed-in user may hold",
    ),
    Spec(
        "idle_timeout_ms",
        "IDLE_TIMEOUT",
        "60s",
        parse_duration_ms,
        "an HTTP keep-alive connection with no request for this long is closed",
    ),
    Spec(
        "header_timeout_ms",
        "HEADER_TIMEOUT",
        "10s",
        parse_duration_ms,
        "a request whose headers (or body) take longer to arrive is dropped (slowloris)",
    ),
    # Sign-in (docs/security.md, "Sign-in"): failures counted per hour; back-off, never a lock-out
    Spec(
        "login_failures_per_account_address",
        "LOGIN_FAILURES_PER_ACCOUNT_ADDRESS",
        "10",
        parse_positive_int,
        "failed sign-ins to one account from one address per hour",
    ),
    Spec(
        "login_failures_per_address",
        "LOGIN_FAILURES_PER_ADDRESS",
        "100",
        parse_positive_int,
        "failed sign-ins from one address (over all accounts) per hour",
    ),
    Spec(
        "login_failures_per_account",
        "LOGIN_FAILURES_PER_ACCOUNT",
        "100",
        parse_positive_int,
        "failed sign-ins to one account from addresses that never signed in to it, per hour",
    ),
    Spec(
        "login_backoff_max_ms",
        "LOGIN_BACKOFF_MAX",
        "15m",
        parse_duration_ms,
        "longest wait after failed sign-ins to one account from one address (1 s, doubling)",
    ),
    Spec(
        "registrations_per_address",
        "REGISTRATIONS_PER_ADDRESS",
        "10",
        parse_positive_int,
        "accounts one address may try to register per hour",
    ),
    Spec(
        "community_rate_limits",
        "COMMUNITY_RATE_LIMITS",
        "1",
        parse_flag,
        "0 lifts the per-user limits on posts, comments, likes (load tests only; docs/community.md)",
    ),
    Spec(
        "business_tz",
        "BUSINESS_TZ",
        "Asia/Shanghai",
        parse_time_zone,
        "the business's time zone: the back office shows and reads every time in it (docs/admin.md)",
    ),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    mongodb_url: str | None = None
    mongodb_db: str = "gavel"
    redis_url: str | None = None
    dependency_timeout_ms: int = 3_000
    mongodb_max_idle_ms: int = 30_000
    admin_password: str | None = None
    cookie_secret: str | None = None
    journal_fsync: bool = True
    snapshot_interval: float = 60.0
    snapshot_records: int = 100_000
    compact_interval: float = 5.0
    malloc_trim_interval_ms: int = 60_000
    seed_demo: bool = True
    order_deadline_ms: int = 86_400_000
    shop_pending_timeout_ms: int = 1_800_000
    log_level: str = "INFO"
    public_url: str = ""
    role: str = "all"
    engine_id: str = "main"
    lease_seconds: float = 10.0
    archiver: str = "process"
    payment_provider: str = "sandbox"
    alipay_app_id: str = ""
    alipay_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    alipay_gateway_url: str = "https://openapi.alipay.com/gateway.do"
    alipay_seller_id: str | None = None
    alipay_notify_url: str = ""
    alipay_return_url: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxies: tuple[Network, ...] = ()
    metrics_token: str | None = None
    max_connections_per_ip: int = 256
    max_connections: int = 20_000
    websockets_per_user: int = 16
    idle_timeout_ms: int = 60_000
    header_timeout_ms: int = 10_000
    login_failures_per_account_address: int = 10
    login_failures_per_address: int = 100
    login_failures_per_account: int = 100
    login_backoff_max_ms: int = 900_000
    registrations_per_address: int = 10
    community_rate_limits: bool = True
    business_tz: str = "Asia/Shanghai"

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def base_url(self) -> str:
        """The public origin: PUBLIC_URL, else this process's own address."""
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"


def _deprecated(env: Mapping[str, str]) -> dict[str, str]:
    """Older names still read (documented): ORDER_DEADLINE_HOURS=N means ORDER_DEADLINE=Nh."""
    values: dict[str, str] = {}
    hours = env.get("ORDER_DEADLINE_HOURS", "").strip()
    if hours and not env.get("ORDER_DEADLINE"):
        values["ORDER_DEADLINE"] = hours + "h" if hours.isdigit() else hours
    return values


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Flags over environment over defaults; raises SettingsError (one line) for a bad value.

    `--help` prints every setting with its variable and default (argparse exits).
    """
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Gavel: a real-time auction engine with a course shop. Every flag has an environment "
        "variable (in brackets); flags win. Durations take a unit: 45s, 15m, 24h.",
    )
    for spec in SPECS:
        shown = "" if spec.secret else f", default {spec.default!r}"
        parser.add_argument(
            spec.flag,
            dest=spec.field,
            metavar=spec.env,
            default=None,
            help=f"{spec.help} [{spec.env}{shown}]",
        )
    args = parser.parse_args(list(argv) if argv is not None else None)
    environment = {**env, **_deprecated(env)}
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = getattr(args, spec.field)
        source = spec.flag if raw is not None else spec.env
        if raw is None:
            raw = environment.get(spec.env, spec.default)
        try:
            values[spec.field] = spec.parse(raw)
        except ValueError as error:
            reason = "is not usable" if spec.secret else str(error)
            raise SettingsError(f"{source}: {reason}") from None
    settings = Settings(**values)
    problem = consistency_problem(settings)
    if problem:
        raise SettingsError(problem)
    return settings


def consistency_problem(settings: Settings) -> str | None:
    """Settings that contradict each other in any environment."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        return "TLS_CERT and TLS_KEY: set both (direct HTTPS) or neither"
    for name, path in (("TLS_CERT", settings.tls_cert), ("TLS_KEY", settings.tls_key)):
        if path is not None and not path.is_file():
            return f"{name}: {str(path)!r} is not a readable file"
    if settings.payment_provider == "alipay":
        if not settings.alipay_app_id:
            return "ALIPAY_APP_ID: required with PAYMENT_PROVIDER=alipay"
        for name, path in (
            ("ALIPAY_PRIVATE_KEY_FILE", settings.alipay_private_key_file),
            ("ALIPAY_PUBLIC_KEY_FILE", settings.alipay_public_key_file),
        ):
            if path is None:
                return f"{name}: required with PAYMENT_PROVIDER=alipay"
            if not path.is_file():
                return f"{name}: {str(path)!r} is not a readable file"
        if not (settings.public_url or (settings.alipay_notify_url and settings.alipay_return_url)):
            return "PUBLIC_URL: required with PAYMENT_PROVIDER=alipay (Alipay must reach the notify URL)"
    return None


def production_problems(settings: Settings) -> list[str]:
    """What `GAVEL_ENV=production` refuses, one line each, in the order a reader fixes them."""
    problems = []
    if settings.payment_provider == "sandbox":
        problems.append("PAYMENT_PROVIDER: the sandbox marks payments paid without money; use alipay")
    if settings.seed_demo:
        problems.append("SEED_DEMO: demo data (with known passwords) must be off: set SEED_DEMO=0")
    password = settings.admin_password or ""
    if not password:
        problems.append("ADMIN_PASSWORD: required (no generated password is printed in production)")
    elif password.lower() in KNOWN_PASSWORDS or len(password) < MIN_ADMIN_PASSWORD:
        problems.append(f"ADMIN_PASSWORD: a known default or shorter than {MIN_ADMIN_PASSWORD} characters")
    secret = settings.cookie_secret or ""
    if len(secret) < MIN_COOKIE_SECRET:
        problems.append(f"COOKIE_SECRET: required, at least {MIN_COOKIE_SECRET} random characters")
    if not settings.tls and not settings.trusted_proxies:
        problems.append("TLS_CERT/TLS_KEY or TRUSTED_PROXIES: serve HTTPS directly or behind a TLS proxy")
    if settings.public_url and not settings.public_url.startswith("https://"):
        problems.append("PUBLIC_URL: must be an https:// origin in production")
    if not settings.journal_fsync:
        problems.append("JOURNAL_FSYNC: must be 1 in production (an acknowledged bid must survive a crash)")
    if not settings.community_rate_limits:
        problems.append("COMMUNITY_RATE_LIMITS: must be 1 in production (limits on posts, comments, likes)")
    return problems
