"""Chaos soak: random SIGKILLs, connection-kill storms and a PostgreSQL crash-restart, with
poison results and runaway handlers mixed into the queue. Good jobs succeed exactly once;
bad ones fail within their attempts; nothing stays leased."""

from __future__ import annotations

import random
import signal
import time

from tests.harness.net import free_port
from tests.harness.wait import wait_for
from tests.support.worker import OwnPostgres, WorkerProc, connect, env_for, scalar

TOTAL, POISON, RUNAWAY = 2000, 20, 20
PROCESSES = 4
MAX_ATTEMPTS = 8
ENV = {
    "WORKER_CONCURRENCY": "4",
    "WORKER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "WORKER_LEASE_SECONDS": "3",
    "WORKER_HEARTBEAT_SECONDS": "0.5",
    "WORKER_JOB_TIMEOUTS": "chaos=1",
    "WORKER_SHUTDOWN_TIMEOUT_SECONDS": "1",
}


def storm(own: OwnPostgres) -> int:
    return int(
        scalar(
            own.db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'learning-worker:%%'",
        )
    )


def test_chaos_soak_loses_nothing_doubles_nothing_and_bad_jobs_fail_within_attempts(
    own_postgres: OwnPostgres,
) -> None:
    db = own_postgres.db
    rng = random.Random(11)
    modes = ["poison"] * POISON + ["runaway"] * RUNAWAY + ["good"] * (TOTAL - POISON - RUNAWAY)
    rng.shuffle(modes)
    with connect(db) as c:
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload) "
            "SELECT 'chaos', jsonb_build_object('mode', m, 'sleep', 0.002) "
            "FROM unnest(%s::text[]) m",
            (modes,),
        )

    def start() -> WorkerProc:
        port = free_port()
        env = env_for(db, WORKER_HTTP_PORT=str(port), **ENV)
        return WorkerProc(db, env, port).start(wait=False)

    def stuck(w: WorkerProc) -> bool:
        try:
            return w.get("/healthz")[0] == 503
        except OSError:  # not listening yet
            return False

    pool = [start() for _ in range(PROCESSES)]
    began = time.monotonic()
    kills = storms = 0
    restarted = False
    deadline = began + 150

    def unfinished() -> int:
        return int(
            scalar(db, "SELECT count(*) FROM learnops_jobs WHERE status IN ('queued', 'running')")
        )

    try:
        while unfinished() and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 1.0))
            elapsed = time.monotonic() - began
            if storms < 2 and elapsed > 3 + 6 * storms:
                storm(own_postgres)
                storms += 1
            elif not restarted and elapsed > 6:
                own_postgres.restart()  # pg_ctl restart -m immediate
                restarted = True
            victim = rng.randrange(PROCESSES) if rng.random() < 0.4 else -1
            for i, w in enumerate(pool):
                # What the kubelet does: a worker whose slots are all stuck fails /healthz
                # and is restarted; at random, one is SIGKILLed as if its node died.
                if i == victim or not w.alive() or stuck(w):
                    w.signal(signal.SIGKILL)
                    w.wait()
                    kills += 1
                    pool[i] = start()
        wait_for(lambda: unfinished() == 0, 60, "every job to end", every=0.05)
    finally:
        for w in pool:
            w.stop()
            w.log_path.unlink(missing_ok=True)
    assert storms == 2
    assert restarted
    assert kills >= 3
    with connect(db) as c:
        rows = c.execute(
            "SELECT payload->>'mode', status, count(*) FROM learnops_jobs GROUP BY 1, 2"
        ).fetchall()
    by_mode = {(m, s): n for m, s, n in rows}
    good = TOTAL - POISON - RUNAWAY
    assert by_mode == {("good", "succeeded"): good, ("poison", "failed"): POISON,
                       ("runaway", "failed"): RUNAWAY}  # fmt: skip
    # exactly once: one completion per good job, and it is the attempt whose result is stored
    assert scalar(db, "SELECT count(*) FROM worker_test_completions") == good
    assert scalar(db, "SELECT count(DISTINCT job_id) FROM worker_test_completions") == good
    assert (
        scalar(
            db,
            "SELECT count(*) FROM learnops_jobs j JOIN worker_test_completions c "
            "ON c.job_id = j.id WHERE (j.result->>'attempt')::int <> c.attempt",
        )
        == 0
    )
    assert scalar(db, "SELECT max(attempts) FROM learnops_jobs") <= MAX_ATTEMPTS
    assert scalar(
        db,
        "SELECT count(*) FROM learnops_jobs WHERE payload->>'mode' = 'poison' "
        "AND last_error NOT LIKE 'UnstorableResult:%%' AND last_error NOT LIKE 'lease expired%%'",
    ) == 0  # fmt: skip
    assert scalar(db, "SELECT count(*) FROM learnops_jobs WHERE lease_token IS NOT NULL") == 0
    print(f"\nchaos soak: {kills} kills, {storms} storms, restart, {time.monotonic() - began:.0f}s")
