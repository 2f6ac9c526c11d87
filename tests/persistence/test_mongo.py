"""Helpers of persistence/mongo.py against the real embedded server."""

import asyncio
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from persistence.mongo import next_id


async def test_concurrent_first_allocations_of_a_new_counter_never_repeat(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    for counter in range(10):
        ids = await asyncio.gather(*[next_id(mongo_db, f"fresh-{counter}") for _ in range(10)])
        assert len(set(ids)) == 10, ids
    assert await next_id(mongo_db, "fresh-9") > max(ids)  # and it keeps counting up
