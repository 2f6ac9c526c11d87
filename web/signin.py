"""Sign-in and registration throttling, shared by the JSON login and the admin UI's sign-in.

Policy (docs/security.md, "Sign-in"):
- Every sign-in attempt is counted *before* the password is checked, in one Redis Lua script that
  checks every limit and counts in the same step: concurrent guesses cannot slip past a limit
  between a read and a write (the old counter's race). A successful sign-in gives its count back.
- Three scopes, each a failure count over a fixed window (1 h): the account from this address
  (LOGIN_FAILURES_PER_ACCOUNT_ADDRESS, 10), the address over all accounts
  (LOGIN_FAILURES_PER_ADDRESS, 100: password spraying) and the account over all addresses
  (LOGIN_FAILURES_PER_ACCOUNT, 100: a botnet on one account).
- No lock-out: instead, a back-off. After n failures the next attempt waits 1 s * 2^(n-1): up to
  LOGIN_BACKOFF_MAX (15 min) for the account from that address, but at most 1 min account-wide, so
  a stranger hammering an account delays its owner elsewhere by a minute at worst. An address that
  signed in successfully to the account before is exempt from the account-wide scope altogether.
  The address scope has no back-off: addresses are shared (NAT, offices), and one person's typos
  must not slow everyone behind it; its count alone bounds spraying.
- Registration: REGISTRATIONS_PER_ADDRESS attempts per address per hour.
- Redis unreachable: the same rules, counted in this process's memory (fail closed, not open).

Refusals raise `SigninRefused` (429 RATE_LIMITED, `Retry-After`, `retry_after_s`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from web.errors import RateLimited

if TYPE_CHECKING:
    from web.context import AppContext

log = logging.getLogger("gavel.web.signin")

WINDOW_MS = 3_600_000
BACKOFF_BASE_MS = 1_000
ACCOUNT_BACKOFF_MAX_MS = 60_000
KNOWN_ADDRESS_TTL_MS = 90 * 86_400_000
MEMORY_KEYS = 100_000
KEY_PART_MAX = 64
PREFIX = "gavel:signin:"

# KEYS: one hash per scope ({n: failures in the window, until: ms before which nothing is tried}),
# then optionally a marker key: when it exists, the last scope is skipped (a known address).
# ARGV: now_ms, window_ms, base_ms, number of scopes, then (limit, back-off cap ms; 0 = none) each.
# Returns {1, 0} when the attempt may go ahead (and is now counted), else {0, retry_after_ms}.
_ATTEMPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local scopes = tonumber(ARGV[4])
if #KEYS > scopes and redis.call('EXISTS', KEYS[#KEYS]) == 1 then scopes = scopes - 1 end
local retry = 0
for i = 1, scopes do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 + 2 * i])
  local state = redis.call('HMGET', key, 'n', 'until')
  local n = tonumber(state[1]) or 0
  local wait_until = tonumber(state[2]) or 0
  if n >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = window end
    if ttl > retry then retry = ttl end
  end
  if wait_until - now > retry then retry = wait_until - now end
end
if retry > 0 then return {0, retry} end
for i = 1, scopes do
  local key = KEYS[i]
  local cap = tonumber(ARGV[4 + 2 * i])
  local n = redis.call('HINCRBY', key, 'n', 1)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  if cap > 0 then
    local wait = math.min(base * math.pow(2, math.min(n - 1, 40)), cap)
    redis.call('HSET', key, 'until', string.format('%d', now + wait))
    if redis.call('PTTL', key) < wait then redis.call('PEXPIRE', key, wait) end
  end
end
return {1, 0}
"""

# A successful sign-in: KEYS[1] the account-from-address hash (deleted), KEYS[2..] hashes whose
# count it gives back (and whose back-off it lifts), the last KEY the "known address" marker.
# ARGV[1]: the marker's lifetime in ms.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('HINCRBY', KEYS[i], 'n', -1) <= 0 then redis.call('HSET', KEYS[i], 'n', 0) end
    redis.call('HDEL', KEYS[i], 'until')
  end
