"""Values that cross the database boundary."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JsonValue = Any
"""Anything json.dumps accepts; jsonb columns come back as these."""


class JobStatus(enum.Enum):
    """The `status` column; `running` always carries a lease token and expiry."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """A claimed job: what a handler sees, plus the lease token that fences every later write."""

    id: int
    kind: str
    payload: JsonValue
    priority: int
    attempt: int
    lease_token: uuid.UUID
    created_at: datetime

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        """Build from the `claim` query's RETURNING columns."""
        id_, kind, payload, priority, attempts, token, created_at = row
        return cls(int(id_), str(kind), payload, int(priority), int(attempts), token, created_at)
