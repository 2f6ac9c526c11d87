"""Logs as one JSON object per line, for the service and its helper processes alike."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: machines read logs too."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_LOG_KEYS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Imported here: the drivers it needs cost run.py most of a second before the embedded
            # servers can be spawned (run.py sets logging up first).
            from persistence.faults import dependency_fault, describe_fault

            error = record.exc_info[1]
            if dependency_fault(error):
                # MongoDB or Redis away: a background loop retrying logs one line a round, not a
                # traceback a second; the cause is outside this code.
                entry["error"] = describe_fault(error)
            else:
                entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_STANDARD_LOG_KEYS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("pymongo").setLevel(logging.WARNING)
