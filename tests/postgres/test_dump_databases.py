"""Several databases in one run (BACKUP_DATABASES / BACKUP_ALL_DATABASES): each its own artifact
and manifest line, one deadline, one failing database fails the run and is named."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from tests.harness.dumpimage import CI_MAJORS
from tests.harness.postgres import PgCluster
from tests.support.dump import (
    DumpWorld,
    client_dirs,
    locked,
    run_runner,
    table_checksums,
)

ODD_NAME = "Kurs 2026/ä b.c"  # not file-name safe: '/', '.', space, non-ASCII


def _databases(cluster: PgCluster, *names: str) -> list[str]:
    for name in names:
        cluster.create_database(name)
    return list(names)


def _drop(cluster: PgCluster, names: list[str]) -> None:
    for name in names:
        cluster.drop_database(name)


def test_listed_databases_are_each_their_own_artifact_and_manifest_line(
    pg_cluster: PgCluster, dump_world: DumpWorld
) -> None:
    suffix = secrets.token_hex(3)
    names = _databases(pg_cluster, f"reports_{suffix}", f"{ODD_NAME} {suffix}")
    try:
        env = dump_world.env(BACKUP_DATABASES=json.dumps([dump_world.conn.dbname, *names]))
        done = run_runner(env)
        assert done.returncode == 0, done.stderr[-2000:]
        term = json.loads(dump_world.termlog.read_text())
        (manifest_path,) = [
            p for p in dump_world.storage.glob("t-*.manifest.json") if ".globals" not in p.name
        ]
        manifest = json.loads(manifest_path.read_text())
        stem = manifest_path.name.removesuffix(".manifest.json")
        lines = manifest["databases"]
        assert [d["database"] for d in lines] == [dump_world.conn.dbname, *names]
        assert [d["database"] for d in term["databases"]] == [d["database"] for d in lines]
        artifacts = [d["artifact"] for d in lines]
        assert len(set(artifacts)) == 3
        for line in lines:
            assert line["status"] == "ok"
            assert line["artifact"].startswith(stem + ".")
            assert "/" not in line["artifact"]
            data = (dump_world.storage / line["artifact"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == line["sha256"]
            assert line["verification"]["mode"] == "list"
        assert term["artifact"] is None  # the per-database lines name them
        assert term["sizeBytes"] == sum(d["sizeBytes"] for d in lines)
        # the odd name restores from its own artifact, checked against the run's manifest
        odd = next(d for d in lines if d["database"] == names[1])
        target = f"restored_{suffix}"
        with pg_cluster.connect() as c:
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                sql.Identifier(target)))  # fmt: skip
        admin = DumpWorld(dump_world.base / "admin", pg_cluster.admin.with_db(target))
        restore_env = admin.env(BACKUP_STORAGE_ROOT=str(dump_world.storage))
        restored = run_runner(
            restore_env, "restore", odd["artifact"], "--target-db", target, "--allow-other-source"
        )
        assert restored.returncode == 0, restored.stderr[-2000:]
        assert table_checksums(pg_cluster, target) == table_checksums(pg_cluster, names[1])
        pg_cluster.drop_database(target)
    finally:
        _drop(pg_cluster, names)


def test_all_databases_covers_every_connectable_non_template_database(
    pg_majors: Callable[[int], PgCluster], tmp_path: Path
) -> None:
    cluster = pg_majors(17)
    suffix = secrets.token_hex(3)
    names = _databases(cluster, f"a_{suffix}", f"b_{suffix}", f"closed_{suffix}", f"tpl_{suffix}")
    try:
        with cluster.connect() as c:
            c.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                sql.Identifier(names[2])))  # fmt: skip
            c.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(
                sql.Identifier(names[3])))  # fmt: skip
            expected = [
                str(r[0])
                for r in c.execute(
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
                    " ORDER BY datname"
                )
            ]
        assert names[0] in expected
        assert names[2] not in expected
        assert names[3] not in expected
        world = DumpWorld(tmp_path, cluster.admin)
        clients = client_dirs(tmp_path, CI_MAJORS)
        done = run_runner(
            world.env(
                BACKUP_ALL_DATABASES="true", BACKUP_VERIFY="none", BACKUP_PG_CLIENT_DIRS=clients
            )
        )
        assert done.returncode == 0, done.stderr[-2000:]
        term = json.loads(world.termlog.read_text())
        assert [d["database"] for d in term["databases"]] == expected
        assert all(d["status"] == "ok" for d in term["databases"])
    finally:
        with cluster.connect() as c:
            c.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(
                sql.Identifier(names[3])))  # fmt: skip
        _drop(cluster, names)


def test_one_failing_database_fails_the_run_and_names_it(
    pg_cluster: PgCluster, dump_world: DumpWorld
) -> None:
    suffix = secrets.token_hex(3)
    names = _databases(pg_cluster, f"good_{suffix}", f"secret_{suffix}")
    try:
        with pg_cluster.connect() as c:  # the backup role may not connect to the second one
            c.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(names[1])))  # fmt: skip
        env = dump_world.env(BACKUP_DATABASES=json.dumps([names[1], names[0]]))
        done = run_runner(env)
        term = json.loads(dump_world.termlog.read_text())
        assert done.returncode == 4
        assert (term["status"], term["reason"]) == ("failed", "DumpError")
        assert f"database {names[1]!r}" in term["message"]
        assert names[0] not in term["message"]
        by_name = {d["database"]: d for d in term["databases"]}
        assert by_name[names[1]]["status"] == "failed"
        assert by_name[names[0]]["status"] == "ok"
        # a failed run publishes nothing (no file a failed manifest would vouch for)
        assert "artifact" not in by_name[names[0]]
        assert not [p for p in dump_world.storage.iterdir() if ".dump" in p.name]
        assert not list(dump_world.storage.glob("*latest.json"))
    finally:
        _drop(pg_cluster, names)


def test_one_deadline_covers_every_database_and_names_the_one_it_stopped(
    pg_cluster: PgCluster, dump_world: DumpWorld
) -> None:
    suffix = secrets.token_hex(3)
    names = _databases(pg_cluster, f"fast_{suffix}", f"slow_{suffix}", f"never_{suffix}")
    try:
        env = dump_world.env(BACKUP_DATABASES=json.dumps(names), BACKUP_TIMEOUT_SECONDS="4")
        with locked(pg_cluster, names[1]):
            started = time.monotonic()
            done = run_runner(env)
            elapsed = time.monotonic() - started
        term = json.loads(dump_world.termlog.read_text())
        assert done.returncode == 5
        assert f"database {names[1]!r}" in term["message"]
        assert [d["database"] for d in term["databases"]] == names[:2]  # the third never ran
        assert elapsed < 30  # bounded by the one deadline (4 s + kill grace), not per database
        assert not [p for p in dump_world.storage.iterdir() if p.name.startswith(".tmp-")]
    finally:
        _drop(pg_cluster, names)


def test_retention_removes_a_runs_database_artifacts_and_globals_together(
    pg_cluster: PgCluster, dump_world: DumpWorld
) -> None:
    suffix = secrets.token_hex(3)
    names = _databases(pg_cluster, f"one_{suffix}", f"two_{suffix}")
    try:
        env = dump_world.env(
            BACKUP_DATABASES=json.dumps(names),
            BACKUP_GLOBALS="true",
            BACKUP_RETENTION="last=1",
            BACKUP_VERIFY="none",
        )
        first = run_runner(env)
        assert first.returncode == 0, first.stderr[-2000:]
        before = {p.name for p in dump_world.storage.iterdir() if not p.name.startswith(".")}
        assert len([n for n in before if n.endswith(".globals.sql")]) == 1
        second = run_runner(env)
        assert second.returncode == 0, second.stderr[-2000:]
        after = {p.name for p in dump_world.storage.iterdir() if not p.name.startswith(".")}
        latest = json.loads((dump_world.storage / "t.latest.json").read_text())
        stem = latest["globals"]["artifact"].removesuffix(".globals.sql")
        assert after == {
            "t.latest.json",
            f"{stem}.manifest.json",
            f"{stem}.globals.sql",
            f"{stem}.globals.manifest.json",
            *(d["artifact"] for d in latest["databases"]),
        }
        assert not before & after - {"t.latest.json"}
    finally:
        _drop(pg_cluster, names)
