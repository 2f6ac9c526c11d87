"""Accounts: users, password hashing, bearer tokens, and the balance ledger.

Balances change only through `credit` / `debit`: the conditional `$inc` on `users.balance` and the
ledger entry are written in one transaction, and the entry's unique `ref` makes a retried change a
no-op. Invariant: for every user, the sum of ledger amounts equals the balance.
"""

import asyncio
import base64
import collections
import dataclasses
import datetime
import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from pymongo.errors import DuplicateKeyError

from engine.book.errors import GavelError, NotFound
from engine.book.errors import InvalidInput as InvalidInput  # re-exported: callers import it from here
from engine.book.errors import RefReused as RefReused  # re-exported: callers import it from here
from persistence.coalesced import CoalescedLookups
from persistence.mongo import (
    Client,
    Database,
    Document,
    TxSession,
    as_utc,
    iso_utc,
    next_id,
    run_in_transaction,
    unit_writes,
    update_then_read,
    utc_now,
)

log = logging.getLogger("gavel.accounts")

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
ADMIN_USERNAME = "admin"
# Balances stay exactly representable in JSON numbers (JavaScript clients read them as doubles).
MAX_BALANCE = 2**53
MAX_REF_LENGTH = 200
TOKEN_MAX_LENGTH = 128


# -- errors -----------------------------------------------------------------------------------------
class InvalidDisplayName(GavelError):
    code = "INVALID_DISPLAY_NAME"


class UsernameTaken(GavelError):
    code = "USERNAME_TAKEN"


class BadCredentials(GavelError):
    code = "BAD_CREDENTIALS"


class InsufficientBalance(GavelError):
    code = "INSUFFICIENT_BALANCE"


class BalanceLimit(GavelError):
    code = "BALANCE_LIMIT"


# -- values -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class AuthUser:
    user_id: int
    username: str
    is_admin: bool
    # The staff roles stored on the account (backoffice/roles.py), read only with an admin token;
    # an admin without any acts as an owner (`effective_roles`).
    roles: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    user_id: int
    username: str
    balance: int
    is_admin: bool
    display_name: str = ""  # the username until the user picks one


@dataclasses.dataclass(frozen=True, slots=True)
class StaffAccount:
    """An account as the staff page sees it: `roles` as stored (empty for a legacy admin)."""

    user_id: int
    username: str
    is_admin: bool
    roles: tuple[str, ...]
    display_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerEntry:
    user_id: int
    kind: str
    amount: int  # signed fen: positive credits, negative debits
    balance_after: int
    ref: str
    at: datetime.datetime
    replayed: bool = False  # True when `ref` had already been applied and nothing changed now
    id: str = ""  # the stored entry's id (read back from the ledger; "" for one just written)


@dataclasses.dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost; stored with each hash so it can be raised later without breaking old hashes."""

    n: int = 2**14
    r: int = 8
    p: int = 1
    dklen: int = 32

    @property
    def maxmem(self) -> int:
        return 128 * self.r * self.n * 2 + 1024 * 1024


def validate_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput("username must be 3-32 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    return username


DISPLAY_NAME_MAX = 32
# Control, format (zero-width characters, bidi overrides and isolates, BOM, soft hyphen, tags),
# surrogate, private-use, unassigned, line and paragraph separators: invisible or able to make a
# name render as something else (U+202E turns "txt.exe" around), so never part of a name.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_COMBINING_RUN = 3  # enough for real scripts; stacks beyond it only deface the page ("Zalgo")


def validate_display_name(raw: str) -> str:
    """The display name as stored: NFKC (full-width and compatibility forms folded, accents
    composed), spaces collapsed, 1-32 characters of letters, marks, digits, punctuation and symbols.

    Display names are for showing only; sign-in stays with the ASCII username, so a look-alike
    display name can never sign in as anyone.
    """
    if not isinstance(raw, str) or len(raw) > 4 * DISPLAY_NAME_MAX:
        raise InvalidDisplayName(f"a display name has 1-{DISPLAY_NAME_MAX} characters")
    name = unicodedata.normalize("NFKC", raw)
    combining = 0
    for ch in name:
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            raise InvalidDisplayName(
                f"a display name may not contain U+{ord(ch):04X} (control, invisible or direction characters)"
            )
        combining = combining + 1 if category in ("Mn", "Me") else 0
        if combining > MAX_COMBINING_RUN:
            raise InvalidDisplayName("too many combining marks in a row")
    name = " ".join(name.split())
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise InvalidDisplayName(f"a display name has 1-{DISPLAY_NAME_MAX} characters")
    return name


def validate_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    return password


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams) -> str:
    """`scrypt$n$r$p$salt$hash` with a fresh 16-byte salt (CPU-bound: call through a thread)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        dklen=params.dklen,
        maxmem=params.maxmem,
    )
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        params = ScryptParams(int(n), int(r), int(p))
        salt_bytes, expected_bytes = base64.b64decode(salt), base64.b64decode(expected)
    except ValueError:
        log.error("unreadable password hash")
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(),
        salt=salt_bytes,
        n=params.n,
        r=params.r,
        p=params.p,
        dklen=len(expected_bytes),
        maxmem=params.maxmem,
    )
    return hmac.compare_digest(digest, expected_bytes)


