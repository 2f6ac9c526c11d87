"""Sign in and sign out of the admin UI."""

from __future__ import annotations

from admin.base import LOGIN_URL, PREFIX, AdminHandler, safe_next
from gateway.signin import SigninRefused, signin_guard
from persistence.accounts import PASSWORD_MAX, BadCredentials


class LoginHandler(AdminHandler):
    public = True

    def get(self) -> None:
        if self.admin_user is not None:
            self.redirect(safe_next(self.get_query_argument("next", None)))
            return
        self.render(
            "login.html",
            error=None,
            username="",
            next_url=safe_next(self.get_query_argument("next", None)),
            page_title="Sign in",
        )

    async def post(self) -> None:
        username = self.form("username").strip()[:64]
        password = self.form("password")
        next_url = safe_next(self.form("next"))
        address = self.request.remote_ip or ""
        guard = signin_guard(self.ctx)
        try:
            # The JSON login's guard: guessing cannot switch between the two doors.
            await guard.attempt(username, address)
        except SigninRefused as error:
            await self.audit_login("auth.login_refused", username, error.message)
            self.set_status(429)
            self.set_header("Retry-After", str(error.retry_after_s))
            message = f"Too many sign-in attempts; try again in {error.retry_after_s} s."
            self.render(
                "login.html", error=message, username=username, next_url=next_url, page_title="Sign in"
            )
            return
        try:
            if not username or not password or len(password) > PASSWORD_MAX:
                raise BadCredentials("wrong username or password")
            user_id = await self.ctx.accounts.check_password(username, password, admin=True)
        except BadCredentials:
            await self.audit_login(
                "auth.login_failed", username, "wrong username or password, or not an admin"
            )
            self.set_status(401)
            self.render(
                "login.html",
                error="Wrong username or password, or not an admin account.",
                username=username,
                next_url=next_url,
                page_title="Sign in",
            )
            return
        await guard.succeeded(username, address)
        token = await self.ctx.accounts.issue_token(user_id, admin=True)
        # A fresh XSRF token for the new sign-in, so a token seen before it is worth nothing after.
        self.clear_cookie("_xsrf", path=PREFIX)
        self.set_session_cookie(token)
        user = await self.ctx.accounts.user_for_token(token)
        self.admin_user = user
        await self.audit(
            "auth.login", f"user:{user_id}", after={"username": user.username if user else username}
        )
        self.redirect(next_url, status=303)

    async def audit_login(self, action: str, username: str, reason: str) -> None:
        await self.services.audit.record(
            action=action,
            target="auth",
            admin_user_id=None,
            admin_username=username,
            after={"reason": reason},
            ip=self.request.remote_ip or "",
        )


class LogoutHandler(AdminHandler):
    async def post(self) -> None:
        token = self.session_token()
        if token is not None:
            await self.ctx.accounts.logout(token)
        await self.audit("auth.logout", f"user:{self.admin_user.user_id if self.admin_user else 0}")
        self.clear_session_cookie()
        self.clear_cookie("_xsrf", path=PREFIX)
        self.redirect(LOGIN_URL, status=303)
