"""Retention: finished jobs and cache rows go in small batches while workers keep claiming."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, connect, enqueue, scalar

OLD_SUCCEEDED, OLD_FAILED, KEPT = 60_000, 40_000, 3_000


def fill(db: Conn) -> None:
    with connect(db) as c:
        c.execute(
            "INSERT INTO learnops_jobs (kind, status, attempts, finished_at, result) "
            "SELECT 'record', 'succeeded', 1, now() - interval '8 days', '{}' "
            "FROM generate_series(1, %s)",
            (OLD_SUCCEEDED,),
        )
        c.execute(
            "INSERT INTO learnops_jobs (kind, status, attempts, finished_at, last_error) "
            "SELECT 'record', 'failed', 5, now() - interval '31 days', 'old' "
            "FROM generate_series(1, %s)",
            (OLD_FAILED,),
        )
        # younger than their retention: stay
        c.execute(
            "INSERT INTO learnops_jobs (kind, status, attempts, finished_at) "
            "SELECT 'record', s, 1, now() - interval '6 days' "
            "FROM generate_series(1, %s), unnest(ARRAY['succeeded', 'failed', 'cancelled']) s",
            (KEPT // 3,),
        )
        c.execute(
            "INSERT INTO learnops_result_cache (handler, backend, model, input_hash, result, "
            "created_at) SELECT 'feedback', 'openai', 'm', g::text, '{}', "
            "now() - CASE WHEN g <= 1000 THEN interval '31 days' ELSE interval '1 day' END "
            "FROM generate_series(1, 1010) g"
        )
        c.execute("ANALYZE learnops_jobs")


def old_left(db: Conn) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM learnops_jobs WHERE finished_at < now() - interval '7 days'",
        )
    )


def test_retention_prunes_100000_finished_rows_in_batches_while_workers_claim(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    fill(worker_db)
    fresh = enqueue(worker_db, "record", [{"sleep": 0.01}] * 1000)
    env = {
        "WORKER_RETENTION_INTERVAL_SECONDS": "0.5",
        "WORKER_CONCURRENCY": "2",
        "WORKER_LEASE_SECONDS": "10",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    pool = [workers(**env), workers(**env)]
    samples: list[tuple[int, int]] = []

    def done() -> bool:
        completed = int(scalar(worker_db, "SELECT count(*) FROM worker_test_completions"))
        samples.append((old_left(worker_db), completed))
        cache = int(scalar(worker_db, "SELECT count(*) FROM learnops_result_cache"))
        return samples[-1] == (0, len(fresh)) and cache == 10

    wait_for(done, 180, "old rows pruned and the new jobs done", every=0.05)
    # claims went on while pruning was under way
    assert any(0 < left < OLD_SUCCEEDED + OLD_FAILED and n > 0 for left, n in samples)
    assert scalar(worker_db, "SELECT count(*) FROM learnops_jobs") == KEPT + len(fresh)
    assert scalar(worker_db, "SELECT count(DISTINCT job_id) FROM worker_test_completions") == 1000
    assert scalar(worker_db, "SELECT count(*) FROM learnops_result_cache") == 10

    def pruned() -> int:
        events = [e for w in pool for e in w.events() if e.get("event") == "retention.pruned"]
        return sum(e["count"] for e in events)

    # each row was deleted once, whichever worker's round did it
    wait_for(
        lambda: pruned() == OLD_SUCCEEDED + OLD_FAILED + 1000,
        30,
        "the last round's log",
        every=0.05,
    )
    time.sleep(1.5)  # a few more rounds find nothing left to delete
    assert scalar(worker_db, "SELECT count(*) FROM learnops_jobs") == KEPT + len(fresh)