class TokenCache:
    """token hash -> (AuthUser, expiry on a monotonic clock); bounded LRU.

    Only valid tokens are cached, so random tokens cannot fill it. Another gateway process may keep
    honouring a revoked token for up to `ttl` seconds; within this process logout is immediate.
    """

    def __init__(self, ttl: float, size: int, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self.now = now
        self._entries: collections.OrderedDict[str, tuple[AuthUser, float]] = collections.OrderedDict()

    def get(self, key: str) -> AuthUser | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.now():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, user: AuthUser, max_age: float) -> None:
        self._entries[key] = (user, self.now() + min(self.ttl, max_age))
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def discard_user(self, user_id: int) -> None:
        for key in [k for k, (user, _) in self._entries.items() if user.user_id == user_id]:
            del self._entries[key]


# At most this many tokens in one lookup (its `$in`); a larger herd takes a few reads.
TOKEN_LOOKUP_BATCH = 256


class Accounts:
    def __init__(
        self,
        client: Client,
        db: Database,
        *,
        scrypt: ScryptParams | None = None,
        token_lifetime: datetime.timedelta = datetime.timedelta(days=30),
        cache_ttl: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self.client = client
        self.db = db
        self.scrypt = scrypt or ScryptParams()
        self.token_lifetime = token_lifetime
        self.cache = TokenCache(cache_ttl, cache_size)
        # Token-cache misses looked up together (persistence/coalesced.py): every cached token
        # expires `cache_ttl` after its read, so users who came together (a sale opening) come back
        # to a cold cache together, and one read each passed the driver's pool one by one until
        # the last ran out of DEPENDENCY_TIMEOUT (503 in a burst of cart additions).
        self._lookups: CoalescedLookups[str, AuthUser] = CoalescedLookups(
            self._users_for_tokens, TOKEN_LOOKUP_BATCH
        )
        # Compared against when the username is unknown, so both failures cost one scrypt.
        self._decoy_hash = hash_password(secrets.token_urlsafe(16), self.scrypt)

    # -- users ---------------------------------------------------------------------------------
    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(hash_password, password, self.scrypt)

    async def register(self, username: str, password: str) -> tuple[int, str]:
        """Create a bidder account with a zero balance; returns (user_id, token)."""
        validate_username(username)
        validate_password(password)
        if await self.db.users.find_one({"username_key": username.lower()}, {"_id": 1}) is not None:
            raise UsernameTaken(f"the username {username!r} is taken")
        password_hash = await self._hash(password)
        user_id = await next_id(self.db, "users")
        try:
            await self.db.users.insert_one(
                {
                    "_id": user_id,
                    "username": username,
                    "username_key": username.lower(),
                    "password_hash": password_hash,
                    "balance": 0,
                    "is_admin": False,
                    "non_payer": False,
                    "created_at": utc_now(),
                }
            )
        except DuplicateKeyError:
            raise UsernameTaken(f"the username {username!r} is taken") from None
        return user_id, await self.issue_token(user_id, admin=False)

    async def login(self, username: str, password: str, *, admin: bool = False) -> tuple[int, str]:
        """Check credentials; `admin` asks for an admin-scoped token and refuses everyone else.

        Unknown user, wrong password and (for `admin`) a non-admin all give the same error.
        """
        user_id = await self.check_password(username, password, admin=admin)
        return user_id, await self.issue_token(user_id, admin=admin)

    async def check_password(self, username: str, password: str, *, admin: bool = False) -> int:
        """The user id when the credentials are right (and, for `admin`, an admin's); no token yet,
        so a second factor can be asked for first. Raises BadCredentials alike for every failure."""
        refused = BadCredentials("wrong username or password")
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > PASSWORD_MAX:
            raise refused
        user = await self.db.users.find_one({"username_key": username.lower()})
        stored = user["password_hash"] if user is not None else self._decoy_hash
        matches = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not matches or (admin and not user.get("is_admin")):
            raise refused
        return int(user["_id"])

    async def ensure_admin(self, password: str, username: str = ADMIN_USERNAME) -> int:
        """Create the admin account, or reset its password and admin flag; returns its user id."""
        validate_password(password)
        existing = await self.db.users.find_one({"username_key": username.lower()}, {"password_hash": 1})
        if existing is not None:
            user_id = int(existing["_id"])
            unchanged = await asyncio.to_thread(verify_password, password, existing["password_hash"])
            await self._keep_owner(user_id)
            if unchanged:
                await self.db.users.update_one({"_id": user_id}, {"$set": {"is_admin": True}})
                return user_id
            password_hash = await self._hash(password)
            await self.db.users.update_one(
                {"_id": user_id}, {"$set": {"password_hash": password_hash, "is_admin": True}}
            )
            # Tokens issued under the old password must not outlive it.
            await self.revoke_all(user_id)
            return user_id
        password_hash = await self._hash(password)
        user_id = await next_id(self.db, "users")
        try:
            await self.db.users.insert_one(
                {
                    "_id": user_id,
                    "username": username,
                    "username_key": username.lower(),
                    "password_hash": password_hash,
                    "balance": 0,
                    "is_admin": True,
                    "non_payer": False,
                    "created_at": utc_now(),
                }
            )
        except DuplicateKeyError:  # another process created it a moment ago
            return await self.ensure_admin(password, username)
        return user_id

    async def _keep_owner(self, user_id: int) -> None:
        """The seeded admin stays an owner: roles given to it on the staff page keep `owner` (one
        without roles is an owner already), so restarting with ADMIN_PASSWORD always gives the
        business an owner back."""
        await self.db.users.update_one(
            {"_id": user_id, "roles.0": {"$exists": True}}, {"$addToSet": {"roles": "owner"}}
        )
        self.cache.discard_user(user_id)

    # -- staff (docs/admin.md "Roles") -------------------------------------------------------------
    async def user_id_for(self, username: str) -> int | None:
        """The id of the account with this username (any case), or None."""
        if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
            return None
        user = await self.db.users.find_one({"username_key": username.lower()}, {"_id": 1})
        return int(user["_id"]) if user is not None else None

    async def staff_account(self, user_id: int) -> StaffAccount:
        user = await self.db.users.find_one(
            {"_id": user_id}, {"username": 1, "is_admin": 1, "roles": 1, "display_name": 1}
        )
        if user is None:
            raise NotFound(f"no user {user_id}")
        return _staff(user)

    async def staff_members(self, limit: int = 500) -> list[StaffAccount]:
        """Every account that may sign in to the back office (`is_admin`), by username."""
        cursor = self.db.users.find(
            {"is_admin": True}, {"username": 1, "is_admin": 1, "roles": 1, "display_name": 1}
        ).sort("username_key", 1)
        return [_staff(user) async for user in cursor.limit(limit)]

    async def set_staff_roles(self, user_id: int, roles: list[str]) -> StaffAccount:
        """Store an account's staff roles: with any it is staff (`is_admin`); with none it is not,
        and its admin tokens are revoked. This process forgets its cached sign-ins of the account at
        once (other processes within the token cache's TTL)."""
        names = sorted(set(roles))
        result = await self.db.users.update_one(
            {"_id": user_id}, {"$set": {"roles": names, "is_admin": bool(names)}}
        )
        if result.matched_count != 1:
            raise NotFound(f"no user {user_id}")
        self.cache.discard_user(user_id)
        if not names:
            await self.db.tokens.update_many(
                {"user_id": user_id, "admin": True, "revoked": False},
                {"$set": {"revoked": True, "revoked_at": utc_now()}},
            )
        return await self.staff_account(user_id)

    async def profile(self, user_id: int) -> Profile:
        user = await self.db.users.find_one(
            {"_id": user_id}, {"username": 1, "balance": 1, "is_admin": 1, "display_name": 1}
        )
        if user is None:
            raise NotFound(f"no user {user_id}")
        return Profile(
            user_id,
            user["username"],
            int(user["balance"]),
            bool(user.get("is_admin")),
            user.get("display_name") or user["username"],
        )

    async def set_display_name(self, user_id: int, raw: str) -> str:
        """Validate (`validate_display_name`) and store; returns the name as stored."""
        name = validate_display_name(raw)
        result = await self.db.users.update_one({"_id": user_id}, {"$set": {"display_name": name}})
        if result.matched_count != 1:
            raise NotFound(f"no user {user_id}")
        return name

    # -- tokens --------------------------------------------------------------------------------
    async def issue_token(self, user_id: int, *, admin: bool) -> str:
        token = secrets.token_urlsafe(32)
        now = utc_now()
        await self.db.tokens.insert_one(
            {
                "_id": hash_token(token),
                "user_id": user_id,
                "admin": admin,
                "revoked": False,
                "created_at": now,
                "expires_at": now + self.token_lifetime,
            }
        )
        return token

    async def user_for_token(self, token: str) -> AuthUser | None:
        """The user a bearer token belongs to, or None (unknown, revoked or expired).

        Admin rights need both an admin account and an admin-scoped token (`/admin/login`).
        Tokens not in the cache are looked up together with the other requests' misses
        (`CoalescedLookups`).
        """
        if not token or len(token) > TOKEN_MAX_LENGTH:
            return None
        key = hash_token(token)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return await self._lookups.get(key)

    async def _users_for_tokens(self, keys: Sequence[str]) -> dict[str, AuthUser]:
        """The live tokens among `keys` (token hashes) and their users, in two reads whatever
        their number; each one found is cached."""
        now = utc_now()
        live = {"revoked": False, "expires_at": {"$gt": now}}
        if len(keys) == 1:
            record = await self.db.tokens.find_one({"_id": keys[0], **live})
            records = [] if record is None else [record]
        else:
            records = await self.db.tokens.find({"_id": {"$in": list(keys)}, **live}).to_list()
        if not records:
            return {}
        user_ids = list({record["user_id"] for record in records})
        projection = {"username": 1, "is_admin": 1, "roles": 1}
        if len(user_ids) == 1:
            user = await self.db.users.find_one({"_id": user_ids[0]}, projection)
            users = [] if user is None else [user]
        else:
            users = await self.db.users.find({"_id": {"$in": user_ids}}, projection).to_list()
        by_id = {user["_id"]: user for user in users}
        found: dict[str, AuthUser] = {}
        for record in records:
            user = by_id.get(record["user_id"])
            if user is None:
                continue
            is_admin = bool(record["admin"] and user.get("is_admin"))
            roles = frozenset(str(name) for name in user.get("roles") or ()) if is_admin else frozenset()
            auth = AuthUser(int(user["_id"]), user["username"], is_admin, roles)
            remaining = (as_utc(record["expires_at"]) - now).total_seconds()
            self.cache.put(record["_id"], auth, remaining)
            found[record["_id"]] = auth
        return found

    async def logout(self, token: str) -> bool:
        """Revoke one token; True if it was live."""
        key = hash_token(token)
        self.cache.discard(key)
        result = await self.db.tokens.update_one(
            {"_id": key, "revoked": False}, {"$set": {"revoked": True, "revoked_at": utc_now()}}
        )
        return result.modified_count == 1

    async def revoke_all(self, user_id: int) -> None:
        self.cache.discard_user(user_id)
        await self.db.tokens.update_many(
            {"user_id": user_id, "revoked": False}, {"$set": {"revoked": True, "revoked_at": utc_now()}}
        )

    # -- ledger --------------------------------------------------------------------------------
    async def credit(
        self, user_id: int, amount: int, kind: str, ref: str, session: TxSession | None = None
    ) -> LedgerEntry:
        """Add `amount` fen to the balance (and the ledger). Idempotent on `ref`."""
        _check_change(amount, kind, ref)
        return await self._apply(user_id, amount, kind, ref, session)

    async def debit(
        self, user_id: int, amount: int, kind: str, ref: str, session: TxSession | None = None
    ) -> LedgerEntry:
        """Take `amount` fen from the balance, never below zero (InsufficientBalance). Idempotent on `ref`.

        With `session`, the change joins the caller's transaction; else it runs in its own.
        """
        _check_change(amount, kind, ref)
        return await self._apply(user_id, -amount, kind, ref, session)

    async def debit_new(
        self,
        user_id: int,
        amount: int,
        kind: str,
        ref: str,
        session: TxSession | None = None,
        expected_balance: int | None = None,
    ) -> LedgerEntry | None:
        """`debit` under a ref never used before (a new order's), for the request path: no look-up
        of the ref first (its unique index refuses a reuse: RefReused, nothing changed), and a short
        balance answers None, nothing changed, instead of raising InsufficientBalance.
        `expected_balance` (the balance the caller last saw): see `_change`."""
        _check_change(amount, kind, ref)

        def reused(_error: DuplicateKeyError) -> RefReused:
            return RefReused(f"the reference {ref!r} was already used")

        async def change(s: TxSession) -> LedgerEntry | None:
            try:
                return await self._change(s, user_id, -amount, kind, ref, expected_balance, reused)
            except InsufficientBalance:
                return None
            except DuplicateKeyError:
                # The transaction is aborted with it: the balance change is undone too.
                raise RefReused(f"the reference {ref!r} was already used") from None

        if session is not None:
            return await change(session)
        return await run_in_transaction(self.client, change)

    async def ledger(self, user_id: int, *, skip: int = 0, limit: int = 100) -> list[LedgerEntry]:
        cursor = self.db.ledger.find({"user_id": user_id}).sort([("at", -1), ("_id", -1)])
        return [_entry(doc) async for doc in cursor.skip(skip).limit(limit)]

    async def ledger_page(self, user_id: int, skip: int, limit: int) -> tuple[list[LedgerEntry], int]:
        """A page of the user's ledger, newest first, and how many entries there are."""
        total = await self.db.ledger.count_documents({"user_id": user_id})
        return await self.ledger(user_id, skip=skip, limit=limit), total

    async def _apply(
        self, user_id: int, delta: int, kind: str, ref: str, session: TxSession | None
    ) -> LedgerEntry:
        async def change(s: TxSession) -> LedgerEntry:
            return await self._apply_in(s, user_id, delta, kind, ref)

        if session is not None:
            return await change(session)
        try:
            return await run_in_transaction(self.client, change)
        except DuplicateKeyError:
            # A concurrent transaction committed the same ref between our read and our insert.
            existing = await self.db.ledger.find_one({"ref": ref})
            if existing is None:
                raise
            return _replayed(existing, user_id, delta, kind)

    async def _apply_in(self, s: TxSession, user_id: int, delta: int, kind: str, ref: str) -> LedgerEntry:
        existing = await self.db.ledger.find_one({"ref": ref}, session=s)
        if existing is not None:
            return _replayed(existing, user_id, delta, kind)
        return await self._change(s, user_id, delta, kind, ref)

    async def _change(
        self,
        s: TxSession,
        user_id: int,
        delta: int,
        kind: str,
        ref: str,
        expected: int | None = None,
        reused: Callable[[DuplicateKeyError], Exception] | None = None,
    ) -> LedgerEntry:
        """The guarded balance change and its ledger entry (a ref already used: DuplicateKeyError).

        With `expected` (the balance the caller last saw) first a change conditional on the balance
        being exactly that: when it matches, the balance after is `expected + delta`, no read;
        when it does not (the balance moved since), nothing changed and the guarded change below
        runs, reading the balance after.

        With `reused` (a ref never used before, the caller's error for a reuse) the entry's insert
        is one of the unit's writes sent together (`UnitWrites`): nothing in the unit reads it."""
        if expected is not None and 0 <= expected + delta <= MAX_BALANCE:
            exact = await self.db.users.update_one(
                {"_id": user_id, "balance": expected}, {"$inc": {"balance": delta}}, session=s
            )
            if exact.matched_count == 1:
                entry = LedgerEntry(user_id, kind, delta, expected + delta, ref, utc_now())
                return await self._write_entry(s, entry, reused)
        guard: Document = (
            {"balance": {"$gte": -delta}} if delta < 0 else {"balance": {"$lte": MAX_BALANCE - delta}}
        )
        user = await update_then_read(
            self.db.users,
            {"_id": user_id, **guard},
            {"$inc": {"balance": delta}},
            projection={"balance": 1},
            session=s,
        )
        if user is None:
            current = await self.db.users.find_one({"_id": user_id}, {"balance": 1}, session=s)
            if current is None:
                raise NotFound(f"no user {user_id}")
            if delta < 0:
                raise InsufficientBalance(f"the balance ({current['balance']} fen) is less than {-delta} fen")
            raise BalanceLimit(f"a balance may not exceed {MAX_BALANCE} fen")
        entry = LedgerEntry(user_id, kind, delta, int(user["balance"]), ref, utc_now())
        return await self._write_entry(s, entry, reused)

    async def _write_entry(
        self, s: TxSession, entry: LedgerEntry, reused: Callable[[DuplicateKeyError], Exception] | None = None
    ) -> LedgerEntry:
        document = {
            "user_id": entry.user_id,
            "kind": entry.kind,
            "amount": entry.amount,
            "balance_after": entry.balance_after,
            "ref": entry.ref,
            "at": entry.at,
        }
        writes = unit_writes(s) if reused is not None else None
        if writes is not None:
            writes.insert(self.db.ledger, document, reused)
        else:
            await self.db.ledger.insert_one(document, session=s)
        return entry


def _staff(user: Document) -> StaffAccount:
    return StaffAccount(
        int(user["_id"]),
        user["username"],
        bool(user.get("is_admin")),
        tuple(sorted(str(name) for name in user.get("roles") or ())),
        user.get("display_name") or user["username"],
    )


def _check_change(amount: int, kind: str, ref: str) -> None:
    if type(amount) is not int or not 0 < amount <= MAX_BALANCE:
        raise InvalidInput(f"an amount must be an integer number of fen in 1..{MAX_BALANCE}")
    if not kind or not ref or len(ref) > MAX_REF_LENGTH:
        raise InvalidInput(f"a ledger change needs a kind and a ref of 1-{MAX_REF_LENGTH} characters")


def _entry(doc: Document, *, replayed: bool = False) -> LedgerEntry:
    return LedgerEntry(
        int(doc["user_id"]),
        doc["kind"],
        int(doc["amount"]),
        int(doc["balance_after"]),
        doc["ref"],
        as_utc(doc["at"]),
        replayed,
        str(doc.get("_id", "")),
    )


def _replayed(doc: Document, user_id: int, delta: int, kind: str) -> LedgerEntry:
    """The entry already written for this ref, provided the retry asks for the very same change."""
    if doc["user_id"] != user_id or doc["amount"] != delta or doc["kind"] != kind:
        raise RefReused(f"the reference {doc['ref']!r} was already used for a different change")
    return _entry(doc, replayed=True)


def ledger_document(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as JSON-ready data (REST answers)."""
    return {
        "user_id": entry.user_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "ref": entry.ref,
        "at": iso_utc(entry.at),
        "replayed": entry.replayed,
    }
