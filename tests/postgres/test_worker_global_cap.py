"""WORKER_GLOBAL_MAX_INFLIGHT: the database's unique slot index bounds running jobs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import psycopg
import pytest

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, connect, enqueue, scalar


def test_the_global_cap_is_never_exceeded_under_load(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    cap, total = 3, 200
    enqueue(worker_db, "record", [{"sleep": 0.02}] * total)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with connect(worker_db) as c:
            while not done.is_set():
                row = c.execute(
                    "SELECT count(*) FROM learnops_jobs WHERE status = 'running'"
                ).fetchone()
                assert row is not None
                samples.append(int(row[0]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(3):  # 12 handler threads competing for 3 slots
            # Long lease: this is about the slot index, not expiry (see test_worker_queue).
            workers(
                WORKER_CONCURRENCY="4",
                WORKER_GLOBAL_MAX_INFLIGHT=str(cap),
                WORKER_LEASE_SECONDS="10",
                WORKER_HEARTBEAT_SECONDS="1",
            )
        wait_for(
            lambda: (
                scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
                == total
            ),
            60,
            "all jobs",
            every=0.05,
        )
    finally:
        done.set()
        sampler.join()
    assert len(samples) > 100
    assert max(samples) <= cap
    assert max(samples) == cap  # the cap was really the limit, not idleness
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_executions") == total


def test_two_running_jobs_cannot_hold_the_same_slot(worker_db: Conn) -> None:
    [a, b] = enqueue(worker_db, "record", [{}, {}])
    claim = (
        "UPDATE learnops_jobs SET status = 'running', slot = 1, lease_token = gen_random_uuid(), "
        "lease_expires_at = now() + interval '1 minute' WHERE id = %s"
    )
    with connect(worker_db) as c:
        c.execute(claim, (a,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(claim, (b,))


def test_a_dead_workers_slot_comes_back_after_its_lease(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [stuck] = enqueue(worker_db, "record", [{"sleep": 60}])
    doomed = workers(WORKER_GLOBAL_MAX_INFLIGHT="1")
    wait_for(
        lambda: scalar(worker_db, "SELECT slot FROM learnops_jobs WHERE id = %s", stuck) == 1,
        20,
        "the only slot to be taken",
        every=0.05,
    )
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    scalar(worker_db, "UPDATE learnops_jobs SET payload = '{}' WHERE id = %s", stuck)
    others = enqueue(worker_db, "record", [{}] * 5)
    workers(WORKER_GLOBAL_MAX_INFLIGHT="1", WORKER_CONCURRENCY="4")
    wait_for(
        lambda: (
            scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
            == len(others) + 1
        ),
        30,
        "every job through the one slot",
        every=0.05,
    )
