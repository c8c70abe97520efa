"""JSON-lines logging on stderr with a stable `event` key; every line is masked."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .masking import mask, mask_value

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One compact JSON object per line: ts, level, event, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "dump.log"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # masked before serializing (JSON escapes would hide a secret from the masker), and
        # again after, for any spelling only the serializer produces
        safe = mask_value(json.loads(json.dumps(entry, default=str)))
        return mask(json.dumps(safe, separators=(",", ":")))


def configure(level: int = logging.INFO) -> None:
    """Route every logger to stderr as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def event(logger: logging.Logger, name: str, message: str, **fields: Any) -> None:
    """Log `message` at INFO with a stable `event` name and extra fields."""
    logger.info(message, extra={"event": name, **fields})
