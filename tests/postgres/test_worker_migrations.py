"""Upgrading a database that holds jobs: in place, no table rewrite, claims go on meanwhile."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from learnops_worker import migrate

from tests.harness.postgres import Conn, PgCluster
from tests.postgres.test_worker_queue import PACKAGE, catalog
from tests.support.worker import ROOT, connect, run_cli, scalar, worker_env

JOBS = 100_000


def at_first_release(db: Conn) -> None:
    """The schema as the first release left it (0001 only)."""
    with connect(db) as c:
        assert migrate.apply(c, upto="0001") == ["0001_initial.sql"]


def fill(db: Conn) -> None:
    with connect(db) as c:
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload, status, attempts, lease_token, "
            "lease_expires_at, finished_at) SELECT 'feedback', jsonb_build_object('n', g), s, "
            "CASE WHEN s = 'queued' THEN 0 ELSE 1 END, "
            "CASE WHEN s = 'running' THEN gen_random_uuid() END, "
            "CASE WHEN s = 'running' THEN now() + interval '1 hour' END, "
            "CASE WHEN s IN ('succeeded', 'failed') THEN now() END "
            "FROM generate_series(1, %s) g, "
            "LATERAL (SELECT (ARRAY['queued', 'running', 'succeeded', 'failed'])[g %% 4 + 1]) x(s)",
            (JOBS,),
        )


def test_an_existing_database_with_100000_jobs_is_upgraded_in_place_while_claims_go_on(
    pg_cluster: PgCluster, pg_db: Conn
) -> None:
    at_first_release(pg_db)
    fill(pg_db)
    before = scalar(pg_db, "SELECT pg_relation_filenode('learnops_jobs')")
    stop = threading.Event()
    writes: list[int] = []
    failures: list[BaseException] = []

    def keep_writing() -> None:
        # A platform enqueuing and a worker claiming all through the upgrade.
        try:
            with connect(pg_db) as c:
                c.execute("SET lock_timeout = '30s'")
                while not stop.is_set():
                    c.execute("INSERT INTO learnops_jobs (kind) VALUES ('noop')")
                    c.execute(
                        "UPDATE learnops_jobs SET status = 'succeeded', finished_at = now() "
                        "WHERE id = (SELECT id FROM learnops_jobs WHERE status = 'queued' "
                        "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    )
                    writes.append(1)
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "learnops_worker", "migrate"],
            env=worker_env(pg_db),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        during = len(writes)
    finally:
        stop.set()
        writer.join(60)
    assert proc.returncode == 0, proc.stderr
    assert failures == []
    assert during > 0  # writes went on while migrate ran
    # no rewrite: the table is the same file; every check validated; every index valid
    assert scalar(pg_db, "SELECT pg_relation_filenode('learnops_jobs')") == before
    assert scalar(
        pg_db,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'learnops_jobs'::regclass "
        "AND NOT convalidated",
    ) == 0  # fmt: skip
    assert scalar(
        pg_db,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relname LIKE 'learnops%%' AND NOT i.indisvalid",
    ) == 0  # fmt: skip
    assert scalar(pg_db, "SELECT count(*) FROM learnops_jobs WHERE kind = 'feedback'") == JOBS
    reference = pg_cluster.create_database(pg_db.dbname + "_ref")
    try:
        with connect(reference) as c:
            c.execute((PACKAGE / "schema.sql").read_bytes())
        assert catalog(pg_db) == catalog(reference)
    finally:
        pg_cluster.drop_database(reference.dbname)
    assert run_cli(pg_db, "migrate").returncode == 0  # and again: nothing to do


def test_old_rows_that_break_a_new_check_leave_it_not_valid_and_migrate_says_so(
    pg_db: Conn,
) -> None:
    at_first_release(pg_db)
    with connect(pg_db) as c:
        c.execute("INSERT INTO learnops_jobs (kind) VALUES ('Feedback')")  # waits forever today
    out = run_cli(pg_db, "migrate")
    assert out.returncode == 0, out.stderr
    assert "learnops_jobs_kind_check" in out.stderr
    assert scalar(
        pg_db,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'learnops_jobs_kind_check'",
    ) is False  # fmt: skip
    with connect(pg_db) as c, pytest.raises(psycopg.errors.CheckViolation):
        c.execute("INSERT INTO learnops_jobs (kind) VALUES ('Feedback')")  # new rows: refused


def test_an_interrupted_online_migration_runs_again(pg_db: Conn, tmp_path: Path) -> None:
    at_first_release(pg_db)
    with connect(pg_db) as c:
        assert migrate.apply(c, upto="0002") == ["0002_guards.sql"]
        # what a killed CREATE INDEX CONCURRENTLY leaves: an invalid index of that name
        c.execute(
            "CREATE INDEX learnops_jobs_dedupe_idx ON learnops_jobs (kind, dedupe_key) "
            "WHERE dedupe_key IS NOT NULL"
        )
        c.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'learnops_jobs_dedupe_idx'::regclass"
        )
    assert run_cli(pg_db, "migrate").returncode == 0
    assert scalar(
        pg_db,
        "SELECT indisunique AND indisvalid FROM pg_index "
        "WHERE indexrelid = 'learnops_jobs_dedupe_idx'::regclass",
    ) is True  # fmt: skip
