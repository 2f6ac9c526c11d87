"""`python -m persistence.community.repair [--dry-run]`: recompute every community counter from its
records (docs/community.md "The counter rule and repair") and print, as JSON, how many documents
were wrong per counter. The cure for a process that died between a record's write and its
counter's; safe while the service runs (each fix is a compare-and-set, see `recount`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import orjson

from persistence.community.reactions import recount
from persistence.mongo import connect


async def _repair_main(mongodb_url: str, database: str, dry_run: bool) -> int:
    client = connect(mongodb_url)
    try:
        wrong = await recount(client[database], dry_run)
    finally:
        await client.close()
    print(orjson.dumps(wrong).decode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m persistence.community.repair",
        description="Recompute the community's counters (likes, comments, views, collects, replies, "
        "followers, following, posts) from their records; print how many documents were wrong.",
    )
    parser.add_argument("--dry-run", action="store_true", help="count what is wrong, change nothing")
    parser.add_argument("--mongodb-url", default=os.environ.get("MONGODB_URL", ""), help="[MONGODB_URL]")
    parser.add_argument("--database", default=os.environ.get("MONGODB_DB", "gavel"), help="[MONGODB_DB]")
    args = parser.parse_args(argv)
    if not args.mongodb_url:
        parser.error("--mongodb-url (or MONGODB_URL) is required")
    return asyncio.run(_repair_main(args.mongodb_url, args.database, args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
