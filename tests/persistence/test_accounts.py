"""Accounts against a real MongoDB: passwords, tokens and their cache, the admin, and the ledger."""

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.errors import NotFound
from persistence.accounts import (
    MAX_BALANCE,
    Accounts,
    BadCredentials,
    BalanceLimit,
    InsufficientBalance,
    InvalidInput,
    RefReused,
    ScryptParams,
    UsernameTaken,
    hash_password,
    hash_token,
    verify_password,
)
from persistence.mongo import Database, connect, ensure_indexes, run_in_transaction

FAST = ScryptParams(n=2**10)


@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)
    database = client[mongo_db.name]  # the fixture drops it afterwards
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
def accounts(db: Database) -> Accounts:
    return Accounts(db.client, db, scrypt=FAST)


async def ledger_sum(db: Database, user_id: int) -> int:
    rows = await (
        await db.ledger.aggregate(
            [{"$match": {"user_id": user_id}}, {"$group": {"_id": None, "s": {"$sum": "$amount"}}}]
        )
    ).to_list()
    return int(rows[0]["s"]) if rows else 0


def test_password_hashes_are_salted_and_checked() -> None:
    first = hash_password("secret-password", ScryptParams())  # production cost, once
    second = hash_password("secret-password", ScryptParams())
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("secret-password", first)
    assert not verify_password("secret-passwore", first)
    assert not verify_password("secret-password", "md5$whatever")
    assert not verify_password("secret-password", "garbage")


async def test_register_login_and_tokens(accounts: Accounts, db: Database) -> None:
    user_id, token = await accounts.register("Alice", "alice-password")
    assert await accounts.user_for_token(token) == (await accounts.user_for_token(token))
    auth = await accounts.user_for_token(token)
    assert auth is not None and (auth.user_id, auth.username, auth.is_admin) == (user_id, "Alice", False)
    stored = await db.tokens.find_one({"_id": hash_token(token)})
    assert stored is not None and stored["user_id"] == user_id  # only the hash is stored
    assert await db.tokens.find_one({"_id": token}) is None

    with pytest.raises(UsernameTaken):
        await accounts.register("ALICE", "other-password")
    with pytest.raises(BadCredentials):
        await accounts.login("alice", "wrong-password")
    with pytest.raises(BadCredentials):
        await accounts.login("nobody", "alice-password")
    with pytest.raises(BadCredentials):
        await accounts.login("alice", "alice-password", admin=True)
    login_id, second = await accounts.login("alice", "alice-password")
    assert login_id == user_id

    assert await accounts.logout(token) is True
    assert await accounts.logout(token) is False
    assert await accounts.user_for_token(token) is None
    assert await accounts.user_for_token(second) is not None
    assert await accounts.user_for_token("") is None
    assert await accounts.user_for_token("x" * 1000) is None


@pytest.mark.parametrize(
    ("username", "password"),
    [("ab", "long-enough"), ("a" * 33, "long-enough"), ("bad name", "long-enough"), ("ok_name", "short")],
)
async def test_register_rules(accounts: Accounts, username: str, password: str) -> None:
    with pytest.raises(InvalidInput):
        await accounts.register(username, password)


async def test_token_cache_expires_and_other_processes_catch_up(accounts: Accounts, db: Database) -> None:
    clock = [1000.0]
    accounts.cache.now = lambda: clock[0]
    _, token = await accounts.register("carol", "carol-password")
    assert await accounts.user_for_token(token) is not None
    # Another gateway process revokes it: this one may serve its cached answer for up to 30 s...
    other = Accounts(db.client, db, scrypt=FAST)
    await other.logout(token)
    assert await accounts.user_for_token(token) is not None
    clock[0] += 31
    assert await accounts.user_for_token(token) is None


async def test_expired_tokens_are_refused(accounts: Accounts, db: Database) -> None:
    _, token = await accounts.register("dave", "dave-password")
    await db.tokens.update_one(
        {"_id": hash_token(token)},
        {"$set": {"expires_at": datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)}},
    )
    assert await accounts.user_for_token(token) is None


