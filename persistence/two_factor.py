"""TOTP second factor (RFC 6238, via pyotp) with single-use recovery codes; optional per account.

Stored on the user document:
- `totp_pending`: a secret being enrolled (shown once as a QR code), until confirmed with a code;
- `totp_secret`, `totp_enabled_at`: the confirmed secret;
- `totp_last_step`: the newest 30-second step a code was accepted for. A code is accepted only for
  a step after it (compare-and-set in MongoDB), so a code seen once, even moments ago and by
  another gateway, cannot be replayed;
- `recovery_codes`: SHA-256 hashes of 10 random codes (80 bits each, so no salt or slow hash is
  needed); each is removed by an atomic `$pull` when used.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import pyotp
import segno
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.errors import GavelError
from persistence.mongo import utc_now

ISSUER = "Gavel"
STEP_S = 30
# A code of the step before or after the current one is accepted too (clock drift, typing time).
DRIFT_STEPS = 1
RECOVERY_CODES = 10
RECOVERY_CODE_BYTES = 10  # base32: 16 characters, shown as four groups of four
CODE_MAX_LENGTH = 32


class TwoFactorRequired(GavelError):
    """The password was right; this account also needs its authenticator code."""

    code = "TWO_FACTOR_REQUIRED"


class TwoFactorInvalid(GavelError):
    code = "TWO_FACTOR_INVALID"


@dataclasses.dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg_data_uri: str


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    enabled: bool
    recovery_codes_left: int


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.strip().lower() if ch not in " -")[:CODE_MAX_LENGTH]


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


class TwoFactor:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.now = now

    async def status(self, user_id: int) -> Status:
        user = await self.db.users.find_one({"_id": user_id}, {"totp_secret": 1, "recovery_codes": 1})
        if user is None or not user.get("totp_secret"):
            return Status(False, 0)
        return Status(True, len(user.get("recovery_codes") or ()))

    async def enrolled(self, user_id: int) -> bool:
        return (await self.status(user_id)).enabled

    async def start(self, user_id: int, account_name: str) -> Enrolment:
        """A fresh secret to scan; nothing changes for sign-in until `confirm`."""
        secret = pyotp.random_base32()
        await self.db.users.update_one({"_id": user_id}, {"$set": {"totp_pending": secret}})
        return enrolment(secret, account_name)

    async def pending(self, user_id: int, account_name: str) -> Enrolment | None:
        user = await self.db.users.find_one({"_id": user_id}, {"totp_pending": 1})
        secret = user.get("totp_pending") if user is not None else None
        return enrolment(secret, account_name) if secret else None

    async def confirm(self, user_id: int, code: str) -> list[str]:
        """Turn the pending secret on once a code from it checks; returns the recovery codes (shown once)."""
        user = await self.db.users.find_one({"_id": user_id}, {"totp_pending": 1})
        secret = user.get("totp_pending") if user is not None else None
        if not secret:
            raise TwoFactorInvalid("start the set-up first")
        step = self._matching_step(secret, code)
        if step is None:
            raise TwoFactorInvalid("that code does not match; check the device's clock and try again")
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        result = await self.db.users.update_one(
            {"_id": user_id, "totp_pending": secret},
            {
                "$set": {
                    "totp_secret": secret,
                    "totp_enabled_at": utc_now(),
                    # The confirming code is spent: it cannot also sign in.
                    "totp_last_step": step,
                    "recovery_codes": [hash_recovery_code(c) for c in codes],
                },
                "$unset": {"totp_pending": ""},
            },
        )
        if result.modified_count != 1:
            raise TwoFactorInvalid("the set-up changed meanwhile; start again")
        return codes

    async def verify(self, user_id: int, code: str) -> bool:
        """A current, unused authenticator code or an unused recovery code (which is then spent)."""
        if not isinstance(code, str) or not code.strip() or len(code) > CODE_MAX_LENGTH:
            return False
        user = await self.db.users.find_one({"_id": user_id}, {"totp_secret": 1, "totp_last_step": 1})
        secret = user.get("totp_secret") if user is not None else None
        if not secret:
            return False
        step = self._matching_step(secret, code)
        if step is not None:
            # Compare-and-set: of two requests with the same code, one wins; older steps never.
            result = await self.db.users.update_one(
                {"_id": user_id, "totp_secret": secret, "totp_last_step": {"$lt": step}},
                {"$set": {"totp_last_step": step}},
            )
            return result.modified_count == 1
        hashed = hash_recovery_code(code)
        result = await self.db.users.update_one(
            {"_id": user_id, "recovery_codes": hashed}, {"$pull": {"recovery_codes": hashed}}
        )
        return result.modified_count == 1

    async def disable(self, user_id: int, code: str) -> None:
        """Turn the second factor off; needs a valid code, so a stolen session alone cannot."""
        if not await self.verify(user_id, code):
            raise TwoFactorInvalid("that code does not match")
        await self.db.users.update_one(
            {"_id": user_id},
            {
                "$unset": {
                    "totp_secret": "",
                    "totp_enabled_at": "",
                    "totp_last_step": "",
                    "recovery_codes": "",
                    "totp_pending": "",
                }
            },
        )

    def _matching_step(self, secret: str, code: str) -> int | None:
        digits = _normalise(code)
        if len(digits) != 6 or not digits.isdigit():
            return None
        totp = pyotp.TOTP(secret, interval=STEP_S)
        current = int(self.now()) // STEP_S
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if hmac.compare_digest(totp.at(step * STEP_S), digits):
                return step
        return None


def enrolment(secret: str, account_name: str) -> Enrolment:
    uri = pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=account_name, issuer_name=ISSUER)
    # A data: URI for an <img>: the page's CSP allows data: images, and no markup is inserted raw.
    svg = segno.make(uri, error="m").svg_data_uri(scale=4)
    return Enrolment(secret, uri, svg)
