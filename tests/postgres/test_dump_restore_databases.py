"""Several databases in one run: each database's manifest line records its own row counts (in its
dump's snapshot), and a restore of one database's artifact checks the restored tables against
that database's counts, not another's."""

from __future__ import annotations

import json
import secrets

from psycopg import sql

from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, run_runner


def test_each_database_of_a_several_databases_backup_is_restored_against_its_own_row_counts(
    pg_cluster: PgCluster, dump_world: DumpWorld
) -> None:
    other = f"reports_{secrets.token_hex(3)}"
    pg_cluster.create_database(other)  # the sample tables, plus one more with its own rows
    with pg_cluster.connect(pg_cluster.admin.with_db(other)) as c:
        c.execute("CREATE TABLE public.reports AS SELECT g AS id FROM generate_series(1, 42) g")
        c.execute("DELETE FROM submissions WHERE id % 2 = 0")
    target = f"restored_{secrets.token_hex(3)}"
    try:
        env = dump_world.env(BACKUP_DATABASES=json.dumps([dump_world.conn.dbname, other]))
        done = run_runner(env)
        assert done.returncode == 0, done.stderr[-2000:]
        latest = json.loads((dump_world.storage / "t.latest.json").read_text())
        lines = {d["database"]: d for d in latest["databases"]}
        mine, theirs = lines[dump_world.conn.dbname], lines[other]
        assert theirs["tableRowCounts"]["public.reports"] == 42
        assert "public.reports" not in mine["tableRowCounts"]
        assert (
            theirs["tableRowCounts"]["public.submissions"]
            < mine["tableRowCounts"]["public.submissions"]
        )
        admin = DumpWorld(dump_world.base / "admin", pg_cluster.admin.with_db("postgres"))
        restore_env = admin.env(BACKUP_STORAGE_ROOT=str(dump_world.storage))
        restored = run_runner(
            restore_env, "restore", theirs["artifact"], "--target-db", target,
            "--policy", "create", "--allow-other-source",
        )  # fmt: skip
        summary = json.loads(admin.termlog.read_text())
        assert restored.returncode == 0, summary
        assert summary["checksPassed"] == ["restored", "tablesExist", "rowCounts"]
        assert summary["tablesChecked"] == len(theirs["tableRowCounts"])
        assert summary["rowsChecked"] == sum(theirs["tableRowCounts"].values())
        with pg_cluster.connect(pg_cluster.admin.with_db(target)) as c:
            row = c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("reports")))
            assert row.fetchone() == (42,)
    finally:
        pg_cluster.drop_database(target)
        pg_cluster.drop_database(other)