async def test_a_burst_of_cache_misses_is_looked_up_in_two_reads(
    accounts: Accounts, db: Database, mongo_url: str
) -> None:
    """Users back together once their cached tokens expired (a sale opening): the misses of one
    turn of the loop are read together, the tokens in one `find` and their users in another. Two
    reads per request queued one by one through the driver's pool and ran out of their 3-s bound
    (503 in a burst of cart additions: docs/performance.md, checkout, sixth round)."""
    live = {}
    for number in range(10):
        user_id, token = await accounts.register(f"herd{number}", "herd-password")
        live[token] = user_id
    _, revoked = await accounts.register("revoked", "herd-password")
    await accounts.logout(revoked)
    _, expired = await accounts.register("expired", "herd-password")
    await db.tokens.update_one(
        {"_id": hash_token(expired)},
        {"$set": {"expires_at": datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)}},
    )
    admin_id = await accounts.ensure_admin("admin-password")
    _, admin = await accounts.login("admin", "admin-password", admin=True)
    _, admin_as_bidder = await accounts.login("admin", "admin-password")

    reads: list[tuple[str, str]] = []

    class Reads(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            reads.append((event.command_name, str(event.command.get(event.command_name))))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[Reads()]
    )
    try:
        cold = Accounts(client, client[db.name], scrypt=FAST)  # another process: nothing cached
        first = next(iter(live))
        asked = [*live, first, revoked, expired, "no-such-token", admin, admin_as_bidder]
        answers = await asyncio.gather(*(cold.user_for_token(token) for token in asked))
        assert [None if a is None else a.user_id for a in answers] == [
            *live.values(),
            live[first],
            None,
            None,
            None,
            admin_id,
            admin_id,
        ]
        assert [a.is_admin for a in answers if a is not None][-2:] == [True, False]
        assert sorted(reads) == [("find", "tokens"), ("find", "users")]

        reads.clear()  # all cached now
        assert await cold.user_for_token(first) == answers[0]
        assert reads == []

        # A request that goes away while it waits takes nothing from the others.
        other = Accounts(client, client[db.name], scrypt=FAST)
        leaving = asyncio.ensure_future(other.user_for_token(first))
        staying = asyncio.ensure_future(other.user_for_token(admin))
        await asyncio.sleep(0)
        leaving.cancel()
        staying_user = await staying
        assert staying_user is not None and staying_user.is_admin
        assert leaving.cancelled()
    finally:
        await client.close()


async def test_ensure_admin(accounts: Accounts) -> None:
    admin_id = await accounts.ensure_admin("first-password")
    _, token = await accounts.login("admin", "first-password", admin=True)
    auth = await accounts.user_for_token(token)
    assert auth is not None and auth.is_admin and auth.user_id == admin_id
    # A restart with the same password keeps the admin logged in.
    assert await accounts.ensure_admin("first-password") == admin_id
    assert await accounts.user_for_token(token) is not None
    # At the next start with a new password: same account, the old password and tokens are gone.
    assert await accounts.ensure_admin("second-password") == admin_id
    assert await accounts.user_for_token(token) is None
    with pytest.raises(BadCredentials):
        await accounts.login("admin", "first-password", admin=True)
    await accounts.login("admin", "second-password", admin=True)


async def test_credit_and_debit_write_the_ledger(accounts: Accounts, db: Database) -> None:
    user_id, _ = await accounts.register("erin", "erin-password")
    credit = await accounts.credit(user_id, 10_000, "admin_credit", "c1")
    assert (credit.amount, credit.balance_after, credit.replayed) == (10_000, 10_000, False)
    debit = await accounts.debit(user_id, 2_500, "deposit", "d1")
    assert (debit.amount, debit.balance_after) == (-2_500, 7_500)
    assert (await accounts.profile(user_id)).balance == 7_500
    entries = await accounts.ledger(user_id)
    assert [(e.kind, e.amount, e.balance_after, e.ref) for e in entries] == [
        ("deposit", -2_500, 7_500, "d1"),
        ("admin_credit", 10_000, 10_000, "c1"),
    ]
    assert await ledger_sum(db, user_id) == 7_500


async def test_a_repeated_ref_changes_nothing(accounts: Accounts, db: Database) -> None:
    user_id, _ = await accounts.register("fay", "fay-password")
    first = await accounts.credit(user_id, 500, "admin_credit", "topup-1")
    again = await accounts.credit(user_id, 500, "admin_credit", "topup-1")
    assert again.replayed and again.balance_after == first.balance_after and again.at == first.at
    assert (await accounts.profile(user_id)).balance == 500
    with pytest.raises(RefReused):
        await accounts.credit(user_id, 501, "admin_credit", "topup-1")
    with pytest.raises(RefReused):
        await accounts.debit(user_id, 500, "admin_credit", "topup-1")
    assert await db.ledger.count_documents({}) == 1


