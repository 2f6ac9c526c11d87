"""What every handler needs, built once by the composition root (composition/bootstrap.py) or a
test fixture: typed fields, no bag of options. The services (`shop`, `settlement`, the payment
provider, readiness, metrics, the sign-in guard) are set by the bootstrap; the few that a bare test
application can do without are built on first use by their own module (`signin_guard(ctx)`,
`readiness_of(ctx)`, `settlement_for(ctx)`) and kept here."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.types import NO_USER
from engine.engine import Engine
from engine.settle.deposits import DepositService
from persistence.accounts import Accounts
from persistence.catalog import Catalog
from persistence.mongo import utc_now
from persistence.read_cache import ReadCache
from persistence.settlement.uow import mongo_deposit_uow_factory
from shop.model import DEFAULT_CHECKOUT_TTL_SECONDS, DEFAULT_PENDING_TIMEOUT_SECONDS

if TYPE_CHECKING:  # each of these modules imports this one
    from backoffice.actions import AdminActions
    from engine.settle.ports import PaymentRouter
    from engine.settle.worker import OrderPayments, SettlementWorker
    from payments.provider import SignedProvider
    from persistence.archive import BidArchiver
    from persistence.archive_process import ArchiverProcess
    from persistence.redis_bus import PriceBus
    from persistence.settlement import MongoSettlement
    from shop.learning_service import LearningService
    from shop.service import ShopService
    from web.health import Readiness
    from web.observability import Metrics
    from web.signin import SigninGuard, SigninPolicy

PSEUDONYM_PREFIX = "Bidder-"
PSEUDONYM_CACHE_SIZE = 100_000
MEDIA_MAX_BYTES = 5 * 1024 * 1024


@dataclasses.dataclass
class Limits:
    """The per-client limits the handlers apply (the edge's server-wide caps: gateway/edge.py).

    The defaults are production's; run.py sets them from the settings, benchmarks lift them."""

    # Open sockets per client address (MAX_CONNECTIONS_PER_IP); a NAT'd office needs a few dozen.
    ws_connections_per_ip: int = 64
    # Open sockets per signed-in user (WEBSOCKETS_PER_USER).
    websockets_per_user: int = 16
    # The per-user bid token bucket: a person bids a few times a second at most.
    bids_per_second: float = 20
    bid_burst: float = 40
    # Ping idle sockets (seconds) so dead phones do not pile up.
    ws_ping_interval: float = 20
    ws_ping_timeout: float = 20
    # METRICS_TOKEN: /metrics wants it as a bearer token; without one, loopback clients only.
    metrics_token: str | None = None


@dataclasses.dataclass
class Settlement:
    """Everything settlement needs at run time, built once per process (gateway/rest_orders.py
    `build_settlement`); here so that both entry points can hold it."""

    store: MongoSettlement
    worker: SettlementWorker
    payments: OrderPayments
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


def derived_cookie_secret(pseudonym_secret: bytes) -> bytes:
    """The admin cookies' key when COOKIE_SECRET is unset: as secret and as stable as the pseudonym
    secret, yet a different key."""
    return hmac.new(pseudonym_secret, b"gavel admin cookie secret v1", hashlib.sha256).hexdigest().encode()


@dataclasses.dataclass
class AppContext:
    engine: Engine
    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    redis: redis.asyncio.Redis
    accounts: Accounts
    pseudonym_secret: bytes
    hub: Any = None  # gateway.ws.Hub, set once the websocket side is wired
    base_url: str = ""  # public origin, e.g. "https://gavel.example"; used in pay_url links
    role: str = "all"  # ROLE: what /readyz checks (web/health.py)
    limits: Limits = dataclasses.field(default_factory=Limits)
    signin_policy: SigninPolicy | None = None  # None: web.signin's defaults
    # COOKIE_SECRET, which signs every signed cookie (the admin UI's); derived when empty.
    cookie_secret: bytes = b""
    media_dir: Path | None = None  # uploads (DATA_DIR/media); None: a temporary directory
    media_max_bytes: int = MEDIA_MAX_BYTES
    media: Any = None  # persistence.media.MediaStore, built on first use by web.media.media_of
    # Unpaid shop orders are released after SHOP_PENDING_TIMEOUT; a checkout quote lives this long.
    shop_pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT_SECONDS
    shop_checkout_ttl_seconds: int = DEFAULT_CHECKOUT_TTL_SECONDS
    # Services, set by the composition root (or built on first use where a test can do without).
    payment_provider: SignedProvider | None = None
    payment_router: PaymentRouter | None = None
    shop: ShopService | None = None
    learning: LearningService | None = None  # built with the shop's routes (gateway/rest_learning.py)
    degree: Any = None  # the degree path's DegreeService (gateway/rest_degree.py build_degree)
    mentoring: Any = None  # shop.degree_mentoring.MentorService (gateway/rest_mentor.py build_mentoring)
    settlement: Settlement | None = None
    # The community (issue 23), each built by its gateway module on first use: the feed's FeedService,
    # the ReactionService (views, likes, comments, collections), the ArticleService, the
    # ModerationService, and the Redis rate limiter they share (persistence/community/limits.py).
    feed: Any = None
    reactions: Any = None
    articles: Any = None
    moderation: Any = None
    community_limiter: Any = None
    community_rate_limits: bool = True  # COMMUNITY_RATE_LIMITS=off lifts them (load tests only)
    business_tz: str = "Asia/Shanghai"  # BUSINESS_TZ: the back office's one time zone (docs/admin.md)
    metrics: Metrics | None = None
    readiness: Readiness | None = None
    signin_guard: SigninGuard | None = None
    archiver: BidArchiver | ArchiverProcess | None = None  # the engine's write-behind (engine roles)
    price_bus: PriceBus | None = None  # ROLE=all: the Redis fan-out to other processes
    # The admin-actions service make_app built, for admin writes served outside gateway/rest_admin.py.
    admin_actions: AdminActions | None = None
    # Built from the fields above; not constructor arguments.
    catalog: Catalog = dataclasses.field(init=False, repr=False)
    # What the catalogue's and the shop's public reads keep (persistence/read_cache.py): a
    # pass-through until its subscription runs (`read_cache.start()`, composition/service.py).
    read_cache: ReadCache = dataclasses.field(init=False, repr=False)
    deposits: DepositService = dataclasses.field(init=False, repr=False)

    _pseudonyms: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.pseudonym_secret:
            raise ValueError("pseudonym_secret must not be empty: pseudonyms would be guessable")
        if not self.cookie_secret:
            self.cookie_secret = derived_cookie_secret(self.pseudonym_secret)
        self.read_cache = ReadCache(self.redis)
        self.catalog = Catalog(self.db, self.engine, self.pseudonym, self.read_cache)
        self.deposits = DepositService(
            mongo_deposit_uow_factory(self.client, self.db, self.accounts), self.engine, clock=utc_now
        )

    def pseudonym(self, session_id: int, user_id: int) -> str:
        """A bidder's stable name within one session ("Bidder-K3QZ7A"); "" for nobody (user 0).

        An HMAC, not a hash: without the secret nobody can test a guessed user id against it, and
        the same user looks different in different sessions.
        """
        if user_id == NO_USER:
            return ""
        key = (session_id, user_id)
        name = self._pseudonyms.get(key)
        if name is None:
            # Every price frame names its leader: remembering the few active leaders saves an HMAC
            # per frame. Bounded: cleared wholesale when full (recomputing is cheap, just not free).
            if len(self._pseudonyms) >= PSEUDONYM_CACHE_SIZE:
                self._pseudonyms.clear()
            message = f"{session_id}:{user_id}".encode()
            digest = hmac.new(self.pseudonym_secret, message, hashlib.sha256).digest()
            name = self._pseudonyms[key] = PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii")[:6]
        return name


def provider_of(ctx: AppContext) -> SignedProvider:
    """The payment provider the composition root put on the context (composition/bootstrap.py)."""
    provider = ctx.payment_provider
    if provider is None:
        raise RuntimeError("ctx.payment_provider is not set: composition.bootstrap.build_payments(...) first")
    return provider
