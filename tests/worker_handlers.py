"""Test-only job handlers, loaded by worker subprocesses through WORKER_HANDLERS."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from learnops_worker.errors import PermanentFailure, RetryLater
from learnops_worker.handlers import JobContext


def _record(ctx: JobContext) -> int:
    """Note this execution in the side table; returns how many earlier ones there were."""
    with psycopg.connect(ctx.settings.database_url.reveal(), autocommit=True) as c:
        row = c.execute(
            "WITH earlier AS (SELECT count(*) AS n FROM worker_test_executions WHERE job_id = %s) "
            "INSERT INTO worker_test_executions (job_id, attempt, pid) "
            "SELECT %s, %s, %s FROM earlier RETURNING (SELECT n FROM earlier)",
            (ctx.job.id, ctx.job.id, ctx.job.attempt, os.getpid()),
        ).fetchone()
    assert row is not None
    return int(row[0])


def record(ctx: JobContext) -> Any:
    """Record the execution, then sleep `payload.sleep` seconds."""
    _record(ctx)
    time.sleep(float(ctx.payload.get("sleep", 0)))
    return {"pid": os.getpid(), "attempt": ctx.job.attempt}


def flaky(ctx: JobContext) -> Any:
    """Raise a plain exception for the first `payload.fail_times` executions."""
    earlier = _record(ctx)
    if earlier < int(ctx.payload["fail_times"]):
        raise RuntimeError(f"flaky failure #{earlier + 1}")
    return {"ok": True}


def permanent(ctx: JobContext) -> Any:
    _record(ctx)
    raise PermanentFailure("this submission can never be graded")


def later(ctx: JobContext) -> Any:
    """Ask for a retry after `payload.delay` seconds once, then succeed."""
    if _record(ctx) == 0:
        raise RetryLater("provider busy", delay_seconds=float(ctx.payload["delay"]))
    return {"ok": True}


not_callable = 42
