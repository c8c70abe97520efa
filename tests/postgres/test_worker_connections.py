"""Connections that fail loudly: outages, restarts, black holes, and stops meanwhile."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

from tests.harness.net import free_port
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import (
    BlackHoleProxy,
    FakeProvider,
    OwnPostgres,
    WorkerProc,
    enqueue,
    env_for,
    scalar,
)

OUTAGE_SECONDS = 90


def own_worker(own: OwnPostgres, *, http: bool = False, url: str | None = None, **env: str):  # type: ignore[no-untyped-def]
    port = free_port() if http else 0
    return WorkerProc(own.db, env_for(own.db, url, WORKER_HTTP_PORT=str(port), **env), port).start()


def started(db: Conn, job_id: int) -> bool:
    return bool(scalar(db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", job_id))


def status(db: Conn, job_id: int) -> str:
    return str(scalar(db, "SELECT status FROM learnops_jobs WHERE id = %s", job_id))


def test_healthz_stays_200_through_a_90_second_outage_while_readyz_fails(
    own_postgres: OwnPostgres,
) -> None:
    w = own_worker(own_postgres, http=True)
    try:
        wait_for(lambda: w.get("/readyz")[0] == 200, 20, "readiness", every=0.05)
        own_postgres.stop()
        ends = time.monotonic() + OUTAGE_SECONDS
        live, ready = [], []
        while time.monotonic() < ends:
            live.append(w.get("/healthz")[0])
            ready.append(w.get("/readyz")[0])
            time.sleep(2)
        assert set(live) == {200}  # Kubernetes must not restart a pod because the db is down
        assert ready[-10:] == [503] * 10
        own_postgres.start()
        wait_for(lambda: w.get("/readyz")[0] == 200, 30, "readiness after the outage", every=0.05)
        [job] = enqueue(own_postgres.db, "record", [{}])
        wait_for(
            lambda: status(own_postgres.db, job) == "succeeded", 30, "a job after it", every=0.05
        )
        assert w.alive()
        assert any(e.get("event") == "claim.failed" for e in w.events())
    finally:
        w.stop()


def test_sigterm_with_the_database_down_exits_within_the_drain_bound(
    own_postgres: OwnPostgres,
) -> None:
    [long, short] = enqueue(own_postgres.db, "record", [{"sleep": 60}, {"sleep": 1.5}])
    w = own_worker(
        own_postgres,
        WORKER_CONCURRENCY="2",
        WORKER_LEASE_SECONDS="30",
        WORKER_HEARTBEAT_SECONDS="5",
        WORKER_SHUTDOWN_TIMEOUT_SECONDS="3",
    )
    try:
        wait_for(
            lambda: started(own_postgres.db, long) and started(own_postgres.db, short),
            20,
            "both jobs to start",
            every=0.05,
        )
        own_postgres.stop()  # the short job finishes into a database that is gone
        sent = time.monotonic()
        w.signal(signal.SIGTERM)
        code = w.wait(60)
        took = time.monotonic() - sent
        # drain (3 s) + the documented margin (5 s) + process exit; generous for a loaded box
        assert took < 3 + 5 + 4, took
        assert code == 0
        events = {e.get("event") for e in w.events()}
        assert "release.failed" in events
    finally:
        w.stop()


def test_a_black_holed_connection_fails_loudly_and_sigterm_still_stops_the_worker(
    worker_db: Conn, black_hole_proxy: BlackHoleProxy, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 120}])
    url = black_hole_proxy.url(worker_db)
    w = workers(
        DATABASE_URL=url,
        WORKER_LEASE_SECONDS="30",
        WORKER_HEARTBEAT_SECONDS="2",
        WORKER_STATEMENT_TIMEOUT_SECONDS="1",
        WORKER_SHUTDOWN_TIMEOUT_SECONDS="3",
    )
    wait_for(lambda: started(worker_db, job), 20, "the job to start", every=0.05)
    black_hole_proxy.black_hole()

    # No RST, no answer: only the client's own deadline notices. It must say so.
    def noticed() -> bool:
        events = {e.get("event") for e in w.events()}
        return "db.timeout" in events and bool(events & {"heartbeat.failed", "claim.failed"})

    wait_for(noticed, 30, "the worker to notice the silent connection and say so", every=0.05)
    sent = time.monotonic()
    w.signal(signal.SIGTERM)
    code = w.wait(60)
    assert time.monotonic() - sent < 3 + 5 + 4
    assert code == 0
    assert w.events()[-1]["event"] == "worker.stopped"


def test_a_postgres_restart_costs_the_result_cache_no_attempt(
    own_postgres: OwnPostgres, fake_provider: FakeProvider
) -> None:
    def submission(answer: str) -> dict[str, object]:
        return {"task_prompt": "p", "answer": answer, "rubric": {"keywords": ["x"], "points": 1}}

    w = own_worker(
        own_postgres,
        FEEDBACK_BACKEND="openai",
        OPENAI_BASE_URL=fake_provider.base_url,
        OPENAI_API_KEY=fake_provider.api_key,
        WORKER_LEASE_SECONDS="10",
        WORKER_HEARTBEAT_SECONDS="1",
    )
    try:
        [first] = enqueue(own_postgres.db, "feedback", [submission("one")])
        wait_for(
            lambda: status(own_postgres.db, first) == "succeeded",
            30,
            "the first answer",
            every=0.05,
        )
        own_postgres.restart()  # the pooled cache connection is now dead
        [second] = enqueue(own_postgres.db, "feedback", [submission("two")])
        wait_for(
            lambda: status(own_postgres.db, second) == "succeeded", 60, "the second", every=0.05
        )
        row = scalar(
            own_postgres.db,
            "SELECT json_build_object('a', attempts, 'e', errors) FROM learnops_jobs WHERE id = %s",
            second,
        )
        assert row == {"a": 1, "e": []}
        assert fake_provider.calls == 2
        assert w.alive()
        assert json.dumps(w.events()).count("cache.reconnect") <= 1
    finally:
        w.stop()