end
redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[1])
return 1
"""


class SigninRefused(RateLimited):
    """429 RATE_LIMITED; `retry_after_s` becomes the Retry-After header and a JSON field."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclasses.dataclass(frozen=True, slots=True)
class SigninPolicy:
    failures_per_account_address: int = 10
    failures_per_address: int = 100
    failures_per_account: int = 100
    backoff_max_ms: int = 15 * 60_000
    registrations_per_address: int = 10
    window_ms: int = WINDOW_MS
    backoff_base_ms: int = BACKOFF_BASE_MS

    @property
    def account_backoff_max_ms(self) -> int:
        return min(ACCOUNT_BACKOFF_MAX_MS, self.backoff_max_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    key: str
    limit: int
    backoff_cap_ms: int


_NOT_IN_NAME = re.compile(r"[^a-z0-9_.-]")
_NOT_IN_ADDRESS = re.compile(r"[^0-9a-f.:]")


def _account_part(text: str) -> str:
    """Usernames are case-insensitive; anything a username cannot hold becomes '?' (so no name can
    contain the '|' between account and address, and no chosen name can alias another key)."""
    return _NOT_IN_NAME.sub("?", text.strip().lower()[:KEY_PART_MAX]) or "-"


def _address_part(text: str) -> str:
    return _NOT_IN_ADDRESS.sub("?", text.strip().lower()[:KEY_PART_MAX]) or "-"


def wall_ms() -> int:
    return int(time.time() * 1000)


class _MemoryCounters:
    """The Lua scripts' rules over a bounded dict: what one process enforces while Redis is down.

    Atomic without a lock: nothing awaits between the check and the count.
    """

    def __init__(self) -> None:
        # key -> [failures, wait_until_ms, window_end_ms]
        self.entries: collections.OrderedDict[str, list[int]] = collections.OrderedDict()
        self.known: collections.OrderedDict[str, int] = collections.OrderedDict()

    def _get(self, key: str, now: int) -> list[int] | None:
        entry = self.entries.get(key)
        if entry is not None and entry[2] <= now:
            del self.entries[key]
            return None
        return entry

    def attempt(self, scopes: Sequence[_Scope], now: int, policy: SigninPolicy) -> int:
        retry = 0
        for scope in scopes:
            entry = self._get(scope.key, now)
            if entry is None:
                continue
            if entry[0] >= scope.limit:
                retry = max(retry, entry[2] - now)
            retry = max(retry, entry[1] - now)
        if retry > 0:
            return retry
        for scope in scopes:
            entry = self._get(scope.key, now)
            if entry is None:
                entry = self.entries[scope.key] = [0, 0, now + policy.window_ms]
            entry[0] += 1
            if scope.backoff_cap_ms:
                wait = min(policy.backoff_base_ms * 2 ** min(entry[0] - 1, 40), scope.backoff_cap_ms)
                entry[1] = now + wait
                entry[2] = max(entry[2], now + wait)
            self.entries.move_to_end(scope.key)
        while len(self.entries) > MEMORY_KEYS:
            self.entries.popitem(last=False)
        return 0

    def succeeded(self, pair: str, others: Sequence[str], known: str, now: int, ttl_ms: int) -> None:
        self.entries.pop(pair, None)
        for key in others:
            entry = self._get(key, now)
            if entry is not None:
                entry[0] = max(0, entry[0] - 1)
                entry[1] = 0
        self.known[known] = now + ttl_ms
        self.known.move_to_end(known)
        while len(self.known) > MEMORY_KEYS:
            self.known.popitem(last=False)

    def is_known(self, known: str, now: int) -> bool:
        return self.known.get(known, 0) > now


class SigninGuard:
    """Throttles sign-in attempts and registrations; one per application (`signin_guard(ctx)`).

    Use: `await guard.attempt(account, address)` before checking a password (raises SigninRefused,
    or counts the attempt as a failure), then `await guard.succeeded(account, address)` when it
    was right. A wrong password needs no call: it was counted already.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        policy: SigninPolicy | None = None,
        now_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.client = client
        self.policy = policy or SigninPolicy()
        self.now_ms = now_ms
        self.memory = _MemoryCounters()
        self._attempt = client.register_script(_ATTEMPT)
        self._succeeded = client.register_script(_SUCCEEDED)

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str, str, str]:
        who, where = _account_part(account), _address_part(address)
        return (
            f"{PREFIX}pair:{who}|{where}",
            f"{PREFIX}addr:{where}",
            f"{PREFIX}acct:{who}",
            f"{PREFIX}known:{who}|{where}",
        )

    # -- sign-in -------------------------------------------------------------------------------
    async def attempt(self, account: str, address: str) -> None:
        """Count one attempt to sign in to `account` from `address`, or refuse it."""
        policy = self.policy
        pair, addr, acct, known = self._keys(account, address)
        # The account-wide scope last: an address known to the account skips it.
        scopes = [
            _Scope(pair, policy.failures_per_account_address, policy.backoff_max_ms),
            _Scope(addr, policy.failures_per_address, 0),
            _Scope(acct, policy.failures_per_account, policy.account_backoff_max_ms),
        ]
        now = self.now_ms()
        try:
            retry_ms = await self._run(scopes, now, exempt_last_if=known)
        except redis.RedisError:
            log.warning("sign-in throttle: Redis unavailable, counting in this process", exc_info=True)
            if self.memory.is_known(known, now):
                scopes.pop()
            retry_ms = self.memory.attempt(scopes, now, policy)
        if retry_ms > 0:
            raise SigninRefused("too many sign-in attempts; wait before trying again", _seconds(retry_ms))

    async def succeeded(self, account: str, address: str) -> None:
        """The attempt was right: forget this address's failures, give back the shared counts."""
        pair, addr, acct, known = self._keys(account, address)
        try:
            await self._succeeded(keys=[pair, addr, acct, known], args=[KNOWN_ADDRESS_TTL_MS])
        except redis.RedisError:
            log.warning("sign-in throttle: Redis unavailable, counting in this process", exc_info=True)
            self.memory.succeeded(pair, (addr, acct), known, self.now_ms(), KNOWN_ADDRESS_TTL_MS)

    # -- registration --------------------------------------------------------------------------
    async def register(self, address: str) -> None:
        """Count one registration attempt from `address`, or refuse it."""
        scope = _Scope(f"{PREFIX}register:{_address_part(address)}", self.policy.registrations_per_address, 0)
        now = self.now_ms()
        try:
            retry_ms = await self._run([scope], now)
        except redis.RedisError:
            log.warning("registration limit: Redis unavailable, counting in this process", exc_info=True)
            retry_ms = self.memory.attempt([scope], now, self.policy)
        if retry_ms > 0:
            raise SigninRefused(
                "too many registrations from this address; try again later", _seconds(retry_ms)
            )

    async def _run(self, scopes: Sequence[_Scope], now: int, exempt_last_if: str | None = None) -> int:
        """One round trip: check every scope, count in all of them or in none."""
        args: list[Any] = [now, self.policy.window_ms, self.policy.backoff_base_ms, len(scopes)]
        for scope in scopes:
            args += [scope.limit, scope.backoff_cap_ms]
        keys = [scope.key for scope in scopes]
        if exempt_last_if is not None:
            keys.append(exempt_last_if)
        allowed, retry_ms = await self._attempt(keys=keys, args=args)
        return 0 if int(allowed) else max(1, int(retry_ms))


def _seconds(ms: int) -> int:
    """Retry-After is whole seconds, rounded up (never 0: that would invite an immediate retry)."""
    return max(1, math.ceil(ms / 1000))


def signin_guard(ctx: AppContext) -> SigninGuard:
    """The application's guard, built on first use from `ctx.signin_policy`."""
    if ctx.signin_guard is None:
        ctx.signin_guard = SigninGuard(ctx.redis, ctx.signin_policy or SigninPolicy())
    return ctx.signin_guard
