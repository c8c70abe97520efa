"""The summary of a `restore` or `drill` run: the termination message the operator reads.

The contract keys are those of a backup's summary (report.py), so one parser reads all three;
a restore or drill adds its own keys (policy, parallelJobs, tablesChecked, checksPassed, ...).
Bounded to the kubelet's 4 KiB: lists and the message are cut to fit, never the JSON.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import RunnerError
from .masking import mask
from .report import TERMINATION_LIMIT, rfc3339

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    started: datetime
    kind: str
    artifact: str | None = None
    sha256: Any = None
    size: Any = None
    error: RunnerError | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    def fail(self, error: RunnerError) -> None:
        if self.error is None:  # the first failure is the cause
            self.error = error

    def data(self, finished: datetime) -> dict[str, Any]:
        return {
            "status": "ok" if self.error is None else "failed",
            "exitCode": self.exit_code,
            "reason": "Ok" if self.error is None else self.error.reason,
            "message": "" if self.error is None else mask(self.error.message),
            "kind": self.kind,
            "artifact": self.artifact,
            "sizeBytes": self.size if isinstance(self.size, int) else None,
            "sha256": self.sha256 if isinstance(self.sha256, str) else None,
            "startedAt": rfc3339(self.started),
            "finishedAt": rfc3339(finished),
            "durationSeconds": round((finished - self.started).total_seconds(), 3),
            "runnerVersion": __version__,
            **self.extra,
        }


def bounded_message(data: dict[str, Any]) -> str:
    """Compact JSON within TERMINATION_LIMIT bytes: shorten lists, then the message."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for key in ("mismatches", "checksPassed"):
        while len(text.encode()) > TERMINATION_LIMIT and data.get(key):
            data[key] = data[key][:-1]
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    message = str(data.get("message") or "")
    while len(text.encode()) > TERMINATION_LIMIT and message:
        excess = len(text.encode()) - TERMINATION_LIMIT
        message = message[: max(0, len(message) - excess - 3)]
        data["message"] = message + "..."
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text


def write_summary(path: Path, summary: RunSummary) -> int:
    """Termination message + one log line; returns the exit code."""
    data = summary.data(datetime.now(UTC))
    text = bounded_message(dict(data))
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        log.warning(
            "cannot write the termination log",
            extra={"event": f"{summary.kind}.termination_log", "error": exc.strerror},
        )
    level = logging.INFO if summary.error is None else logging.ERROR
    log.log(
        level,
        f"{summary.kind} finished",
        extra={"event": f"{summary.kind}.finished", "summary": data},
    )
    return summary.exit_code
