"""Restore round-trip (row counts and per-table checksums) and flat memory on a big database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from psycopg import sql

from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import (
    DumpWorld,
    ProcSampler,
    create_dump_role,
    pgpass_line,
    run_runner,
    start_runner,
)

RSS_BOUND_KIB = 50 * 1024


def table_fingerprints(pg_cluster: PgCluster, conn: Conn) -> dict[str, tuple[int, str]]:
    """(row count, md5 over all rows in text order) for every user table."""
    out: dict[str, tuple[int, str]] = {}
    with pg_cluster.connect(conn) as c:
        tables = [
            str(r[0])
            for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        for table in tables:
            row = c.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone()
            assert row is not None
            out[table] = (int(str(row[0])), str(row[1]))
    return out


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [("custom", "zstd:3"), ("plain", "lz4:1"), ("directory", "gzip:1"), ("custom", "gzip:6")],
)
def test_a_restored_backup_equals_its_source(
    dump_world: DumpWorld, pg_cluster: PgCluster, fmt: str, compression: str
) -> None:
    source = pg_cluster.admin.with_db(dump_world.conn.dbname)
    with pg_cluster.connect(source) as c:  # something beyond the sample tables
        c.execute(
            "CREATE TABLE extra AS SELECT g AS id, md5(g::text) AS v"
            " FROM generate_series(1, 3000) g"
        )
    env = dump_world.env(BACKUP_FORMAT=fmt, BACKUP_COMPRESSION=compression, BACKUP_VERIFY="restore")
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((dump_world.storage / "t.latest.json").read_text())
    assert manifest["verification"]["mode"] == "restore"
    assert manifest["verification"]["tables"] == 4
    # restore as the superuser (ownership) into a new, empty database
    target = f"{dump_world.conn.dbname}_restored"[:63]
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    try:
        admin_pgpass = dump_world.base / "admin-pgpass"
        admin_pgpass.write_text(pgpass_line(pg_cluster.admin, "*"))
        admin_pgpass.chmod(0o600)
        restore_env = {
            **env,
            "PGUSER": pg_cluster.admin.user,
            "PGPASSFILE": str(admin_pgpass),
        }
        restored = run_runner(restore_env, "restore", manifest["artifact"], "--target-db", target)
        assert restored.returncode == 0, restored.stderr
        assert table_fingerprints(pg_cluster, source) == table_fingerprints(
            pg_cluster, pg_cluster.admin.with_db(target)
        )
    finally:
        pg_cluster.drop_database(target)
    with pg_cluster.connect() as c:  # the scratch database of the verification is gone
        left = c.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'learnops_verify_%'")
        assert left.fetchone() == (0,)


def test_the_runner_memory_stays_flat_on_a_big_database(
    pg_cluster: PgCluster, big_db: str, tmp_path: Path
) -> None:
    size = pg_cluster.database_size(big_db)
    assert size >= 10 * RSS_BOUND_KIB * 1024
    world = DumpWorld(tmp_path, create_dump_role(pg_cluster, big_db, createdb=False))
    # uncompressed: every byte of the dump passes through the runner
    env = world.env(BACKUP_COMPRESSION="none", BACKUP_TIMEOUT_SECONDS="600")
    peak = 0
    with ProcSampler(world.secrets()) as sampler:
        proc = start_runner(env)
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                break
            time.sleep(0.05)
        _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    manifest = json.loads((world.storage / "t.latest.json").read_text())
    print(
        f"\ndatabase {size / 2**20:.0f} MiB, artifact {manifest['sizeBytes'] / 2**20:.0f} MiB,"
        f" runner peak RSS {peak / 1024:.1f} MiB"
    )
    assert 0 < peak <= RSS_BOUND_KIB
    assert sampler.hits == []
