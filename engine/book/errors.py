"""One error family for the whole service: every error carries a stable, machine-readable code."""

from enum import StrEnum


class RejectCode(StrEnum):
    """Why the book refused a bid. Stable: clients switch on these strings."""

    NOT_OPEN = "NOT_OPEN"
    CLOSED = "CLOSED"
    NO_DEPOSIT = "NO_DEPOSIT"
    TOO_LOW = "TOO_LOW"
    OFF_INCREMENT = "OFF_INCREMENT"
    SELF_OUTBID = "SELF_OUTBID"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    BLOCKED = "BLOCKED"
    PAUSED = "PAUSED"  # an admin paused the lot (or its session); bids wait for the resume


class GavelError(Exception):
    """Base of every domain error; `code` is stable and mapped to HTTP/websocket replies in one place."""

    code: str = "ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class IllegalTransition(GavelError):
    code = "ILLEGAL_STATE"


class NotFound(GavelError):
    code = "NOT_FOUND"


class InvalidCommand(GavelError):
    code = "BAD_REQUEST"


class InvalidInput(GavelError):
    """Input that is well formed but not acceptable (shared by accounts and the course shop)."""

    code = "VALIDATION"


class RefReused(GavelError):
    """An idempotency key (a ledger `ref`, an order's key) came back with different content."""

    code = "IDEMPOTENCY_KEY_REUSED"


class SessionEnded(GavelError):
    """The session is over: nothing more can be done in it (bids, deposits, catalogue changes)."""

    code = "SESSION_ENDED"
