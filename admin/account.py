"""The signed-in admin's own account: the optional TOTP second factor (enrol, confirm, turn off)."""

from __future__ import annotations

from admin.base import AdminHandler
from persistence.two_factor import CODE_MAX_LENGTH, Enrolment, TwoFactor, TwoFactorInvalid

URL = "/admin/account/two-factor"


class TwoFactorPage(AdminHandler):
    area = "account"
    nav = "account"

    async def show(
        self,
        *,
        error: str | None = None,
        enrolment: Enrolment | None = None,
        recovery_codes: list[str] | None = None,
    ) -> None:
        assert self.admin_user is not None
        two_factor = TwoFactor(self.ctx.db)
        if enrolment is None and recovery_codes is None:
            enrolment = await two_factor.pending(self.admin_user.user_id, self.admin_user.username)
        self.render(
            "two_factor.html",
            error=error,
            status=await two_factor.status(self.admin_user.user_id),
            enrolment=enrolment,
            recovery_codes=recovery_codes,
            page_title="Two-factor sign-in",
        )

    async def get(self) -> None:
        await self.show()

    async def post(self) -> None:
        user = self.admin_user
        assert user is not None
        two_factor = TwoFactor(self.ctx.db)
        action = self.form("action")
        code = self.form("code")[:CODE_MAX_LENGTH]
        try:
            if action == "start":
                if (await two_factor.status(user.user_id)).enabled:
                    raise TwoFactorInvalid("two-factor sign-in is already on; turn it off first")
                await self.show(enrolment=await two_factor.start(user.user_id, user.username))
            elif action == "confirm":
                codes = await two_factor.confirm(user.user_id, code)
                await self.actions.two_factor_changed(self.actor(), enabled=True)
                await self.show(recovery_codes=codes)
            elif action == "disable":
                await two_factor.disable(user.user_id, code)
                await self.actions.two_factor_changed(self.actor(), enabled=False)
                self.done("Two-factor sign-in is off.", URL)
            else:
                raise TwoFactorInvalid("unknown action")
        except TwoFactorInvalid as error:
            self.set_status(400)
            await self.show(error=error.message)


ROUTES = [(URL, TwoFactorPage)]
