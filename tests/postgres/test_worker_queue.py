"""Claiming, completing and wake-ups against a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.harness.postgres import Conn, PgCluster
from tests.harness.wait import wait_for
from tests.support.worker import (
    WorkerProc,
    connect,
    enqueue,
    run_cli,
    scalar,
)

PACKAGE = Path(__file__).resolve().parents[2] / "images/learning-worker/learnops_worker"

CATALOG = {
    "columns": """SELECT table_name, column_name, data_type, column_default, is_nullable,
                         is_identity FROM information_schema.columns
                  WHERE table_schema = 'public' AND table_name LIKE 'learnops%%'
                    AND table_name <> 'learnops_schema_migrations' ORDER BY 1, 2""",
    "indexes": """SELECT indexname, indexdef FROM pg_indexes
                  WHERE tablename LIKE 'learnops%%' AND tablename <> 'learnops_schema_migrations'
                  ORDER BY 1""",
    "constraints": """SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE conrelid::regclass::text LIKE 'learnops%%'
                        AND conrelid::regclass::text <> 'learnops_schema_migrations'
                      ORDER BY 1, 2""",
    "triggers": """SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
                   WHERE NOT tgisinternal ORDER BY 1""",
    "functions": """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
                    WHERE proname LIKE 'learnops%%' ORDER BY 1""",
}


def catalog(conn: Conn) -> dict[str, list[tuple[object, ...]]]:
    with connect(conn) as c:
        return {k: c.execute(q.encode()).fetchall() for k, q in CATALOG.items()}


def test_migrations_and_schema_sql_give_the_same_schema(pg_cluster: PgCluster, pg_db: Conn) -> None:
    assert run_cli(pg_db, "migrate").returncode == 0
    reference = pg_cluster.create_database(pg_db.dbname + "_ref")
    try:
        with connect(reference) as c:
            c.execute((PACKAGE / "schema.sql").read_bytes())
        migrated, from_schema = catalog(pg_db), catalog(reference)
    finally:
        pg_cluster.drop_database(reference.dbname)
    assert migrated == from_schema
    assert len(migrated["columns"]) > 10
    assert migrated["triggers"]


def test_migrate_is_idempotent(pg_db: Conn) -> None:
    for _ in range(2):
        result = run_cli(pg_db, "migrate")
        assert result.returncode == 0, result.stderr
    assert scalar(pg_db, "SELECT count(*) FROM learnops_schema_migrations") == len(
        list((PACKAGE / "migrations").glob("*.sql"))
    )


def test_enqueue_stats_and_run_process_a_job(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    payload = {"sleep": 0}
    out = run_cli(worker_db, "enqueue", "--kind", "record", "--payload", json.dumps(payload))
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout)
    stats = json.loads(run_cli(worker_db, "stats", "--json").stdout)
    assert stats["jobs"] == [{"status": "queued", "kind": "record", "count": 1}]
    workers()
    wait_for(
        lambda: (
            scalar(worker_db, "SELECT status FROM learnops_jobs WHERE id = %s", job_id)
            == "succeeded"
        ),
        20,
        "the job to succeed",
        every=0.05,
    )
    result = scalar(worker_db, "SELECT result FROM learnops_jobs WHERE id = %s", job_id)
    assert result["attempt"] == 1
    stats = json.loads(run_cli(worker_db, "stats", "--json").stdout)
    assert stats["leases"] == {"active": 0, "expired": 0}


def test_many_workers_run_each_job_exactly_once(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    ids = enqueue(worker_db, "record", [{"sleep": 0}] * 600)
    for _ in range(4):
        # A long lease: this test is about claim exclusivity, not lease expiry, and a loaded
        # CI box must not starve a heartbeat past a 1 s lease.
        workers(WORKER_CONCURRENCY="2", WORKER_LEASE_SECONDS="10", WORKER_HEARTBEAT_SECONDS="1")
    wait_for(
        lambda: (
            scalar(worker_db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
            == len(ids)
        ),
        60,
        "all jobs to succeed",
        every=0.05,
    )
    assert scalar(worker_db, "SELECT count(DISTINCT job_id) FROM worker_test_executions") == 600
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_executions") == 600
    assert scalar(worker_db, "SELECT count(*) FROM worker_test_completions") == 600
    pids = scalar(worker_db, "SELECT count(DISTINCT pid) FROM worker_test_executions")
    assert pids >= 2  # the work was really shared


def test_higher_priority_runs_first_and_bad_payloads_are_rejected(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    low = int(run_cli(worker_db, "enqueue", "--kind", "record").stdout)
    high = int(run_cli(worker_db, "enqueue", "--kind", "record", "--priority", "5").stdout)
    bad = run_cli(worker_db, "enqueue", "--kind", "record", "--payload", "{nope")
    assert bad.returncode == 2
    assert "--payload is not valid JSON" in bad.stderr
    text = run_cli(worker_db, "stats").stdout
    assert "queued" in text
    assert "oldest queued:" in text
    workers()
    wait_for(
        lambda: scalar(worker_db, "SELECT count(*) FROM worker_test_completions") == 2,
        20,
        "both",
        every=0.05,
    )
    order = scalar(worker_db, "SELECT array_agg(job_id ORDER BY at) FROM worker_test_executions")
    assert order == [high, low]
