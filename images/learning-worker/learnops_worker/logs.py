"""JSON log lines with a stable `event` key; job lines carry job_id and kind, never payloads."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Fields a caller may pass in `extra=`; everything else on the record is logging noise.
_FIELDS = (
    "event",
    "job_id",
    "kind",
    "attempt",
    "worker_id",
    "error_type",
    "error",
    "delay_seconds",
    "count",
    "port",
    "cap",
    "concurrency",
    "seconds",
    "reason",
    "status",
    "ids",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        line.setdefault("event", "worker.log")
        if record.exc_info and record.exc_info[0] is not None:
            # Type only: exception text can quote payload data or provider answers.
            line["exc_type"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
