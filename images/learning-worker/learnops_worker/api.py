"""The platform's side of the queue: enqueue, cancel and status on the caller's connection.

    from learnops_worker import api
    job_id = api.enqueue(conn, "feedback", payload, dedupe_key=f"submission:{sid}")
    api.status(conn, job_id).status      # JobStatus.QUEUED ...
    api.cancel(conn, job_id)

`conn` is any psycopg 3 connection; each call is one short statement (autocommit, or inside
the caller's transaction). Bad input raises InvalidKind / InvalidPayload before anything is
sent; the database enforces the same rules for jobs inserted with plain SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from . import jsoncheck
from .errors import InvalidJob, InvalidKind, InvalidPayload, JobNotFound
from .models import KIND_PATTERN, MAX_PAYLOAD_BYTES, JobStatus, JsonValue
from .queries import Q

MAX_DEDUPE_KEY_LENGTH = 200
"""Longest dedupe key (a CHECK constraint too)."""
DEDUPE_RETRIES = 3
"""A job found by its key may be pruned before it is read; look again this often."""
PRIORITY_RANGE = (-(2**31), 2**31 - 1)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class JobInfo:
    """What `status` reports about one job."""

    id: int
    kind: str
    status: JobStatus
    attempts: int
    priority: int
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: JsonValue
    cancel_requested: bool
    dedupe_key: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> JobInfo:
        (id_, kind, status, attempts, priority, run_after, created, started, finished,
         last_error, result, cancel_requested, dedupe_key) = row  # fmt: skip
        return cls(int(id_), kind, JobStatus(status), int(attempts), int(priority), run_after,
                   created, started, finished, last_error, result, bool(cancel_requested),
                   dedupe_key)  # fmt: skip

    def as_json(self) -> dict[str, JsonValue]:
        times = ("run_after", "created_at", "started_at", "finished_at")
        out: dict[str, JsonValue] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["status"] = self.status.value
        for k in times:
            out[k] = None if out[k] is None else out[k].isoformat()
        return out


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise InvalidKind(
            f"invalid job kind {kind!r}: kinds are 1-64 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter"
        )
    return kind


def enqueue(
    conn: Conn,
    kind: str,
    payload: JsonValue,
    *,
    dedupe_key: str | None = None,
    priority: int = 0,
    run_after: float | timedelta | datetime | None = None,
) -> int:
    """Add a job and return its id; with `dedupe_key`, the id of the job already there.

    `run_after`: seconds or a timedelta from now (by the database's clock), or an aware
    datetime. A payload over MAX_PAYLOAD_BYTES / MAX_JSON_DEPTH is refused.
    """
    check_kind(kind)
    try:
        text = jsoncheck.dumps(payload, max_bytes=MAX_PAYLOAD_BYTES)
    except jsoncheck.Unstorable as exc:
        raise InvalidPayload(f"payload refused: {exc}") from None
    if dedupe_key is not None and (
        not isinstance(dedupe_key, str)
        or not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY_LENGTH
        or "\x00" in dedupe_key
    ):
        raise InvalidJob(f"dedupe_key must be 1-{MAX_DEDUPE_KEY_LENGTH} characters without NUL")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidJob("priority must be an integer")
    if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise InvalidJob(f"priority must be within {PRIORITY_RANGE}")
    run_at, delay = _when(run_after)
    params = {
        "kind": kind,
        "payload": text,
        "priority": priority,
        "run_at": run_at,
        "delay_seconds": delay,
        "dedupe_key": dedupe_key,
    }
    for _ in range(DEDUPE_RETRIES):
        row = conn.execute(Q.enqueue, params).fetchone()
        if row is not None:
            return int(row[0])
        # The key is taken; the conflicting insert has committed, so a new statement sees it.
        row = conn.execute(Q.enqueue_existing, params).fetchone()
        if row is not None:
            return int(row[0])
    raise InvalidJob(f"dedupe_key {dedupe_key!r} keeps conflicting with a job that vanishes")


def _when(run_after: float | timedelta | datetime | None) -> tuple[datetime | None, float]:
    if run_after is None:
        return None, 0.0
    if isinstance(run_after, datetime):
        if run_after.tzinfo is None:
            raise InvalidJob("run_after must be timezone-aware (or seconds from now)")
        return run_after, 0.0
    seconds = run_after.total_seconds() if isinstance(run_after, timedelta) else run_after
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidJob("run_after must be seconds, a timedelta or a datetime")
    if not math.isfinite(seconds) or abs(seconds) > 10 * 365 * 86400:
        raise InvalidJob("run_after must be within ten years of now")
    return None, float(seconds)


def cancel(conn: Conn, job_id: int) -> JobStatus:
    """Cancel a job: a queued one at once (`cancelled`); a running one is marked, its handler
    sees `ctx.cancelled` and its outcome is discarded (`running` is returned). A finished job
    is left as it is; its status is returned. JobNotFound if there is no such job."""
    row = conn.execute(Q.cancel, {"id": job_id}).fetchone()
    if row is not None:
        return JobStatus(row[0])
    return status(conn, job_id).status


def status(conn: Conn, job_id: int) -> JobInfo:
    """Everything about one job; JobNotFound if there is none (it may have been pruned)."""
    row = conn.execute(Q.job_status, {"id": job_id}).fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return JobInfo.from_row(row)
