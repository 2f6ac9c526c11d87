"""Carts and checkouts in Redis (the `CartStore` port): `shop:cart:{user_id}` (hash course_id ->
choice; a degree course's field is `d:{degree_course_id}`) and `shop:checkout:{user_id}` (hash:
`data` + the chosen coupons, with a time-to-live).

Every edit that checks and writes is one Lua step, so concurrent requests cannot half-apply; an
outage becomes `ShopUnavailable` (503), never a 500.
"""

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from persistence.redis_pipe import PipelinedRedis, Script
from shop.model import Checkout, CheckoutLine, ShopUnavailable
from shop.ports import CartContents, CartKind

log = logging.getLogger("gavel.shop")

# The limit check, the write and the read of the cart after it happen in one Redis step (one round
# trip per add): 0 when the cart is full, else the cart as HGETALL gives it.
_CART_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
_HSET_IF_FIELD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# Chooses a coupon only while the checkout exists: an expired checkout is never half re-created.
_HSET_IF_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# Forgets a checkout only if it is still the one that was ordered: the same user may have checked
# out again (another tab) while the older one was being paid, and that newer one must survive.
_DELETE_IF_CHECKOUT = """
local data = redis.call('HGET', KEYS[1], 'data')
if not data or cjson.decode(data)['checkout_id'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """The one place Redis outages become `UNAVAILABLE` (503) instead of a 500."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        log.warning("redis unavailable: %s", exc)
        raise ShopUnavailable("the cart service is unavailable; try again shortly") from None


