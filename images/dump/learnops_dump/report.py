"""The run's summary: the manifest (storage) and the termination message (Kubernetes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .errors import RunnerError
from .masking import mask

TERMINATION_LIMIT = 4096
# The keys of the termination message, fixed by the contract with the operator.
CONTRACT_KEYS = (
    "status",
    "exitCode",
    "reason",
    "message",
    "artifact",
    "sizeBytes",
    "sha256",
    "startedAt",
    "finishedAt",
    "durationSeconds",
    "database",
    "host",
    "serverVersion",
    "clientVersion",
    "format",
    "compression",
    "runnerVersion",
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Report:
    """Filled in as the run proceeds; only non-sensitive metadata."""

    started: datetime
    database: str
    host: str
    format: str
    compression: str
    credential_source: str
    finished: datetime | None = None
    error: RunnerError | None = None
    artifact: str | None = None
    size: int | None = None
    sha256: str | None = None
    server_version: str | None = None
    client_version: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    def fail(self, error: RunnerError) -> None:
        if self.error is None:  # the first failure is the cause; later ones are fallout
            self.error = error
            self.artifact = self.size = self.sha256 = None

    def summary(self) -> dict[str, Any]:
        """The contract's keys (termination message and the manifest's top level)."""
        finished = self.finished or datetime.now(UTC)
        return {
            "status": "ok" if self.ok else "failed",
            "exitCode": self.exit_code,
            "reason": "Ok" if self.error is None else self.error.reason,
            "message": "" if self.error is None else mask(self.error.message),
            "artifact": self.artifact,
            "sizeBytes": self.size,
            "sha256": self.sha256,
            "startedAt": rfc3339(self.started),
            "finishedAt": rfc3339(finished),
            "durationSeconds": round((finished - self.started).total_seconds(), 3),
            "database": self.database,
            "host": self.host,
            "serverVersion": self.server_version,
            "clientVersion": self.client_version,
            "format": self.format,
            "compression": self.compression,
            "runnerVersion": __version__,
        }

    def manifest(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "credentialSource": self.credential_source,
            "stages": self.stages,
            "verification": self.verification,
        }


def termination_message(summary: dict[str, Any]) -> str:
    """Compact JSON of at most TERMINATION_LIMIT bytes; the message is cut to fit."""
    data = {key: summary[key] for key in CONTRACT_KEYS}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    message = str(data["message"])
    while len(text.encode()) > TERMINATION_LIMIT and message:
        excess = len(text.encode()) - TERMINATION_LIMIT
        message = message[: max(0, len(message) - excess - 3)]
        data["message"] = message + "..."
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text
