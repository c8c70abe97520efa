"""Test-only job handlers, loaded by worker subprocesses through WORKER_HANDLERS."""

from __future__ import annotations

import os
import threading
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


# -- hostile handlers: each misbehaves in one way a real handler might --------------------
def poison(ctx: JobContext) -> Any:
    """A result jsonb refuses (Infinity), e.g. from a sum that overflowed."""
    _record(ctx)
    return {"score": float("inf")}


def nul_error(ctx: JobContext) -> Any:
    """An error message with a NUL byte, which no text column takes."""
    _record(ctx)
    raise RuntimeError("bad byte \x00 in the message")


def huge_delay(ctx: JobContext) -> Any:
    """A retry delay far beyond any interval."""
    _record(ctx)
    raise RetryLater("come back much later", delay_seconds=1e300)


def surrogate(ctx: JobContext) -> Any:
    """An exception message with a lone surrogate, which UTF-8 cannot encode."""
    _record(ctx)
    raise ValueError("broken \udc80 text")


def sysexit(ctx: JobContext) -> Any:
    """A handler that calls sys.exit()."""
    _record(ctx)
    raise SystemExit(3)


def forever(ctx: JobContext) -> Any:
    """Never returns and ignores every event it is given."""
    _record(ctx)
    threading.Event().wait()


def until_cancelled(ctx: JobContext) -> Any:
    """Runs until told it is cancelled (or 60 s), then returns a result that must be dropped."""
    _record(ctx)
    seen = ctx.cancelled.wait(60)
    with psycopg.connect(ctx.settings.database_url.reveal(), autocommit=True) as c:
        c.execute(
            "INSERT INTO worker_test_executions (job_id, attempt, pid) VALUES (%s, %s, %s)",
            (ctx.job.id, -1 if seen else -2, os.getpid()),
        )
    return {"finished": True}


def chaos(ctx: JobContext) -> Any:
    """`payload.mode`: "good" succeeds (the completion trigger counts it), "poison" returns
    NaN, "runaway" never returns."""
    mode = ctx.payload.get("mode")
    if mode == "poison":
        return {"value": float("nan")}
    if mode == "runaway":
        threading.Event().wait()
    time.sleep(float(ctx.payload.get("sleep", 0)))
    return {"attempt": ctx.job.attempt}
