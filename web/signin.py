"""Sign-in and registration throttling, shared by the JSON login and the admin UI's sign-in.

Policy (docs/security.md, "Sign-in"):
- Limits count failures, and an attempt is checked against them *before* the password is, in one
  Redis Lua script that checks every limit and reserves the attempt in the same step: concurrent
  guesses cannot slip past a limit between a read and a write (the old counter's race). The
  reservation is a "pending" count (with a lease, PENDING_LEASE_MS, in case its process dies); the
  outcome turns it into a failure (`failed`: counted, back-off) or gives it back (`succeeded`).
- While an attempt's outcome is pending, another one that its failure could refuse waits for it
  instead of being judged on a guess: in a scope with back-off, one attempt at a time; in one
  without, while failures + pending reach the limit. So concurrent correct sign-ins of one account
  all succeed (each waits for the one before, whose success leaves no back-off), and concurrent
  wrong ones meet the back-off the first failure starts: never more password checks than before.
  A wait gives up after TURN_WAIT_S (429, retry in 1 s).
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
- Registration: REGISTRATIONS_PER_ADDRESS attempts per address per hour, counted at once (there is
  no password to check).
- Redis unreachable: the same rules, counted in this process's memory (fail closed, not open).

Refusals raise `SigninRefused` (429 RATE_LIMITED, `Retry-After`, `retry_after_s`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
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
PENDING_SUFFIX = ":pending"
# An attempt's reservation outlives its process by at most this (a crash between the check and
# its outcome); a password check plus a second factor take far less.
PENDING_LEASE_MS = 10_000
# How long an attempt waits for a pending one's outcome before it is refused (429, retry in 1 s),
# and how often it looks again when that attempt is another process's.
TURN_WAIT_S = 12.0
TURN_POLL_S = 0.05

# Registration: KEYS one hash per scope; ARGV now_ms, window_ms, base_ms, number of scopes, then
# (limit, back-off cap ms; 0 = none) each. Checks every limit and counts in the same step.
# Returns {1, 0} when it may go ahead (and is now counted), else {0, retry_after_ms}.
_COUNT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local scopes = tonumber(ARGV[4])
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

# A sign-in attempt. KEYS: the S scopes' hashes ({n: failures in the window, until: ms before which
# nothing is tried}), then their S pending counters, then the "known address" marker: when it
# exists, the last scope is skipped. ARGV: now_ms, window_ms, S, then (limit, back-off cap ms;
# 0 = none) each, then the pending lease in ms.
# Returns {1, 0}: reserved (pending in every scope used); {0, retry_after_ms}: refused;
# {2, 0}: an attempt whose failure could refuse this one is pending: wait for its outcome.
_RESERVE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local scopes = tonumber(ARGV[3])
local lease = tonumber(ARGV[4 + 2 * scopes])
local used = scopes
if redis.call('EXISTS', KEYS[2 * scopes + 1]) == 1 then used = scopes - 1 end
local retry = 0
local busy = false
for i = 1, used do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 + 2 * i])
  local cap = tonumber(ARGV[3 + 2 * i])
  local state = redis.call('HMGET', key, 'n', 'until')
  local n = tonumber(state[1]) or 0
  local wait_until = tonumber(state[2]) or 0
  local pending = tonumber(redis.call('GET', KEYS[scopes + i])) or 0
  if n >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = window end
    if ttl > retry then retry = ttl end
  end
  if wait_until - now > retry then retry = wait_until - now end
  if (cap > 0 and pending > 0) or n + pending >= limit then busy = true end
end
if retry > 0 then return {0, retry} end
if busy then return {2, 0} end
for i = 1, used do
  redis.call('INCR', KEYS[scopes + i])
  redis.call('PEXPIRE', KEYS[scopes + i], lease)
end
return {1, 0}
"""

