"""Accounts over REST: register, login, logout, me, and the admin login."""

import logging
from typing import Any, Literal

from engine.book.errors import GavelError
from persistence.accounts import PASSWORD_MAX, LedgerEntry
from persistence.mongo import iso_utc, to_ms
from persistence.signins import SigninHistory
from persistence.two_factor import CODE_MAX_LENGTH, TwoFactor, TwoFactorInvalid, TwoFactorRequired
from web.errors import ValidationFailed
from web.http import JsonHandler
from web.signin import signin_guard

log = logging.getLogger("gavel.gateway.auth")


class RegisterHandler(JsonHandler):
    async def post(self) -> None:
        body = self.fields(("username", "password"))
        # Lengths and characters are the accounts service's rules; here only the JSON types.
        username = body.text("username", min_length=0, max_length=1000)
        password = body.text("password", min_length=0, max_length=1000)
        await signin_guard(self.ctx).register(self.request.remote_ip or "")
        user_id, token = await self.ctx.accounts.register(username, password)
        self.reply({"user_id": user_id, "token": token}, 201)


class LoginHandler(JsonHandler):
    admin = False

    async def post(self) -> None:
        body = self.fields(("username", "password", "totp"))
        username = body.text("username", min_length=1, max_length=64)
        password = body.text("password", min_length=1, max_length=PASSWORD_MAX)
        code = body.text("totp", min_length=0, max_length=CODE_MAX_LENGTH, default="")
        guard = signin_guard(self.ctx)
        address = self.request.remote_ip or ""
        # Every attempt, refused or not, goes into the account's sign-in history (its user page).
        history = SigninHistory(self.ctx.db)
        surface: Literal["app", "admin"] = "admin" if self.admin else "app"
        agent = self.request.headers.get("User-Agent", "")
        try:
            # Checked against the limits and reserved before the password is checked; the outcome
            # counts it as a failure or gives it back (web/signin.py).
            await guard.attempt(username, address)
            try:
                user_id = await self.ctx.accounts.check_password(username, password, admin=self.admin)
                # An enrolled account needs its code at every door (a bidder token of an admin
                # account still spends its balance). A missing or wrong code is a failed attempt.
                two_factor = TwoFactor(self.ctx.db)
                if await two_factor.enrolled(user_id):
                    if not code:
                        raise TwoFactorRequired("this account needs its authenticator code: send it as totp")
                    if not await two_factor.verify(user_id, code):
                        raise TwoFactorInvalid("the authenticator or recovery code is wrong or already used")
            except Exception:
                await guard.failed(username, address)
                raise
        except GavelError as refused:
            await history.record(
                username=username,
                surface=surface,
                ok=False,
                ip=address,
                user_agent=agent,
                detail=refused.code,
            )
            raise
        await guard.succeeded(username, address)
        token = await self.ctx.accounts.issue_token(user_id, admin=self.admin)
        await history.record(
            username=username, surface=surface, ok=True, ip=address, user_agent=agent, user_id=user_id
        )
        self.reply({"user_id": user_id, "token": token})


class AdminLoginHandler(LoginHandler):
    """Same credentials check, but only admins get a token, and it is admin-scoped."""

    admin = True


class LogoutHandler(JsonHandler):
    async def post(self) -> None:
        await self.require_user()
        await self.ctx.accounts.logout(self.bearer_token())
        self.reply({"ok": True})


class MeHandler(JsonHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply(await self._me(user.user_id))

    async def patch(self) -> None:
        """Change the display name (the sign-in username never changes)."""
        user = await self.require_user()
        body = self.fields(("display_name",))
        if not isinstance(body.data.get("display_name"), str):
            raise ValidationFailed("display_name must be a string")
        await self.ctx.accounts.set_display_name(user.user_id, body.data["display_name"])
        self.reply(await self._me(user.user_id))

    async def _me(self, user_id: int) -> dict[str, Any]:
        profile = await self.ctx.accounts.profile(user_id)
        return {
            "user_id": profile.user_id,
            "username": profile.username,
            "display_name": profile.display_name,
            "balance": profile.balance,
            "is_mentor": bool(self.ctx.mentoring and await self.ctx.mentoring.is_mentor(profile.user_id)),
        }


class LedgerHandler(JsonHandler):
    """`GET /api/v1/me/ledger`: the caller's balance changes, newest first, a page at a time."""

    async def get(self) -> None:
        user = await self.require_user()
        page = self.page()
        entries, total = await self.ctx.accounts.ledger_page(user.user_id, page.skip, page.page_size)
        self.reply(page.answer([ledger_entry_json(entry) for entry in entries], total))


def ledger_entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "amount": entry.amount,  # signed fen: credits positive, debits negative
        "balance_after": entry.balance_after,
        "kind": entry.kind,
        "ref": entry.ref,
        "reference": entry.ref,
        "created_at": iso_utc(entry.at),
        "created_at_ms": to_ms(entry.at),
    }


ROUTES = [
    (r"/api/v1/auth/register", RegisterHandler),
    (r"/api/v1/auth/login", LoginHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/me", MeHandler),
    (r"/api/v1/me/ledger", LedgerHandler),
    (r"/api/v1/admin/login", AdminLoginHandler),
]
