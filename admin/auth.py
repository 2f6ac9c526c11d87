"""Sign in and sign out of the admin UI, with the optional TOTP second factor.

Sign-in with a second factor is two steps: the password page, then the code page. Between them a
signed cookie (`gavel_admin_2fa`, 5 minutes, HttpOnly, SameSite=Strict) names the account whose
password was right; the code step is throttled by the same guard as the password (web/signin.py).
"""

from __future__ import annotations

import orjson
import tornado.web

from admin.base import LOGIN_URL, PREFIX, AdminHandler, safe_next
from persistence.accounts import PASSWORD_MAX, BadCredentials
from persistence.signins import SigninHistory
from persistence.two_factor import CODE_MAX_LENGTH, TwoFactor
from web.signin import SigninRefused, signin_guard

PENDING_COOKIE = "gavel_admin_2fa"
PENDING_MAX_AGE_DAYS = 5 / (24 * 60)  # five minutes to type the code
CODE_URL = LOGIN_URL + "/code"


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
            enrolled = await TwoFactor(self.ctx.db).enrolled(user_id)
        except Exception as error:
            await guard.failed(username, address)
            if not isinstance(error, BadCredentials):
                raise
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
        if enrolled:
            # The password step counts as a failed attempt: only the code completes the sign-in.
            await guard.failed(username, address)
            pending = orjson.dumps({"u": user_id, "n": username, "next": next_url})
            self.set_private_cookie(PENDING_COOKIE, pending, path=LOGIN_URL)
            self.redirect(CODE_URL, status=303)
            return
        await guard.succeeded(username, address)
        await self.complete_sign_in(user_id, username, next_url)

    async def complete_sign_in(self, user_id: int, username: str, next_url: str) -> None:
        token = await self.ctx.accounts.issue_token(user_id, admin=True)
        # A fresh XSRF token for the new sign-in, so a token seen before it is worth nothing after.
        self.clear_cookie("_xsrf", path=PREFIX)
        self.set_session_cookie(token)
        user = await self.ctx.accounts.user_for_token(token)
        self.admin_user = user
        await self.actions.record(
            self.actor() if user else None,
            "auth.login",
            f"user:{user_id}",
            after={"username": user.username if user else username},
            username=username,
            ip=self.request.remote_ip or "",
        )
        await self.record_signin(username, ok=True, user_id=user_id)
        self.redirect(next_url, status=303)

    async def audit_login(self, action: str, username: str, reason: str) -> None:
        await self.actions.record(
            None, action, "auth", after={"reason": reason}, username=username, ip=self.request.remote_ip or ""
        )
        await self.record_signin(username, ok=False, detail=reason)

    async def record_signin(
        self, username: str, *, ok: bool, user_id: int | None = None, detail: str = ""
    ) -> None:
        """The attempt in the account's sign-in history (its user page), surface "admin"."""
        await SigninHistory(self.ctx.db).record(
            username=username,
            surface="admin",
            ok=ok,
            ip=self.request.remote_ip or "",
            user_agent=self.request.headers.get("User-Agent", ""),
            user_id=user_id,
            detail=detail,
        )


class CodeHandler(LoginHandler):
    """The second step: the authenticator (or a recovery) code for the account in the pending cookie."""

    def pending(self) -> tuple[int, str, str] | None:
        raw = self.get_cookie(PENDING_COOKIE)
        if not raw:
            return None
        value = tornado.web.decode_signed_value(
            self.services.cookie_secret, PENDING_COOKIE, raw, max_age_days=PENDING_MAX_AGE_DAYS
        )
        if not value:
            return None
        data = orjson.loads(value)
        return int(data["u"]), str(data["n"]), safe_next(data["next"])

    def render_code(self, error: str | None) -> None:
        self.render("login_code.html", error=error, page_title="Two-factor sign-in")

    def get(self) -> None:
        if self.pending() is None:
            self.redirect(LOGIN_URL, status=302)
            return
        self.render_code(None)

    async def post(self) -> None:
        pending = self.pending()
        if pending is None:
            self.redirect(LOGIN_URL, status=303)
            return
        user_id, username, next_url = pending
        code = self.form("code")[:CODE_MAX_LENGTH]
        address = self.request.remote_ip or ""
        guard = signin_guard(self.ctx)
        try:
            await guard.attempt(username, address)
        except SigninRefused as error:
            await self.audit_login("auth.login_refused", username, error.message)
            self.set_status(429)
            self.set_header("Retry-After", str(error.retry_after_s))
            self.render_code(f"Too many sign-in attempts; try again in {error.retry_after_s} s.")
            return
        try:
            right = await TwoFactor(self.ctx.db).verify(user_id, code)
        except Exception:
            await guard.failed(username, address)
            raise
        if not right:
            await guard.failed(username, address)
            await self.audit_login("auth.login_failed", username, "wrong or reused two-factor code")
            self.set_status(401)
            self.render_code("That code is wrong or was already used.")
            return
        await guard.succeeded(username, address)
        self.clear_cookie(PENDING_COOKIE, path=LOGIN_URL)
        await self.complete_sign_in(user_id, username, next_url)


class LogoutHandler(AdminHandler):
    area = "account"

    async def post(self) -> None:
        token = self.session_token()
        if token is not None:
            await self.ctx.accounts.logout(token)
        await self.actions.record(self.actor(), "auth.logout", f"user:{self.actor().user_id}")
        self.clear_session_cookie()
        self.clear_cookie("_xsrf", path=PREFIX)
        self.redirect(LOGIN_URL, status=303)
