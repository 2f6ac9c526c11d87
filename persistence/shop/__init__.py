"""The course shop on MongoDB and Redis: the repositories and unit of work (repos), the display
reads (reads), the cart and checkout store (carts), the schema (schema), and `mongo_shop`, which
wires them into the `ShopService` (shop/service.py). No pricing, no provider calls, no decisions:
those are in shop/.
"""

import datetime
from collections.abc import Callable

import redis.asyncio

from engine.settle.ports import PaymentProvider
from persistence.accounts import Accounts
from persistence.mongo import Client, Database, utc_now
from persistence.shop.carts import RedisCartStore, redis_errors
from persistence.shop.reads import MongoShopReads
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
) -> ShopService:
    """The shop service over MongoDB (`client`, `db`, balances through `accounts`) and Redis."""
    return ShopService(
        MongoShopStore(client, db, accounts),
        RedisCartStore(redis_client),
        MongoShopReads(db),
        provider,
        checkout_ttl_seconds=checkout_ttl_seconds,
        pending_timeout_seconds=pending_timeout_seconds,
        now=now,
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
