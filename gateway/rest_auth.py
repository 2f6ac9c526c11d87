"""Accounts over REST: register, login, logout, me, and the admin login."""

import logging

import redis
import redis.asyncio

from gateway.errors import RateLimited
from gateway.http import JsonHandler
from persistence.accounts import PASSWORD_MAX, BadCredentials

log = logging.getLogger("gavel.gateway.auth")

# Failed logins per username before further attempts are refused for the rest of the window.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_S = 15 * 60


class LoginThrottle:
    """Counts failed logins per username in Redis, so password guessing is slow on every gateway.

    Fails open: if Redis is down, logins still work (the scrypt cost remains the brake).
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client

    @staticmethod
    def _key(username: str) -> str:
        return f"gavel:login-failures:{username.lower()[:64]}"

    async def check(self, username: str) -> None:
        try:
            failures = await self.client.get(self._key(username))
        except redis.RedisError:
            log.warning("login throttle unavailable (Redis)", exc_info=True)
            return
        if failures is not None and int(failures) >= LOGIN_FAILURES_ALLOWED:
            raise RateLimited("too many failed logins for this username; try again later")

    async def failed(self, username: str) -> None:
        key = self._key(username)
        try:
            # SET NX EX starts the window with the first failure; INCR keeps the TTL. One MULTI, so
            # a counter without expiry cannot be left behind (and no Redis 7 `EXPIRE NX` needed).
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, ex=LOGIN_FAILURE_WINDOW_S, nx=True)
                pipe.incr(key)
                await pipe.execute()
        except redis.RedisError:
            log.warning("login throttle unavailable (Redis)", exc_info=True)

    async def succeeded(self, username: str) -> None:
        try:
            await self.client.delete(self._key(username))
        except redis.RedisError:
            log.warning("login throttle unavailable (Redis)", exc_info=True)


class RegisterHandler(JsonHandler):
    async def post(self) -> None:
        body = self.fields(("username", "password"))
        # Lengths and characters are the accounts service's rules; here only the JSON types.
        username = body.text("username", min_length=0, max_length=1000)
        password = body.text("password", min_length=0, max_length=1000)
        user_id, token = await self.ctx.accounts.register(username, password)
        self.reply({"user_id": user_id, "token": token}, 201)


class LoginHandler(JsonHandler):
    admin = False

    async def post(self) -> None:
        body = self.fields(("username", "password"))
        username = body.text("username", min_length=1, max_length=64)
        password = body.text("password", min_length=1, max_length=PASSWORD_MAX)
        throttle = LoginThrottle(self.ctx.redis)
        await throttle.check(username)
        try:
            user_id, token = await self.ctx.accounts.login(username, password, admin=self.admin)
        except BadCredentials:
            await throttle.failed(username)
            raise
        await throttle.succeeded(username)
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
        profile = await self.ctx.accounts.profile(user.user_id)
        self.reply({"user_id": profile.user_id, "username": profile.username, "balance": profile.balance})


ROUTES = [
    (r"/api/v1/auth/register", RegisterHandler),
    (r"/api/v1/auth/login", LoginHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/me", MeHandler),
    (r"/api/v1/admin/login", AdminLoginHandler),
]
