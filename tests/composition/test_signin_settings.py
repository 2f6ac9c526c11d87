"""The sign-in settings reach the throttle, and COOKIE_SECRET reaches the admin cookies (the
bootstrap, composition/bootstrap.py)."""

from __future__ import annotations

import pytest

from admin.base import AdminServices
from composition.bootstrap import cookie_secret, signin_policy
from composition.settings import SettingsError, parse_settings
from web.context import derived_cookie_secret
from web.signin import SigninPolicy


def test_sign_in_settings_reach_the_policy() -> None:
    config = parse_settings(
        [],
        env={
            "LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "5",
            "LOGIN_FAILURES_PER_ADDRESS": "50",
            "LOGIN_FAILURES_PER_ACCOUNT": "40",
            "LOGIN_BACKOFF_MAX": "2m",
            "REGISTRATIONS_PER_ADDRESS": "3",
        },
    )
    policy = signin_policy(config)
    assert policy == SigninPolicy(
        failures_per_account_address=5,
        failures_per_address=50,
        failures_per_account=40,
        backoff_max_ms=120_000,
        registrations_per_address=3,
    )
    assert policy.account_backoff_max_ms == 60_000  # the account-wide back-off stays short
    assert signin_policy(parse_settings([], env={})) == SigninPolicy()


def test_a_bad_sign_in_setting_is_one_line() -> None:
    with pytest.raises(SettingsError, match=r"^LOGIN_BACKOFF_MAX: "):
        parse_settings([], env={"LOGIN_BACKOFF_MAX": "15"})
    with pytest.raises(SettingsError, match=r"^REGISTRATIONS_PER_ADDRESS: "):
        parse_settings([], env={"REGISTRATIONS_PER_ADDRESS": "0"})


class _Ctx:
    def __init__(self, secret: bytes) -> None:
        self.pseudonym_secret = b"pseudonym"
        self.cookie_secret = secret or derived_cookie_secret(self.pseudonym_secret)
        self.db: dict[str, None] = {"audit": None}


def test_cookie_secret_signs_the_admin_cookies() -> None:
    secret = "s" * 40
    key = cookie_secret(parse_settings([], env={"COOKIE_SECRET": secret}))
    assert key == secret.encode()
    assert cookie_secret(parse_settings([], env={})) == b""  # unset: the context derives one
    services = AdminServices(_Ctx(key))  # type: ignore[arg-type]
    assert services.cookie_secret == secret.encode()
