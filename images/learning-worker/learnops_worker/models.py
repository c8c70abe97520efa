"""Values that cross the database boundary, and the limits the schema enforces on them."""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JsonValue = Any
"""Anything json.dumps accepts; jsonb columns come back as these."""

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")
"""Job kinds: lower case, no spaces; the same pattern is a CHECK constraint (schema.sql)."""
MAX_PAYLOAD_BYTES = 262_144
"""Largest payload (its JSON text, UTF-8) that enqueue and the payload CHECK accept."""
MAX_RESULT_BYTES = 1_048_576
"""Largest handler result the worker writes; a larger one fails its job."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of containers in a payload or a result (`{"a": [1]}` is 2)."""


class JobStatus(enum.Enum):
    """The `status` column; `running` always carries a lease token and expiry."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Job:
    """A claimed job: what a handler sees, plus the lease token that fences every later write.

    The payload stays text until the handler's thread decodes it, so a payload Python
    cannot decode fails only its own job.
    """

    id: int
    kind: str
    payload_text: str
    priority: int
    attempt: int
    lease_token: uuid.UUID
    created_at: datetime

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        """Build from the `claim` query's RETURNING columns."""
        id_, kind, payload, priority, attempts, token, created_at = row
        return cls(
            int(id_), str(kind), str(payload), int(priority), int(attempts), token, created_at
        )
