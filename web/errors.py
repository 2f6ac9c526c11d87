"""The one table from error codes to HTTP statuses, and the errors the HTTP layer itself raises.

Every error answer is `{"error": {"code", "message"}}`; clients switch on `code`, which is stable.

INSUFFICIENT_BALANCE is 402 Payment Required rather than 409: the request is fine and the
resource is not in conflict; the caller must top up first, and a distinct status lets a client
route straight to its top-up flow.
"""

import logging
from typing import Any

from engine.book.errors import GavelError
from persistence.faults import dependency_fault as dependency_fault  # re-exported: one definition
from persistence.faults import describe_fault as describe_fault

log = logging.getLogger("gavel.gateway")

STATUS_BY_CODE: dict[str, int] = {
    # 400: the request itself is wrong
    "BAD_REQUEST": 400,
    "VALIDATION": 400,
    "INVALID_JSON": 400,
    "INVALID_DISPLAY_NAME": 400,
    "REASON_REQUIRED": 400,  # an admin's live control without a reason
    "BAD_TIME": 400,  # an extension's end not later / not in the future
    # 401 / 402 / 403
    "UNAUTHORIZED": 401,
    "BAD_CREDENTIALS": 401,
    "TWO_FACTOR_REQUIRED": 401,
    "TWO_FACTOR_INVALID": 401,
    "INSUFFICIENT_BALANCE": 402,
    "FORBIDDEN": 403,
    "BLOCKED": 403,
    # 404 / 405 / 413
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "PAYLOAD_TOO_LARGE": 413,
    # 409: fine request, but the current state refuses it
    "CONFLICT": 409,
    "USERNAME_TAKEN": 409,
    "DEPOSIT_EXISTS": 409,
    "CATALOGUE_NO_EXISTS": 409,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "ALREADY_STARTED": 409,
    "SESSION_ENDED": 409,
    "LOT_CLOSED": 409,
    "ILLEGAL_STATE": 409,
    "NO_DEPOSIT_REQUIRED": 409,
    "BALANCE_LIMIT": 409,
    "LAST_OWNER": 409,  # the staff page: the business keeps at least one owner (docs/admin.md "Roles")
    "NON_PAYER": 409,  # unblocking a non-payer: clear the flag instead
    # engine bid refusals (websocket answers carry the code; listed for any REST use)
    "NOT_OPEN": 409,
    "CLOSED": 409,
    "NO_DEPOSIT": 409,
    "TOO_LOW": 409,
    "OFF_INCREMENT": 409,
    "SELF_OUTBID": 409,
    "PAUSED": 409,
    # course shop (docs/shop.md)
    "CART_FULL": 409,
    "COURSE_NOT_ON_SALE": 409,
    "INVALID_POLICY": 400,
    "NOT_IN_CART": 409,
    "CART_ITEM_UNAVAILABLE": 409,
    "CHECKOUT_MISSING": 404,
    "COUPON_NOT_OFFERED": 409,
    "COUPON_UNAVAILABLE": 409,
    "PRICE_CHANGED": 409,
    "CHECKOUT_ALREADY_ORDERED": 409,
    "PAYMENT_REFUSED": 400,
    "ORDER_NOT_CANCELLABLE": 409,
    "ORDER_NOT_REFUNDABLE": 409,
    "REFUND_NOT_REQUESTED": 409,
    # learning (docs/shop.md "Learning")
    "ENROLMENT_REQUIRED": 403,
    "ENROLMENT_EXPIRED": 403,
    "CONTENT_LINK_EXPIRED": 403,
    "CONTENT_LINK_INVALID": 403,
    "REVIEW_EXISTS": 409,
    # the degree path (docs/degree.md)
    "INVALID_GRADE": 400,
    "ENROLMENT_STATE": 409,
    "REGISTRATION_REQUIRED": 409,
    "ALREADY_REGISTERED": 409,
    "MODULE_ALREADY_OPEN": 409,
    "MODULE_NOT_OPEN": 409,
    "ENROLMENT_NOT_ACTIVE": 409,
    "PREVIOUS_MODULE_NOT_DONE": 409,
    "DEGREE_ALREADY_BOUGHT": 409,
    "DEGREE_NOT_ON_SALE": 409,
    "DEGREE_STARTED": 409,
    "DEGREE_REQUIRED": 403,
    "HOMEWORK_DISABLED": 409,
    "HOMEWORK_PASSED": 409,
    "ALREADY_GRADED": 409,
    "NOT_YOUR_STUDENT": 403,
    "MENTOR_REQUIRED": 403,
    "MENTOR_INACTIVE": 409,
    "FILE_REJECTED": 400,
    "FILE_TOO_LARGE": 413,
    "TOO_MANY_FILES": 400,
    # the community (docs/community.md)
    "COMMUNITY_BLOCKED": 403,
    "BAD_CURSOR": 400,
    "ALREADY_REPORTED": 409,
    "NOT_YOUR_CONTENT": 403,
    "ARTICLE_TITLE_EXISTS": 409,
    # auction orders and settlement (docs/settlement.md)
    "ORDER_NOT_PAYABLE": 409,
    "COUPON_NOT_USABLE": 409,
    "COUPON_NOT_CLAIMABLE": 409,
    "COUPON_SOLD_OUT": 409,
    "COUPON_ALREADY_CLAIMED": 409,
    "ADDRESS_REQUIRED": 400,
    "ADDRESS_LIMIT": 409,
    "PAYMENT_UNAVAILABLE": 503,
    # 429 / 5xx
    "TOO_MANY_CONNECTIONS": 429,
    "RATE_LIMITED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}

STATUS_FOR_UNKNOWN_CODE = 400


def status_for(code: str) -> int:
    """The HTTP status of an error code; `*_EXISTS` is a 409 even when not listed."""
    status = STATUS_BY_CODE.get(code)
    if status is not None:
        return status
    if code.endswith("_EXISTS"):
        return 409
    log.warning("error code %s has no HTTP status in web/errors.py; answering %d", code, 400)
    return STATUS_FOR_UNKNOWN_CODE


# Statuses tornado raises by itself (HTTPError), named with our codes.
CODE_BY_STATUS: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


def code_for_status(status: int) -> str:
    if status in CODE_BY_STATUS:
        return CODE_BY_STATUS[status]
    return "INTERNAL" if status >= 500 else "BAD_REQUEST"


# -- dependency faults (persistence/faults.py says what they are) -------------------------------------
UNAVAILABLE_MESSAGE = "a backing service is unavailable; try again"
# Seconds a client is told to wait (Retry-After) after a 503 UNAVAILABLE: about one dependency
# timeout, long enough not to hammer a recovering MongoDB, short enough for a person to retry.
RETRY_AFTER_SECONDS = 3


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ValidationFailed(GavelError):
    code = "VALIDATION"


class InvalidJson(GavelError):
    code = "INVALID_JSON"


class Unauthorized(GavelError):
    code = "UNAUTHORIZED"


class Forbidden(GavelError):
    code = "FORBIDDEN"


class PayloadTooLarge(GavelError):
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(GavelError):
    code = "RATE_LIMITED"


class Unavailable(GavelError):
    code = "UNAVAILABLE"