# A wrong password (or code): the reservation becomes a failure in every scope it was made in.
# KEYS and ARGV as _RESERVE's (without the lease); the marker cannot have appeared meanwhile (only
# a success of the same account from the same address sets it, and those wait for each other).
_FAILED = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local scopes = tonumber(ARGV[4])
local used = scopes
if redis.call('EXISTS', KEYS[2 * scopes + 1]) == 1 then used = scopes - 1 end
for i = 1, used do
  local key = KEYS[i]
  local cap = tonumber(ARGV[4 + 2 * i])
  if redis.call('DECR', KEYS[scopes + i]) <= 0 then redis.call('DEL', KEYS[scopes + i]) end
  local n = redis.call('HINCRBY', key, 'n', 1)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  if cap > 0 then
    local wait = math.min(base * math.pow(2, math.min(n - 1, 40)), cap)
    redis.call('HSET', key, 'until', string.format('%d', now + wait))
    if redis.call('PTTL', key) < wait then redis.call('PEXPIRE', key, wait) end
  end
end
return 1
"""

# A success. KEYS: the pair, address and account hashes, their three pending counters, the
# "known address" marker. The pair's failures are forgotten; the shared scopes keep theirs (they
# are other people's) but lose their back-off; the reservation is given back; the address becomes
# known to the account. ARGV[1]: the marker's lifetime in ms.
_SUCCEEDED = """
local used = 3
if redis.call('EXISTS', KEYS[7]) == 1 then used = 2 end
redis.call('DEL', KEYS[1])
for i = 1, 3 do
  if i <= used and redis.call('DECR', KEYS[3 + i]) <= 0 then redis.call('DEL', KEYS[3 + i]) end
  if i > 1 and redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HDEL', KEYS[i], 'until') end
end
redis.call('SET', KEYS[7], '1', 'PX', ARGV[1])
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


class Verdict(enum.Enum):
    RESERVED = 1  # go ahead: check the password, then call `failed` or `succeeded`
    REFUSED = 0
    WAIT = 2  # an attempt whose failure could refuse this one is pending


