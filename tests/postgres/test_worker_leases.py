"""Leases, heartbeats and fencing under crashes, pauses and long jobs."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable

from tests.harness.postgres import Conn, PgCluster
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, connect, enqueue, scalar


def status(db: Conn, job_id: int) -> str:
    return str(scalar(db, "SELECT status FROM learnops_jobs WHERE id = %s", job_id))


def executions(db: Conn, job_id: int) -> list[tuple[int, int]]:
    with connect(db) as c:
        rows = c.execute(
            "SELECT attempt, pid FROM worker_test_executions WHERE job_id = %s ORDER BY at",
            (job_id,),
        ).fetchall()
    return [(int(a), int(p)) for a, p in rows]


def test_a_killed_workers_job_is_reclaimed_after_its_lease_and_completes_once(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 30}])
    doomed = workers()
    wait_for(
        lambda: len(executions(worker_db, job)) == 1, 20, "the first worker to start", every=0.05
    )
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    # The next attempt must finish: sleep is per attempt, so make the retry quick.
    scalar(worker_db, "UPDATE learnops_jobs SET payload = '{}' WHERE id = %s", job)
    killed_at = time.monotonic()
    workers()
    wait_for(lambda: status(worker_db, job) == "succeeded", 20, "the job to be re-run", every=0.05)
    assert time.monotonic() - killed_at < 10
    runs = executions(worker_db, job)
    assert [a for a, _ in runs] == [1, 2]
    assert runs[0][1] == doomed.pid
    assert (
        scalar(worker_db, "SELECT count(*) FROM worker_test_completions WHERE job_id = %s", job)
        == 1
    )
    history = scalar(worker_db, "SELECT errors FROM learnops_jobs WHERE id = %s", job)
    assert "lease expired" in history[0]["error"]


def test_a_stale_worker_cannot_complete_a_re_leased_job(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 1.5}])
    stale = workers(http=True)
    wait_for(lambda: len(executions(worker_db, job)) == 1, 20, "the first claim", every=0.05)
    stale.signal(signal.SIGSTOP)  # paused past its 1 s lease: heartbeats stop too
    fresh = workers()
    wait_for(
        lambda: status(worker_db, job) == "succeeded", 20, "the second worker to finish", every=0.05
    )
    stale.signal(signal.SIGCONT)  # its handler returns now and tries to complete
    wait_for(
        lambda: stale.metric("learnops_worker_jobs_lease_lost_total") == 1,
        10,
        "the stale worker to count the lost lease",
        every=0.05,
    )
    runs = executions(worker_db, job)
    assert [p for _, p in runs] == [stale.pid, fresh.pid]
    completions = scalar(worker_db, "SELECT array_agg(attempt) FROM worker_test_completions")
    assert completions == [2]
    assert scalar(worker_db, "SELECT result->>'pid' FROM learnops_jobs WHERE id = %s", job) == str(
        fresh.pid
    )
    assert stale.metric("learnops_worker_jobs_succeeded_total") == 0
    assert any(
        e.get("event") == "job.lease_lost" and e.get("job_id") == job for e in stale.events()
    )


def test_a_job_running_five_leases_long_stays_single_while_heartbeating(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 5}])  # lease is 1 s
    first = workers()
    wait_for(lambda: len(executions(worker_db, job)) == 1, 20, "the claim", every=0.05)
    workers()  # an eager second worker polls every 0.2 s the whole time
    wait_for(lambda: status(worker_db, job) == "succeeded", 20, "the long job", every=0.05)
    assert executions(worker_db, job) == [(1, first.pid)]
    assert scalar(worker_db, "SELECT attempts FROM learnops_jobs WHERE id = %s", job) == 1


def test_soak_random_kills_lose_nothing_and_complete_nothing_twice(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    total = 2000
    enqueue(worker_db, "record", [{"sleep": 0.01}] * total)
    env = {"WORKER_CONCURRENCY": "2", "WORKER_MAX_ATTEMPTS": "50"}
    pool = [workers(**env) for _ in range(4)]
    rng = random.Random(5)
    kills = 0
    deadline = time.monotonic() + 120

    def succeeded() -> int:
        return int(
            scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
        )

    while succeeded() < total and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 1.5))
        victim = rng.randrange(len(pool))
        pool[victim].signal(signal.SIGKILL)
        pool[victim].wait()
        kills += 1
        pool[victim] = workers(**env)
    wait_for(lambda: succeeded() == total, 30, "every job to succeed", every=0.05)
    assert kills >= 3
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_completions") == total
    assert scalar(worker_db, "SELECT count(DISTINCT job_id) FROM worker_test_completions") == total
    assert (
        scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE lease_token IS NOT NULL") == 0
    )
    assert scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE status <> 'succeeded'") == 0
    # the completed attempt is the one whose result was written
    assert (
        scalar(
            worker_db,
            "SELECT count(*) FROM learnops_jobs j JOIN worker_test_completions c "
            "ON c.job_id = j.id WHERE (j.result->>'attempt')::int <> c.attempt",
        )
        == 0
    )


def test_a_worker_whose_heartbeat_cannot_reach_the_database_stops_with_exit_4(
    pg_cluster: PgCluster, worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    role = pg_cluster.create_user("hb_worker", "hb-password-1")
    with connect(worker_db) as c:
        c.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO hb_worker")
    as_role = Conn(worker_db.host, worker_db.port, role.user, role.password, worker_db.dbname)
    [job] = enqueue(worker_db, "record", [{"sleep": 30}])
    w = workers(DATABASE_URL=as_role.url())
    wait_for(lambda: len(executions(worker_db, job)) == 1, 20, "the job to start", every=0.05)
    with connect(worker_db) as c:  # no new logins, and the heartbeat's session is gone
        c.execute("ALTER ROLE hb_worker NOLOGIN")
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'learning-worker:heartbeat'"
        )
    assert w.wait(15) == 4
    assert any(e.get("event") == "heartbeat.failed" for e in w.events())
    # nobody completed it; once its lease expires another worker recovers it
    assert status(worker_db, job) == "running"
    scalar(worker_db, "UPDATE learnops_jobs SET payload = '{}' WHERE id = %s", job)
    workers()
    wait_for(lambda: status(worker_db, job) == "succeeded", 20, "recovery", every=0.05)
