"""Hostile jobs and handlers: each one may fail itself, never another job or the worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import (
    FakeProvider,
    WorkerProc,
    connect,
    enqueue,
    scalar,
)


def row(db: Conn, job_id: int) -> dict[str, Any]:
    value = scalar(
        db,
        "SELECT json_build_object('status', status, 'attempts', attempts, 'last_error', "
        "last_error, 'errors', errors, 'result', result, 'token', lease_token) "
        "FROM learnops_jobs WHERE id = %s",
        job_id,
    )
    assert isinstance(value, dict)
    return value


def executions(db: Conn, job_id: int) -> int:
    return int(scalar(db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", job_id))


def finished(db: Conn, ids: list[int]) -> Callable[[], bool]:
    return lambda: (
        not scalar(
            db,
            "SELECT count(*) FROM learnops_jobs "
            "WHERE id = ANY(%s) AND status IN ('queued', 'running')",
            ids,
        )
    )


def test_a_poison_result_among_200_good_jobs_fails_only_itself(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    before = enqueue(worker_db, "record", [{"sleep": 0}] * 100)
    [poison] = enqueue(worker_db, "poison", [{}])
    after = enqueue(worker_db, "record", [{"sleep": 0}] * 100)
    good = before + after
    w = workers(WORKER_CONCURRENCY="4", WORKER_LEASE_SECONDS="10", WORKER_HEARTBEAT_SECONDS="1")
    wait_for(finished(worker_db, [*good, poison]), 60, "all 201 jobs to finish", every=0.05)
    assert scalar(
        worker_db,
        "SELECT count(*) FROM learnops_jobs WHERE id = ANY(%s) AND status = 'succeeded' "
        "AND attempts = 1 AND (result->>'attempt')::int = 1",
        good,
    ) == len(good)
    # every good job ran once and was written once: the poison did not drag them along
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_executions") == len(good) + 1
    assert scalar(worker_db, "SELECT count(DISTINCT job_id) FROM worker_test_completions") == 200
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_completions") == 200
    bad = row(worker_db, poison)
    assert (bad["status"], bad["attempts"], bad["result"]) == ("failed", 1, None)
    assert bad["last_error"].startswith("UnstorableResult: the handler's result cannot be stored")
    assert "inf" in bad["last_error"]
    assert executions(worker_db, poison) == 1
    assert w.alive()


def test_nul_bytes_and_huge_delays_in_errors_are_retried_like_any_error(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [nul] = enqueue(worker_db, "nul-error", [{}])
    [delay] = enqueue(worker_db, "huge-delay", [{}])
    workers(WORKER_MAX_ATTEMPTS="2", WORKER_BACKOFF_MAX_SECONDS="0.5", WORKER_LEASE_SECONDS="10")
    wait_for(finished(worker_db, [nul, delay]), 30, "both jobs to end", every=0.05)
    for job in (nul, delay):
        r = row(worker_db, job)
        assert (r["status"], r["attempts"], r["token"]) == ("failed", 2, None)
        assert executions(worker_db, job) == 2
        # the attempts ended by the worker's own writes, not by lease expiry
        assert [e["attempt"] for e in r["errors"]] == [1, 2]
        assert not any("lease expired" in e["error"] for e in r["errors"])
    assert row(worker_db, nul)["last_error"] == "RuntimeError: bad byte \u2400 in the message"
    # the requested 1e300 s became the backoff cap
    assert row(worker_db, delay)["errors"][0]["retry_in_seconds"] == 0.5
    assert row(worker_db, delay)["last_error"] == "RetryLater: come back much later"


def test_a_lone_surrogate_in_an_error_neither_kills_the_worker_nor_loops_past_max_attempts(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "surrogate", [{}])
    w = workers(WORKER_MAX_ATTEMPTS="3", WORKER_LEASE_SECONDS="10")
    wait_for(finished(worker_db, [job]), 30, "the job to fail", every=0.05)
    r = row(worker_db, job)
    assert (r["status"], r["attempts"]) == ("failed", 3)
    assert executions(worker_db, job) == 3
    assert r["last_error"] == "ValueError: broken \\udc80 text"
    assert w.alive()
    [later] = enqueue(worker_db, "record", [{}])
    wait_for(finished(worker_db, [later]), 20, "the worker to go on", every=0.05)
    assert row(worker_db, later)["status"] == "succeeded"
    assert not [e for e in w.events() if e.get("event") in ("ack.crashed", "worker.error")]


def test_system_exit_in_a_handler_fails_that_job_and_the_worker_keeps_serving(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "sysexit", [{}])
    good = enqueue(worker_db, "record", [{}] * 5)
    w = workers(http=True, WORKER_MAX_ATTEMPTS="2", WORKER_LEASE_SECONDS="10")
    wait_for(finished(worker_db, [job, *good]), 30, "every job to end", every=0.05)
    r = row(worker_db, job)
    assert (r["status"], r["attempts"], r["token"]) == ("failed", 2, None)
    assert r["last_error"] == "SystemExit: 3"
    assert scalar(
        worker_db, "SELECT count(*) FROM learnops_jobs WHERE id = ANY(%s) AND status = 'succeeded'",
        good,
    ) == 5  # fmt: skip
    assert w.alive()
    code, body = w.get("/healthz")
    assert code == 200, body


def test_a_handler_that_never_returns_times_out_and_fails_within_its_attempts(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "forever", [{}])
    w = workers(
        http=True,
        WORKER_CONCURRENCY="2",
        WORKER_MAX_ATTEMPTS="2",
        WORKER_JOB_TIMEOUT_SECONDS="600",
        WORKER_JOB_TIMEOUTS="forever=1",  # the per-kind override is what applies
        WORKER_LEASE_SECONDS="10",
        WORKER_HEARTBEAT_SECONDS="1",
    )
    wait_for(finished(worker_db, [job]), 60, "the runaway job to fail", every=0.05)
    r = row(worker_db, job)
    assert (r["status"], r["attempts"], r["token"]) == ("failed", 2, None)
    assert r["last_error"] == "JobTimeout: the handler ran longer than 1 s"
    assert executions(worker_db, job) == 2
    # both threads are still held by the runaway handler: the worker asks to be restarted
    wait_for(lambda: w.get("/healthz")[0] == 503, 20, "healthz to fail", every=0.05)
    assert json.loads(w.get("/healthz")[1])["stuck_handlers"] == 2
    assert w.get("/readyz")[0] == 200  # the database is fine; only this process is stuck
    assert w.metric("learnops_worker_jobs_timed_out_total") == 2


def test_a_payload_too_deep_for_python_fails_only_its_own_job(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    # Such a row can only predate the payload check (an upgraded database): make one.
    deep = "[" * 5000 + "]" * 5000
    with connect(worker_db) as c:
        c.execute("ALTER TABLE learnops_jobs DROP CONSTRAINT IF EXISTS learnops_jobs_payload_check")
        first = enqueue(worker_db, "record", [{}] * 3)
        poisoned = c.execute(
            "INSERT INTO learnops_jobs (kind, payload) VALUES ('record', %s::jsonb) RETURNING id",
            (deep,),
        ).fetchone()
        assert poisoned is not None
        last = enqueue(worker_db, "record", [{}] * 3)
    w = workers(WORKER_CONCURRENCY="4", WORKER_LEASE_SECONDS="10")
    ids = [*first, int(poisoned[0]), *last]
    wait_for(finished(worker_db, ids), 30, "every job to end", every=0.05)
    r = row(worker_db, int(poisoned[0]))
    assert (r["status"], r["attempts"]) == ("failed", 1)
    assert r["last_error"] == "InvalidPayload: the payload cannot be decoded (RecursionError)"
    assert executions(worker_db, int(poisoned[0])) == 0  # the handler never saw it
    assert all(row(worker_db, j)["status"] == "succeeded" for j in first + last)
    assert w.alive()


def test_an_answer_the_cache_cannot_store_is_paid_for_once_and_fails_clearly(
    worker_db: Conn,
    workers: Callable[..., WorkerProc],
    fake_provider: FakeProvider,
) -> None:
    fake_provider.content = '{"summary": "a NUL \\u0000 in the answer"}'
    [job] = enqueue(
        worker_db,
        "feedback",
        [{"task_prompt": "p", "answer": "a", "rubric": {"keywords": ["a"], "points": 1}}],
    )
    workers(
        FEEDBACK_BACKEND="openai",
        OPENAI_BASE_URL=fake_provider.base_url,
        OPENAI_API_KEY=fake_provider.api_key,
        WORKER_MAX_ATTEMPTS="4",
    )
    wait_for(finished(worker_db, [job]), 30, "the job to end", every=0.05)
    r = row(worker_db, job)
    assert (r["status"], r["attempts"]) == ("failed", 1)
    assert r["last_error"] == (
        "PermanentFailure: the provider's answer cannot be stored: "
        "a string contains a NUL character"
    )
    assert fake_provider.calls == 1
    assert scalar(worker_db, "SELECT count(*) FROM learnops_result_cache") == 0


def test_rubric_points_that_would_sum_to_infinity_fail_the_feedback_job_clearly(
    worker_db: Conn, workers: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    rubric = [{"keywords": ["a"], "points": 1e308}, {"keywords": ["b"], "points": 1e308}]
    [job] = enqueue(
        worker_db, "feedback", [{"task_prompt": "p", "answer": "a b", "rubric": rubric}]
    )
    [fine] = enqueue(
        worker_db, "feedback", [{"task_prompt": "p", "answer": "a", "rubric": {"keywords": ["a"]}}]
    )
    workers()
    wait_for(finished(worker_db, [job, fine]), 30, "both feedback jobs", every=0.05)
    r = row(worker_db, job)
    assert (r["status"], r["attempts"]) == ("failed", 1)
    assert "points must be a number from 0 to 1e+09" in r["last_error"]
    assert row(worker_db, fine)["status"] == "succeeded"