async def test_debits_never_go_below_zero(accounts: Accounts, db: Database) -> None:
    user_id, _ = await accounts.register("gus", "gus-password")
    await accounts.credit(user_id, 1_000, "admin_credit", "c")
    with pytest.raises(InsufficientBalance) as refused:
        await accounts.debit(user_id, 1_001, "deposit", "d")
    assert refused.value.code == "INSUFFICIENT_BALANCE"
    assert (await accounts.profile(user_id)).balance == 1_000
    assert await db.ledger.count_documents({"ref": "d"}) == 0
    await accounts.debit(user_id, 1_000, "deposit", "d")
    assert (await accounts.profile(user_id)).balance == 0


async def test_concurrent_debits(accounts: Accounts, db: Database) -> None:
    user_id, _ = await accounts.register("hal", "hal-password")
    await accounts.credit(user_id, 1_000, "admin_credit", "c")

    async def debit(ref: str) -> bool:
        try:
            await accounts.debit(user_id, 100, "deposit", ref)
        except InsufficientBalance:
            return False
        return True

    # 20 distinct debits of 100 on a balance of 1000, then 10 retries of one ref: 10 + 0 apply.
    results = await asyncio.gather(*(debit(f"d{i}") for i in range(20)))
    assert sum(results) == 10
    profile = await accounts.profile(user_id)
    assert profile.balance == 0
    await accounts.credit(user_id, 300, "admin_credit", "c2")
    await asyncio.gather(*(accounts.debit(user_id, 100, "deposit", "same") for _ in range(10)))
    assert (await accounts.profile(user_id)).balance == 200
    assert await ledger_sum(db, user_id) == 200


async def test_ledger_joins_the_callers_transaction(accounts: Accounts, db: Database) -> None:
    user_id, _ = await accounts.register("ida", "ida-password")
    await accounts.credit(user_id, 1_000, "admin_credit", "c")

    class Abort(Exception):
        pass

    async def pay_then_fail(session: Any) -> None:
        await accounts.debit(user_id, 400, "deposit", "inside", session=session)
        await db.deposits.insert_one({"_id": 1, "status": "paid"}, session=session)
        raise Abort

    with pytest.raises(Abort):
        await run_in_transaction(db.client, pay_then_fail)
    assert (await accounts.profile(user_id)).balance == 1_000
    assert await db.ledger.count_documents({"ref": "inside"}) == 0
    assert await db.deposits.count_documents({}) == 0


async def test_bad_changes(accounts: Accounts) -> None:
    user_id, _ = await accounts.register("jon", "jon-password")
    for amount in (0, -5, True, 1.0, MAX_BALANCE + 1):
        with pytest.raises(InvalidInput):
            await accounts.credit(user_id, amount, "admin_credit", "r")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await accounts.credit(user_id, 1, "admin_credit", "")
    with pytest.raises(NotFound):
        await accounts.credit(999_999, 1, "admin_credit", "r")
    await accounts.credit(user_id, MAX_BALANCE, "admin_credit", "max")
    with pytest.raises(BalanceLimit):
        await accounts.credit(user_id, 1, "admin_credit", "over")


async def test_a_debit_at_the_balance_last_seen_knows_the_balance_after_without_reading_it(
    accounts: Accounts, db: Database
) -> None:
    """`debit_new(expected_balance=…)`: the debit conditional on the exact balance the caller saw;
    when the balance moved since, the guarded debit (and its read) applies instead. Either way
    the ledger's balance-after is the balance's, and the balance equals the ledger's sum."""
    user_id, _ = await accounts.register("seen", "correct-horse")
    await accounts.credit(user_id, 10_000, "topup", "topup:seen")
    at_seen = await accounts.debit_new(user_id, 3_000, "shop_hold", "shop-hold:1", expected_balance=10_000)
    assert at_seen is not None and at_seen.balance_after == 7_000
    stale = await accounts.debit_new(user_id, 2_000, "shop_hold", "shop-hold:2", expected_balance=10_000)
    assert stale is not None and stale.balance_after == 5_000
    short = await accounts.debit_new(user_id, 6_000, "shop_hold", "shop-hold:3", expected_balance=5_000)
    assert short is None  # never below zero, whatever was expected
    assert (await accounts.profile(user_id)).balance == 5_000 == await ledger_sum(db, user_id)
    assert [e.balance_after for e in await accounts.ledger(user_id)] == [5_000, 7_000, 10_000]
