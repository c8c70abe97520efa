"""Handler errors: backoff retries, the failed state, retry-failed, explicit outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, enqueue, run_cli, scalar


def status(db: Conn, job_id: int) -> str:
    return str(scalar(db, "SELECT status FROM learnops_jobs WHERE id = %s", job_id))


def test_exceptions_retry_with_backoff_then_fail_then_retry_failed_requeues(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "flaky", [{"fail_times": 4}])
    env = {
        "WORKER_MAX_ATTEMPTS": "3",
        "WORKER_BACKOFF_BASE_SECONDS": "0.2",
        "WORKER_BACKOFF_MAX_SECONDS": "0.3",
        "WORKER_POLL_SECONDS": "0.05",
    }
    workers(**env)
    wait_for(lambda: status(worker_db, job) == "failed", 20, "the job to fail", every=0.05)
    assert scalar(worker_db, "SELECT attempts FROM learnops_jobs WHERE id = %s", job) == 3
    history = scalar(worker_db, "SELECT errors FROM learnops_jobs WHERE id = %s", job)
    assert [e["attempt"] for e in history] == [1, 2, 3]
    assert all("RuntimeError: flaky failure" in e["error"] for e in history)
    # capped exponential with +-10 % jitter: ~0.2 s, then the 0.3 s cap; none after the last
    delays = [e.get("retry_in_seconds") for e in history]
    assert 0.18 <= delays[0] <= 0.22
    assert 0.27 <= delays[1] <= 0.3
    assert delays[2] is None
    gaps = scalar(
        worker_db,
        "SELECT array_agg(extract(epoch FROM at - lag) ORDER BY at) FROM ("
        " SELECT at, lag(at) OVER (ORDER BY at) FROM worker_test_executions WHERE job_id = %s"
        ") g WHERE lag IS NOT NULL",
        job,
    )
    assert gaps[0] >= 0.17
    assert gaps[1] >= 0.25
    last_error = scalar(worker_db, "SELECT last_error FROM learnops_jobs WHERE id = %s", job)
    assert last_error == "RuntimeError: flaky failure #3"

    out = run_cli(worker_db, "retry-failed", "--kind", "flaky")
    assert out.returncode == 0
    assert out.stdout.strip() == "1"
    wait_for(
        lambda: status(worker_db, job) == "succeeded", 20, "the requeued job to succeed", every=0.05
    )
    assert (
        scalar(worker_db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", job) == 5
    )


def test_retry_failed_only_touches_the_given_kind(worker_db: Conn) -> None:
    [a, b] = enqueue(worker_db, "flaky", [{}, {}])
    [c] = enqueue(worker_db, "permanent", [{}])
    scalar(worker_db, "UPDATE learnops_jobs SET status = 'failed', attempts = 3")
    assert run_cli(worker_db, "retry-failed", "--kind", "permanent").stdout.strip() == "1"
    assert [status(worker_db, j) for j in (a, b, c)] == ["failed", "failed", "queued"]
    assert run_cli(worker_db, "retry-failed").stdout.strip() == "2"
    assert scalar(worker_db, "SELECT sum(attempts) FROM learnops_jobs") == 0


def test_a_permanent_failure_fails_at_once(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "permanent", [{}])
    workers()
    wait_for(lambda: status(worker_db, job) == "failed", 20, "the job to fail", every=0.05)
    assert scalar(worker_db, "SELECT attempts FROM learnops_jobs WHERE id = %s", job) == 1
    assert "can never be graded" in scalar(
        worker_db, "SELECT last_error FROM learnops_jobs WHERE id = %s", job
    )


def test_retry_later_honours_the_requested_delay(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "later", [{"delay": 1.0}])
    workers(WORKER_POLL_SECONDS="0.05", WORKER_BACKOFF_MAX_SECONDS="5")  # within the clamp
    wait_for(lambda: status(worker_db, job) == "succeeded", 20, "the job to succeed", every=0.05)
    gap = scalar(
        worker_db,
        "SELECT extract(epoch FROM max(at) - min(at)) FROM worker_test_executions "
        "WHERE job_id = %s",
        job,
    )
    assert 0.95 <= gap < 3


def test_jobs_with_a_future_run_after_wait(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    out = run_cli(worker_db, "enqueue", "--kind", "record", "--run-after", "1.5")
    job = int(out.stdout)
    began = time.monotonic()
    workers(WORKER_POLL_SECONDS="0.1")
    wait_for(lambda: status(worker_db, job) == "succeeded", 20, "the delayed job", every=0.05)
    assert time.monotonic() - began >= 1.2
