"""The course shop on MongoDB and Redis: the repositories and unit of work (repos), the display
reads (reads), the cart and checkout store (carts), the schema (schema), and `mongo_shop`, which
wires them into the `ShopService` (shop/service.py). No pricing, no provider calls, no decisions:
those are in shop/.
"""

import datetime
import functools
from collections.abc import Callable

import redis.asyncio

from engine.settle.ports import PaymentProvider
from persistence.accounts import Accounts
from persistence.mongo import Client, Database, utc_now
from persistence.read_cache import ReadCache
from persistence.shop.carts import RedisCartStore, redis_errors
from persistence.shop.reads import CACHE_DOMAIN, CachedCatalogue, MongoShopReads
from persistence.shop.repos import MongoShopStore, MongoShopUnitOfWork
from persistence.shop.schema import SHOP_COUNTERS, ensure_shop_indexes
from shop.model import DEFAULT_CHECKOUT_TTL_SECONDS, DEFAULT_PENDING_TIMEOUT_SECONDS
from shop.service import ShopService


def mongo_shop(
    client: Client,
    db: Database,
    redis_client: redis.asyncio.Redis,
    accounts: Accounts,
    provider: PaymentProvider,
    *,
    checkout_ttl_seconds: int = DEFAULT_CHECKOUT_TTL_SECONDS,
    pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT_SECONDS,
    now: Callable[[], datetime.datetime] = utc_now,
    cache: ReadCache | None = None,
) -> ShopService:
    """The shop service over MongoDB (`client`, `db`, balances through `accounts`) and Redis; with a
    `cache`, the catalogue's public reads and the cart's course lookups are kept until a catalogue
    write (persistence/read_cache.py)."""
    return ShopService(
        MongoShopStore(client, db, accounts, provider),
        RedisCartStore(redis_client),
        MongoShopReads(db, cache),
        provider,
        checkout_ttl_seconds=checkout_ttl_seconds,
        pending_timeout_seconds=pending_timeout_seconds,
        now=now,
        catalogue_changed=None if cache is None else functools.partial(cache.changed, CACHE_DOMAIN),
        cart_catalogue=None if cache is None else CachedCatalogue(db, cache),
    )


__all__ = [
    "SHOP_COUNTERS",
    "MongoShopReads",
    "MongoShopStore",
    "MongoShopUnitOfWork",
    "RedisCartStore",
    "ensure_shop_indexes",
    "mongo_shop",
    "redis_errors",
]
