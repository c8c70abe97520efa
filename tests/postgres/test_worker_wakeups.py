"""LISTEN/NOTIFY wake-ups with a long poll interval, so polling cannot explain the latency."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, connect, scalar

POLL = "30"  # seconds: any start within 1 s must have come from a notification


def listening(w: WorkerProc) -> bool:
    code, body = w.get("/healthz")
    return code == 200 and json.loads(body)["listener"] is True


def enqueue_and_measure(db: Conn, n: int) -> list[float]:
    """Enqueue one job at a time into an idle worker; seconds from commit to claim."""
    latencies = []
    with connect(db) as c:
        for _ in range(n):
            row = c.execute(
                "INSERT INTO learnops_jobs (kind) VALUES ('noop') RETURNING id"
            ).fetchone()
            assert row is not None
            job_id = row[0]
            wait_for(
                lambda: (
                    scalar(db, "SELECT status FROM learnops_jobs WHERE id = %s", job_id)  # noqa: B023
                    == "succeeded"
                ),
                5,
                "the job to run",
                every=0.05,
            )
            latencies.append(
                float(
                    scalar(
                        db,
                        "SELECT extract(epoch FROM started_at - created_at) FROM learnops_jobs "
                        "WHERE id = %s",
                        row[0],
                    )
                )
            )
    return latencies


def test_an_idle_worker_starts_an_enqueued_job_at_once(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    w = workers(http=True, WORKER_POLL_SECONDS=POLL)
    wait_for(lambda: listening(w), 10, "the listener", every=0.05)
    time.sleep(0.3)  # let the first (startup) claim round go idle
    latencies = enqueue_and_measure(worker_db, 10)
    print(f"enqueue->start latency: median {statistics.median(latencies) * 1000:.1f} ms")
    assert max(latencies) < 1.0


def test_a_killed_listener_connection_reconnects_and_wakes_again(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    w = workers(http=True, WORKER_POLL_SECONDS=POLL)
    wait_for(lambda: listening(w), 10, "the listener", every=0.05)
    scalar(
        worker_db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'learning-worker:listen'",
    )
    wait_for(
        lambda: any(e.get("event") == "listener.down" for e in w.events()),
        10,
        "the listener to notice",
        every=0.05,
    )
    wait_for(lambda: listening(w), 10, "the listener to come back", every=0.05)
    assert max(enqueue_and_measure(worker_db, 3)) < 1.0
