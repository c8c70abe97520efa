"""Smoke tests for the throwaway PostgreSQL of the test ground."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.harness.postgres import SUPPORTED_MAJORS, Conn, PgCluster, bindir_major, pg_bindir


def test_a_user_authenticates_with_its_password_and_not_without(pg_cluster: PgCluster) -> None:
    conn = pg_cluster.create_user("smoke_user", "right-password")
    with psycopg.connect(**conn.kwargs()) as c:  # type: ignore[arg-type]
        assert c.execute("SELECT current_user").fetchone() == ("smoke_user",)
    wrong = Conn(conn.host, conn.port, conn.user, "wrong-password", conn.dbname)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**wrong.kwargs())  # type: ignore[arg-type]
    nopw = {k: v for k, v in conn.kwargs().items() if k != "password"}
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**nopw, passfile="/nonexistent")  # type: ignore[arg-type]


def test_each_test_gets_a_fresh_database_with_sample_data(pg_db: Conn) -> None:
    with psycopg.connect(**pg_db.kwargs(), autocommit=True) as c:  # type: ignore[arg-type]
        assert c.execute("SELECT count(*) FROM submissions").fetchone() == (500,)
        c.execute("DELETE FROM submissions")
    # the template is untouched, so the next test sees all rows again


def test_fill_adds_about_the_requested_size(pg_cluster: PgCluster, pg_db: Conn) -> None:
    before = pg_cluster.database_size(pg_db.dbname)
    pg_cluster.fill_mb(pg_db.dbname, 15)
    grown = pg_cluster.database_size(pg_db.dbname) - before
    assert 10 * 2**20 < grown < 40 * 2**20


def test_the_session_server_is_the_major_learnops_pg_major_asks_for(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make test-worker-majors` relies on this: LEARNOPS_PG_MAJOR=13 really means a 13 server."""
    with pg_cluster.connect() as c:
        row = c.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
    assert row == (pg_cluster.major,)
    asked = os.environ.get("LEARNOPS_PG_MAJOR")
    if asked:
        assert pg_cluster.major == int(asked)
    for major in SUPPORTED_MAJORS:
        monkeypatch.setenv("LEARNOPS_PG_MAJOR", str(major))
        monkeypatch.delenv("PG_BINDIR", raising=False)
        bindir = pg_bindir()
        if bindir is not None:  # installed by make deps; the matrix tests fail without it
            assert bindir_major(bindir) == major
