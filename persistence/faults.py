"""What a dependency fault is: MongoDB or Redis down, stalled or overloaded, as opposed to a
refusal or a bug. The one definition: the gateway answers these 503 UNAVAILABLE
(web/errors.py), and logs show them as one line, not a traceback (persistence/logs.py)."""

from __future__ import annotations

import redis
from pymongo.errors import ConnectionFailure, PyMongoError

__all__ = ["dependency_fault", "describe_fault"]


def dependency_fault(error: BaseException | None) -> bool:
    """True when `error` says MongoDB or Redis did not answer (in time).

    PyMongo: every connection or server-selection failure (`ConnectionFailure`: AutoReconnect,
    NetworkTimeout, ServerSelectionTimeoutError, a pool's WaitQueueTimeoutError), and any error
    raised because the operation's time limit (timeoutMS, `pymongo.timeout`) ran out
    (`error.timeout`, e.g. ExecutionTimeout). Redis: connection errors and timeouts.
    """
    if isinstance(error, ConnectionFailure | redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(error, PyMongoError) and error.timeout


def describe_fault(error: BaseException | None) -> str:
    """One short log line's worth of a dependency fault (its class and the driver's message)."""
    return f"{type(error).__name__}: {str(error)[:200]}"