class RedisCartStore:
    """`redis` may be replaced (tests point it at a dead server); the scripts take the client per call.

    The cart's add and view, the shop's most frequent requests, go through one pipelined connection
    (persistence/redis_pipe.py) to the same server: redis-py's per-command cost was most of their
    CPU. Everything else uses `redis`.
    """

    def __init__(self, redis_client: aioredis.Redis) -> None:
        self._redis = redis_client
        self.pipe = PipelinedRedis.for_client(redis_client)
        self._cart_add_script = Script(_CART_ADD)
        self._cart_add = AsyncScript(redis_client, _CART_ADD)
        self._hset_if_field = AsyncScript(redis_client, _HSET_IF_FIELD)
        self._hset_if_key = AsyncScript(redis_client, _HSET_IF_KEY)
        self._delete_if_checkout = AsyncScript(redis_client, _DELETE_IF_CHECKOUT)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    @redis.setter
    def redis(self, client: aioredis.Redis) -> None:
        # The pipelined connection follows the client: to the same server, or to none.
        if self.pipe is not None:
            self.pipe.close()
        self._redis = client
        self.pipe = PipelinedRedis.for_client(client)

    @staticmethod
    def cart_key(user_id: int) -> str:
        return f"shop:cart:{user_id}"

    @staticmethod
    def checkout_key(user_id: int) -> str:
        return f"shop:checkout:{user_id}"

    # -- cart ----------------------------------------------------------------------------------------
    @staticmethod
    def _field(item_id: int, kind: CartKind) -> str:
        return f"d:{item_id}" if kind == "degree" else str(item_id)

    async def add(
        self,
        user_id: int,
        course_id: int,
        policy_id: int,
        added_ms: int,
        limit: int,
        kind: CartKind = "course",
    ) -> CartContents | None:
        value = orjson.dumps({"policy_id": policy_id, "added_ms": added_ms})
        field = self._field(course_id, kind)
        keys = [self.cart_key(user_id)]
        args: list[str | bytes | int] = [field, value, limit]
        async with redis_errors():
            if self.pipe is None:
                answer = await self._cart_add(keys=keys, args=args, client=self.redis)
            else:
                answer = await self.pipe.evalsha(self._cart_add_script, keys, args)
        if not isinstance(answer, list):
            return None  # full
        flat = iter(answer)
        return self._parse(dict(zip(flat, flat, strict=True)), user_id)

    async def change_policy(
        self, user_id: int, course_id: int, policy_id: int, kind: CartKind = "course"
    ) -> bool:
        field = self._field(course_id, kind)
        async with redis_errors():
            raw = await self.redis.hget(self.cart_key(user_id), field)
            if raw is None:
                return False
            entry = orjson.loads(raw)
            entry["policy_id"] = policy_id
            changed = await self._hset_if_field(
                keys=[self.cart_key(user_id)], args=[field, orjson.dumps(entry)], client=self.redis
            )
        return bool(changed)

    async def remove(self, user_id: int, course_id: int, kind: CartKind = "course") -> bool:
        async with redis_errors():
            removed = await self.redis.hdel(self.cart_key(user_id), self._field(course_id, kind))
        return bool(removed)

    async def entries(self, user_id: int) -> dict[int, int]:
        return (await self.contents(user_id))[0]

    async def degree_entries(self, user_id: int) -> dict[int, int]:
        return (await self.contents(user_id))[1]

    async def contents(self, user_id: int) -> CartContents:
        """Both kinds of entries in one read (one round trip)."""
        key = self.cart_key(user_id)
        async with redis_errors():
            if self.pipe is None:
                raw = await self.redis.hgetall(key)
            else:
                flat = iter(await self.pipe.execute("HGETALL", key))
                raw = dict(zip(flat, flat, strict=True))
        return self._parse(raw, user_id)

    @staticmethod
    def _parse(raw: dict[Any, Any], user_id: int) -> CartContents:
        courses: dict[int, int] = {}
        degrees: dict[int, int] = {}
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            target, item = (degrees, name.removeprefix("d:")) if name.startswith("d:") else (courses, name)
            try:
                target[int(item)] = int(orjson.loads(value)["policy_id"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                log.error("unreadable cart entry %r of user %s; ignored", field, user_id)
        return courses, degrees

    # -- checkout ------------------------------------------------------------------------------------
    async def save_checkout(self, checkout: Checkout) -> None:
        data = orjson.dumps(
            {
                "checkout_id": checkout.checkout_id,
                "lines": [dataclasses.asdict(line) for line in checkout.lines],
                "global_coupon_ids": list(checkout.global_coupon_ids),
                "coupons": {str(k): v for k, v in checkout.coupons.items()},
                "balance_seen": checkout.balance_seen,
            }
        )
        key = self.checkout_key(checkout.user_id)
        # MULTI/EXEC: the old checkout and its choices go and the new one appears in one step.
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, "data", data)
            pipe.expire(key, checkout.ttl_seconds)
            await pipe.execute()

    async def load_checkout(self, user_id: int) -> Checkout | None:
        key = self.checkout_key(user_id)
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.ttl(key)
            raw, ttl = await pipe.execute()
        if not raw or b"data" not in raw:
            return None
        data = orjson.loads(raw[b"data"])
        chosen: dict[int, int] = {}
        chosen_global = None
        for field, value in raw.items():
            name = field.decode()
            if not name.startswith("coupon:") or not value:
                continue
            if name == "coupon:global":
                chosen_global = int(value)
            else:
                chosen[int(name.removeprefix("coupon:"))] = int(value)
        return Checkout(
            checkout_id=data["checkout_id"],
            user_id=user_id,
            lines=tuple(
                CheckoutLine(
                    None if line["course_id"] is None else int(line["course_id"]),
                    line["name"],
                    line["image"],
                    int(line["policy_id"]),
                    int(line["valid_days"]),
                    int(line["price"]),
                    tuple(int(c) for c in line["coupon_ids"]),
                    # Checkouts stored before degrees were sold have course lines only.
                    kind=str(line.get("kind", "course")),
                    degree_course_id=(
                        None if line.get("degree_course_id") is None else int(line["degree_course_id"])
                    ),
                )
                for line in data["lines"]
            ),
            global_coupon_ids=tuple(int(c) for c in data["global_coupon_ids"]),
            coupons={int(k): v for k, v in data["coupons"].items()},
            chosen=chosen,
            chosen_global=chosen_global,
            ttl_seconds=max(int(ttl), 0),
            # Checkouts stored before it was kept have none: the debit then reads the balance.
            balance_seen=None if data.get("balance_seen") is None else int(data["balance_seen"]),
        )

    async def choose(self, user_id: int, course_id: int | None, coupon_id: int | None) -> bool:
        field = "coupon:global" if course_id is None else f"coupon:{course_id}"
        async with redis_errors():
            stored = await self._hset_if_key(
                keys=[self.checkout_key(user_id)],
                args=[field, "" if coupon_id is None else str(coupon_id)],
                client=self.redis,
            )
        return bool(stored)

    async def forget(
        self, user_id: int, checkout_id: str, course_ids: Iterable[int], degree_ids: Iterable[int] = ()
    ) -> None:
        fields = [str(c) for c in course_ids] + [self._field(d, "degree") for d in degree_ids]
        key = self.checkout_key(user_id)
        # One round trip, each command on its own key (a pipeline, not one script over both keys).
        # The script by its digest: a pipeline given the script itself first asks Redis whether it
        # is loaded (a round trip more); only a server that lost it (NOSCRIPT) gets it again.
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._delete_if_checkout.sha, 1, key, checkout_id)
            if fields:
                pipe.hdel(self.cart_key(user_id), *fields)
            results = await pipe.execute(raise_on_error=False)
            if isinstance(results[0], redis.exceptions.NoScriptError):
                await self._delete_if_checkout(keys=[key], args=[checkout_id], client=self.redis)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, redis.exceptions.NoScriptError):
                    raise result
