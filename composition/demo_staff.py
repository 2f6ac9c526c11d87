"""Demo staff, one account per role (docs/admin.md "Roles"), so `make run` shows every lane.

Seeded on every development start with demo data (idempotent): an account that exists keeps the
roles it has (an owner may have changed them on the staff page); one without roles gets its demo
role. The mentors `mentor1` / `mentor2` come with the demo degree (composition/demo_degree.py).
"""

from __future__ import annotations

import asyncio
from typing import Final

from web.context import AppContext

DEMO_STAFF: Final = (
    ("operator", "operator-demo-pass", "operator"),
    ("course_manager", "course_manager-demo-pass", "course_manager"),
    ("moderator", "moderator-demo-pass", "moderator"),
    ("support", "support-demo-pass", "support"),
)


async def seed_demo_staff(ctx: AppContext) -> None:
    # At once: each account's password hash is a CPU-bound scrypt in a thread, so two cores hash two.
    await asyncio.gather(*(_seed_one(ctx, *account) for account in DEMO_STAFF))


async def _seed_one(ctx: AppContext, username: str, password: str, role: str) -> None:
    accounts = ctx.accounts
    user_id = await accounts.user_id_for(username)
    if user_id is None:
        user_id, _token = await accounts.register(username, password)
    account = await accounts.staff_account(user_id)
    if not account.roles and not account.is_admin:
        await accounts.set_staff_roles(user_id, [role])


def demo_staff_line() -> str:
    """The banner's line naming the demo staff accounts."""
    return ", ".join(f"{username} / {password}" for username, password, _role in DEMO_STAFF)