class _MemoryCounters:
    """The Lua scripts' rules over bounded dicts: what one process enforces while Redis is down.

    Atomic without a lock: nothing awaits between a check and its write.
    """

    def __init__(self) -> None:
        # key -> [failures, wait_until_ms, window_end_ms]
        self.entries: collections.OrderedDict[str, list[int]] = collections.OrderedDict()
        # key -> [attempts pending, monotonic ms when the last reservation's lease ends]
        self.pending: dict[str, list[int]] = {}
        self.known: collections.OrderedDict[str, int] = collections.OrderedDict()

    def _get(self, key: str, now: int) -> list[int] | None:
        entry = self.entries.get(key)
        if entry is not None and entry[2] <= now:
            del self.entries[key]
            return None
        return entry

    def _pending(self, key: str) -> int:
        held = self.pending.get(key)
        if held is None:
            return 0
        if held[1] <= _monotonic_ms():
            del self.pending[key]
            return 0
        return held[0]

    def _check(self, scopes: Sequence[_Scope], now: int, pending: bool) -> tuple[Verdict, int]:
        retry = 0
        busy = False
        for scope in scopes:
            entry = self._get(scope.key, now)
            waiting = self._pending(scope.key) if pending else 0
            n = 0 if entry is None else entry[0]
            if entry is not None:
                if n >= scope.limit:
                    retry = max(retry, entry[2] - now)
                retry = max(retry, entry[1] - now)
            if (scope.backoff_cap_ms and waiting) or n + waiting >= scope.limit:
                busy = True
        if retry > 0:
            return Verdict.REFUSED, retry
        return (Verdict.WAIT if busy and pending else Verdict.RESERVED), 0

    def _fail(self, scopes: Sequence[_Scope], now: int, policy: SigninPolicy) -> None:
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

    def _give_back(self, key: str) -> None:
        held = self.pending.get(key)
        if held is not None:
            held[0] -= 1
            if held[0] <= 0:
                del self.pending[key]

    def count(self, scopes: Sequence[_Scope], now: int, policy: SigninPolicy) -> int:
        """Registration: check and count at once; the wait in ms when refused, else 0."""
        verdict, retry = self._check(scopes, now, pending=False)
        if verdict is Verdict.REFUSED:
            return retry
        self._fail(scopes, now, policy)
        return 0

    def reserve(self, scopes: Sequence[_Scope], now: int, lease_ms: int) -> tuple[Verdict, int]:
        verdict, retry = self._check(scopes, now, pending=True)
        if verdict is Verdict.RESERVED:
            until = _monotonic_ms() + lease_ms
            for scope in scopes:
                held = self.pending.get(scope.key)
                if held is None:
                    held = self.pending[scope.key] = [0, until]
                held[0] += 1
                held[1] = until
            if len(self.pending) > MEMORY_KEYS:  # only under a flood: leases then end early
                self.pending.clear()
        return verdict, retry

    def failed(self, scopes: Sequence[_Scope], now: int, policy: SigninPolicy) -> None:
        for scope in scopes:
            self._give_back(scope.key)
        self._fail(scopes, now, policy)

    def succeeded(
        self, pair: str, others: Sequence[str], reserved: Sequence[str], known: str, now: int
    ) -> None:
        self.entries.pop(pair, None)
        for key in reserved:
            self._give_back(key)
        for key in others:
            entry = self._get(key, now)
            if entry is not None:
                entry[1] = 0
        self.known[known] = now + KNOWN_ADDRESS_TTL_MS
        self.known.move_to_end(known)
        while len(self.known) > MEMORY_KEYS:
            self.known.popitem(last=False)

    def is_known(self, known: str, now: int) -> bool:
        return self.known.get(known, 0) > now


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class SigninGuard:
    """Throttles sign-in attempts and registrations; one per application (`signin_guard(ctx)`).

    Use: `await guard.attempt(account, address)` before checking a password (raises SigninRefused,
    or reserves the attempt, waiting first for a pending attempt whose failure could refuse it),
    then exactly one of `await guard.failed(account, address)` (a wrong password or code, or any
    error: counted as a failure) and `await guard.succeeded(account, address)`.
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
        self._count = client.register_script(_COUNT)
        self._reserve = client.register_script(_RESERVE)
        self._failed = client.register_script(_FAILED)
        self._succeeded = client.register_script(_SUCCEEDED)
        # Set (and replaced) whenever an attempt of this process ends: its waiters look again at
        # once; a waiter for another process's attempt looks again every TURN_POLL_S.
        self._turn: asyncio.Event | None = None
        self._turn_loop: asyncio.AbstractEventLoop | None = None

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

    def _scopes(self, pair: str, addr: str, acct: str) -> list[_Scope]:
        policy = self.policy
        # The account-wide scope last: an address known to the account skips it.
        return [
            _Scope(pair, policy.failures_per_account_address, policy.backoff_max_ms),
            _Scope(addr, policy.failures_per_address, 0),
            _Scope(acct, policy.failures_per_account, policy.account_backoff_max_ms),
        ]

    @staticmethod
    def _script_keys(scopes: Sequence[_Scope], known: str) -> list[str]:
        return [s.key for s in scopes] + [s.key + PENDING_SUFFIX for s in scopes] + [known]

    def _script_args(self, now: int, scopes: Sequence[_Scope], *, base: bool) -> list[Any]:
        args: list[Any] = [now, self.policy.window_ms]
        if base:
            args.append(self.policy.backoff_base_ms)
        args.append(len(scopes))
        for scope in scopes:
            args += [scope.limit, scope.backoff_cap_ms]
        return args

    # -- sign-in -------------------------------------------------------------------------------
    async def attempt(self, account: str, address: str) -> None:
        """Reserve one attempt to sign in to `account` from `address`, or refuse it."""
        pair, addr, acct, known = self._keys(account, address)
        scopes = self._scopes(pair, addr, acct)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + TURN_WAIT_S
        while True:
            now = self.now_ms()
            try:
                args = [*self._script_args(now, scopes, base=False), PENDING_LEASE_MS]
                verdict_code, retry_ms = await self._reserve(keys=self._script_keys(scopes, known), args=args)
                verdict, retry_ms = Verdict(int(verdict_code)), int(retry_ms)
            except redis.RedisError:
                log.warning("sign-in throttle: Redis unavailable, counting in this process", exc_info=True)
                used = scopes[:-1] if self.memory.is_known(known, now) else scopes
                verdict, retry_ms = self.memory.reserve(used, now, PENDING_LEASE_MS)
            if verdict is Verdict.RESERVED:
                return
            if verdict is Verdict.REFUSED:
                raise SigninRefused(
                    "too many sign-in attempts; wait before trying again", _seconds(max(1, retry_ms))
                )
            if loop.time() >= give_up:
                raise SigninRefused("another sign-in to this account is being checked; try again", 1)
            await self._next_turn(loop)

    async def failed(self, account: str, address: str) -> None:
        """The reserved attempt was wrong (or could not be checked): count it as a failure."""
        pair, addr, acct, known = self._keys(account, address)
        scopes = self._scopes(pair, addr, acct)
        now = self.now_ms()
        try:
            await self._failed(
                keys=self._script_keys(scopes, known), args=self._script_args(now, scopes, base=True)
            )
        except redis.RedisError:
            log.warning("sign-in throttle: Redis unavailable, counting in this process", exc_info=True)
            used = scopes[:-1] if self.memory.is_known(known, now) else scopes
            self.memory.failed(used, now, self.policy)
        finally:
            self._end_turn()

    async def succeeded(self, account: str, address: str) -> None:
        """The reserved attempt was right: forget this address's failures, lift the shared
        scopes' back-off, remember the address as the account's."""
        pair, addr, acct, known = self._keys(account, address)
        scopes = self._scopes(pair, addr, acct)
        try:
            await self._succeeded(keys=self._script_keys(scopes, known), args=[KNOWN_ADDRESS_TTL_MS])
        except redis.RedisError:
            log.warning("sign-in throttle: Redis unavailable, counting in this process", exc_info=True)
            now = self.now_ms()
            reserved = (pair, addr) if self.memory.is_known(known, now) else (pair, addr, acct)
            self.memory.succeeded(pair, (addr, acct), reserved, known, now)
        finally:
            self._end_turn()

    async def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._turn is None or self._turn_loop is not loop:
            self._turn, self._turn_loop = asyncio.Event(), loop
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._turn.wait(), TURN_POLL_S)

    def _end_turn(self) -> None:
        if self._turn is not None:
            self._turn.set()
            self._turn = None

    # -- registration --------------------------------------------------------------------------
    async def register(self, address: str) -> None:
        """Count one registration attempt from `address`, or refuse it."""
        scope = _Scope(f"{PREFIX}register:{_address_part(address)}", self.policy.registrations_per_address, 0)
        now = self.now_ms()
        try:
            allowed, retry = await self._count(
                keys=[scope.key], args=self._script_args(now, [scope], base=True)
            )
            retry_ms = 0 if int(allowed) else max(1, int(retry))
        except redis.RedisError:
            log.warning("registration limit: Redis unavailable, counting in this process", exc_info=True)
            retry_ms = self.memory.count([scope], now, self.policy)
        if retry_ms > 0:
            raise SigninRefused(
                "too many registrations from this address; try again later", _seconds(retry_ms)
            )


def _seconds(ms: int) -> int:
    """Retry-After is whole seconds, rounded up (never 0: that would invite an immediate retry)."""
    return max(1, math.ceil(ms / 1000))


def signin_guard(ctx: AppContext) -> SigninGuard:
    """The application's guard, built on first use from `ctx.signin_policy`."""
    if ctx.signin_guard is None:
        ctx.signin_guard = SigninGuard(ctx.redis, ctx.signin_policy or SigninPolicy())
    return ctx.signin_guard
