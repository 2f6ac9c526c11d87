"""Staff accounts and their roles: owner only (issue 24; docs/admin.md "Roles").

`/admin/staff` lists every account that may sign in to the back office with its roles and last
sign-in, and sets an account's roles (found by username): one `staff.roles` audit entry per change,
through `AdminActions.staff_set_roles`, which refuses to leave the business without an owner.
"""

from __future__ import annotations

import datetime

from admin.base import PREFIX, AdminHandler, FormError, text_field
from backoffice.roles import Role, effective_roles
from persistence.accounts import StaffAccount

URL = PREFIX + "/staff"
ROLE_LABELS: dict[str, str] = {
    Role.OWNER.value: "Owner — everything, staff and roles",
    Role.OPERATOR.value: "Operator — auctions, orders, users",
    Role.COURSE_MANAGER.value: "Course manager — catalogue, coupons, degree path",
    Role.MENTOR.value: "Mentor — own students' homework",
    Role.MODERATOR.value: "Moderator — community",
    Role.SUPPORT.value: "Support — reads everything a customer asks about, writes notes",
}
REASON_MAX = 500


class StaffHandler(AdminHandler):
    area = "staff"
    nav = "staff"

    async def get(self) -> None:
        await self.show()

    async def show(self, *, error: str | None = None, username: str = "") -> None:
        members = await self.ctx.accounts.staff_members()
        self.render(
            "staff.html",
            members=members,
            held={m.user_id: sorted(effective_roles(m.is_admin, m.roles)) for m in members},
            last_sign_in=await self.last_sign_ins(members),
            role_labels=ROLE_LABELS,
            error=error,
            username=username,
            page_title="Staff",
        )

    async def last_sign_ins(self, members: list[StaffAccount]) -> dict[int, datetime.datetime]:
        """When each member last signed in to the back office (the audit log's `auth.login`)."""
        found: dict[int, datetime.datetime] = {}
        for member in members:
            entry = await self.ctx.db.audit.find_one(
                {"action": "auth.login", "admin_user_id": member.user_id}, {"at": 1}, sort=[("at", -1)]
            )
            if entry is not None:
                found[member.user_id] = entry["at"]
        return found

    async def post(self) -> None:
        raw_user = self.form("user_id").strip()
        username = self.form("username").strip()[:64]
        roles = [name for name in self.form_list("role") if name in ROLE_LABELS]
        try:
            reason = text_field(self.form("reason"), "reason", max_length=REASON_MAX, required=False)
            if raw_user:
                if not raw_user.isdigit() or len(raw_user) > 16:
                    raise FormError("no such account")
                user_id: int | None = int(raw_user)
            else:
                user_id = await self.ctx.accounts.user_id_for(username)
                if user_id is None:
                    raise FormError(f"no account with the username {username!r}")
        except FormError as error:
            self.set_status(400)
            await self.show(error=error.message, username=username)
            return

        async def run() -> None:
            assert user_id is not None
            after = await self.actions.staff_set_roles(self.actor(), user_id, roles, reason)
            shown = ", ".join(after.roles) if after.roles else "none (no longer staff)"
            self.done(f"{after.username}: roles {shown}.", URL)

        await self.guarded(run, back=URL)


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (URL, StaffHandler),
]
