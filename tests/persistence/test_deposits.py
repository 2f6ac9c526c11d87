"""Deposits against a real MongoDB and engine: exactly-once payment, idempotent confirmation, repair."""

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.errors import NotFound, SessionEnded
from engine.clock import FakeClock
from engine.commands import CancelLot, OpenLot, PutLot, PutSession
from engine.engine import Engine
from engine.settle.deposits import (
    DepositExists,
    DepositsClosed,
    DepositService,
    DepositStateConflict,
    NoDepositRequired,
)
from persistence.accounts import Accounts, InsufficientBalance, ScryptParams
from persistence.mongo import Database, connect, ensure_indexes, utc_now
from persistence.settlement.uow import mongo_deposit_uow_factory

START = 1_800_000_000_000
HOUR = 3_600_000


@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)
    database = client[mongo_db.name]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[Engine]:
    running = Engine(FakeClock(START), tmp_path / "journal", None, sync=False)
    await running.start()
    # Session 1 (whole-session deposit 1000) with lots 10 (per-lot 300) and 11 (none).
    for command in (
        PutSession(1, START + HOUR, START + HOUR, START + 2 * HOUR, START + 3 * HOUR, 1_000),
        PutLot(10, 1, ["fixed", 1_000, 100], 0, 300),
        PutLot(11, 1, ["fixed", 1_000, 100], 0, 0),
    ):
        assert (await running.execute(command)).ok
    try:
        yield running
    finally:
        await running.stop(snapshot=False)


@pytest.fixture
def accounts(db: Database) -> Accounts:
    return Accounts(db.client, db, scrypt=ScryptParams(n=2**10))


@pytest.fixture
def deposits(db: Database, accounts: Accounts, engine: Engine) -> DepositService:
    return DepositService(mongo_deposit_uow_factory(db.client, db, accounts), engine, clock=utc_now)


async def funded_user(accounts: Accounts, name: str, amount: int) -> int:
    user_id, _ = await accounts.register(name, "long-password")
    if amount:
        await accounts.credit(user_id, amount, "admin_credit", f"fund:{name}")
    return user_id


async def test_paid_from_balance(
    deposits: DepositService, accounts: Accounts, engine: Engine, db: Database
) -> None:
    user_id = await funded_user(accounts, "ann", 1_500)
    deposit = await deposits.create(user_id, 1, None, "balance")
    assert (deposit.status, deposit.amount, deposit.payment_id) == ("paid", 1_000, None)
    assert user_id in engine.book.sessions[1].depositors
    assert (await accounts.profile(user_id)).balance == 500
    entry = await db.ledger.find_one({"ref": f"deposit:{deposit.id}"})
    assert entry is not None and entry["amount"] == -1_000 and entry["balance_after"] == 500
    with pytest.raises(DepositExists):
        await deposits.create(user_id, 1, None, "balance")
    with pytest.raises(DepositExists):
        await deposits.create(user_id, 1, 10, "balance")  # the session deposit covers the lot
    with pytest.raises(NoDepositRequired):
        await deposits.create(user_id, 1, 11, "balance")


async def test_insufficient_balance_leaves_nothing(
    deposits: DepositService, accounts: Accounts, db: Database
) -> None:
    user_id = await funded_user(accounts, "bea", 999)
    with pytest.raises(InsufficientBalance):
        await deposits.create(user_id, 1, None, "balance")
    assert await db.deposits.count_documents({}) == 0
    assert (await accounts.profile(user_id)).balance == 999


async def test_concurrent_requests_pay_once(
    deposits: DepositService, accounts: Accounts, engine: Engine, db: Database
) -> None:
    user_id = await funded_user(accounts, "cid", 10_000)
    results = await asyncio.gather(
        *(deposits.create(user_id, 1, 10, "balance") for _ in range(8)), return_exceptions=True
    )
    paid = [r for r in results if not isinstance(r, BaseException)]
    assert len(paid) == 1
    assert all(isinstance(r, DepositExists) for r in results if isinstance(r, BaseException))
    assert (await accounts.profile(user_id)).balance == 9_700
    assert await db.ledger.count_documents({"kind": "deposit"}) == 1
    assert user_id in engine.book.lots[10].depositors


async def test_provider_flow(deposits: DepositService, accounts: Accounts, engine: Engine) -> None:
    user_id = await funded_user(accounts, "dan", 0)
    pending = await deposits.create(user_id, 1, 10, "provider")
    assert pending.status == "pending" and pending.payment_id
    assert (await deposits.by_payment_id(pending.payment_id)).id == pending.id
    assert user_id not in engine.book.lots[10].depositors
    paid = await deposits.mark_paid(pending.id)
    assert paid.status == "paid" and paid.paid_at is not None
    assert user_id in engine.book.lots[10].depositors
    again = await deposits.mark_paid(pending.id)
    assert again.paid_at == paid.paid_at
    with pytest.raises(DepositStateConflict):
        await deposits.mark_failed(pending.id)
    with pytest.raises(NotFound):
        await deposits.mark_paid(424242)
    with pytest.raises(NotFound):
        await deposits.by_payment_id("unknown")
    listed, total = await deposits.list_for_user(user_id, 0, 10)
    assert total == 1 and listed[0].status == "paid"


async def test_closed_targets(deposits: DepositService, accounts: Accounts, engine: Engine) -> None:
    user_id = await funded_user(accounts, "eli", 5_000)
    assert (await engine.execute(OpenLot(10))).ok
    assert (await engine.execute(CancelLot(10, "withdrawn"))).ok
    with pytest.raises(DepositsClosed):
        await deposits.create(user_id, 1, 10, "balance")
    assert (await engine.execute(OpenLot(11))).ok
    assert (await engine.execute(CancelLot(11, "withdrawn"))).ok
    with pytest.raises(SessionEnded):
        await deposits.create(user_id, 1, None, "balance")
    assert (await accounts.profile(user_id)).balance == 5_000


async def test_reregister_paid_after_a_lost_registration(
    deposits: DepositService, engine: Engine, db: Database
) -> None:
    # Paid in MongoDB, but the process died before the engine heard of it.
    now = utc_now()
    common = {"amount": 1, "pay_with": "balance", "created_at": now, "paid_at": now}
    await db.deposits.insert_many(
        [
            {"_id": 1, "user_id": 5, "session_id": 1, "lot_id": None, "status": "paid", **common},
            {"_id": 2, "user_id": 6, "session_id": 1, "lot_id": 10, "status": "paid", **common},
            {"_id": 3, "user_id": 7, "session_id": 1, "lot_id": 10, "status": "pending", **common},
            {"_id": 4, "user_id": 8, "session_id": 1, "lot_id": 10, "status": "failed", **common},
        ]
    )
    assert await deposits.reregister_paid() == 2
    assert engine.book.sessions[1].depositors == {5}
    assert engine.book.lots[10].depositors == {6}
    assert await deposits.reregister_paid() == 0  # already held: nothing resubmitted
