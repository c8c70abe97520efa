"""`learnops-dump restore` and `drill` against real PostgreSQL: the manifest's row counts are the
dump's own (snapshot), every policy and refusal, the source guard, the row-count check, parallel
jobs, and drills on a second cluster that drop their scratch database whatever happens.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import DumpWorld, files_containing, pgpass_line, run_runner

TABLES = ("public.courses", "public.submissions", "public.tasks")


def _backup(world: DumpWorld, **env: str) -> dict[str, Any]:
    proc = run_runner(world.env(**env), "run")
    assert proc.returncode == 0, proc.stderr
    manifest: dict[str, Any] = json.loads((world.storage / "t.latest.json").read_text())
    return manifest


def _restore_elsewhere(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`learnops-dump restore` onto a server other than the backup's source."""
    return run_runner(env, "restore", "--allow-other-source", *args)


def _summary(world: DumpWorld) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(world.termlog.read_text())
    return data


def _counts(cluster: PgCluster, dbname: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with cluster.connect(cluster.admin.with_db(dbname)) as c:
        for table in TABLES:
            schema, name = table.split(".")
            row = c.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ).fetchone()
            assert row is not None
            out[table] = int(row[0])  # type: ignore[call-overload]
    return out


def _databases(cluster: PgCluster) -> set[str]:
    with cluster.connect() as c:
        return {str(r[0]) for r in c.execute("SELECT datname FROM pg_database").fetchall()}


def _target_env(world: DumpWorld, cluster: PgCluster, tmp: Path) -> dict[str, str]:
    """The restore's connection: the other cluster's superuser through a pgpass file."""
    admin = cluster.admin
    pgpass = tmp / "target-pgpass"
    # any host: tests reach the same server under another name, too
    pgpass.write_text(pgpass_line(Conn("*", admin.port, admin.user, admin.password, "*")))
    pgpass.chmod(0o600)
    return world.env(
        PGHOST=admin.host, PGPORT=str(admin.port), PGUSER=admin.user, PGPASSFILE=str(pgpass)
    )


def test_the_manifest_counts_rows_in_the_dumps_own_snapshot_despite_concurrent_writes(
    dump_world: DumpWorld, pg_cluster: PgCluster, pg_db: Conn, scratch_cluster: PgCluster,
    tmp_path: Path,
) -> None:  # fmt: skip
    stop = threading.Event()
    written = 0

    def writer() -> None:
        nonlocal written
        with pg_cluster.connect(pg_db) as c:
            while not stop.is_set():
                c.execute("INSERT INTO submissions (task_id, learner, answer) VALUES (1, 'w', 'a')")
                written += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        manifest = _backup(dump_world)
    finally:
        stop.set()
        thread.join(10)
    counts = manifest["tableRowCounts"]
    assert set(counts) >= set(TABLES)
    assert written > 0
    assert counts["public.submissions"] < _counts(pg_cluster, pg_db.dbname)["public.submissions"]
    assert manifest["systemIdentifier"].isdigit()
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    proc = _restore_elsewhere(
        env,
        "latest",
        "--target-db",
        "snap_copy",
        "--policy",
        "create",
    )
    assert proc.returncode == 0, proc.stderr
    summary = _summary(dump_world)
    assert summary["checksPassed"] == ["restored", "tablesExist", "rowCounts"]
    assert summary["tablesChecked"] == len(counts)
    assert {t: counts[t] for t in TABLES} == _counts(scratch_cluster, "snap_copy")
    scratch_cluster.drop_database("snap_copy")


def test_each_policy_restores_or_refuses_with_its_reason(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    db = f"policy_{tmp_path.name[-8:].replace('-', '_')}"

    def restore(*args: str) -> tuple[int, dict[str, Any]]:
        proc = _restore_elsewhere(env, manifest["artifact"], "--target-db", db, *args)
        return proc.returncode, _summary(dump_world)

    code, st = restore("--policy", "ifEmpty")
    assert (code, st["reason"]) == (9, "TargetMissing")
    code, st = restore("--policy", "create")
    assert (code, st["status"], st["policy"]) == (0, "ok", "create")
    assert st["sha256"] == manifest["sha256"]
    code, st = restore("--policy", "create")
    assert (code, st["reason"]) == (9, "TargetExists")
    code, st = restore()  # ifEmpty is the default
    assert (code, st["reason"]) == (9, "TargetNotEmpty")
    assert "holds" in st["message"]
    with scratch_cluster.connect(scratch_cluster.admin.with_db(db)) as c:
        c.execute("DELETE FROM submissions WHERE id % 2 = 0")
    code, st = restore("--policy", "clean")
    assert (code, st["status"]) == (0, "ok"), st
    assert _counts(scratch_cluster, db) == {t: manifest["tableRowCounts"][t] for t in TABLES}
    scratch_cluster.drop_database(db)


def test_the_source_database_is_refused_unless_allowed(
    dump_world: DumpWorld, pg_cluster: PgCluster, pg_db: Conn, tmp_path: Path
) -> None:
    _backup(dump_world)
    before = _counts(pg_cluster, pg_db.dbname)
    # the same cluster under another name for the host: the system identifier still tells
    pgpass = tmp_path / "any-host"
    conn = dump_world.conn
    pgpass.write_text(pgpass_line(Conn("*", conn.port, conn.user, conn.password, "*")))
    pgpass.chmod(0o600)
    env = dump_world.env(PGHOST="localhost", PGPASSFILE=str(pgpass))
    proc = _restore_elsewhere(
        env,
        "latest",
        "--target-db",
        pg_db.dbname,
        "--policy",
        "clean",
    )
    assert proc.returncode == 9, proc.stderr
    assert _summary(dump_world)["reason"] == "TargetIsSource"
    assert _counts(pg_cluster, pg_db.dbname) == before
    # another database on the source's server is not the source
    other = f"{pg_db.dbname[:40]}_copy"
    proc = run_runner(
        dump_world.env(), "restore", "latest", "--target-db", other, "--policy", "create",
        "--no-owner",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pg_cluster.drop_database(other)


def test_row_counts_that_differ_from_the_manifest_fail_and_drop_the_new_database(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    stem = manifest["artifact"].split(".dump")[0]
    path = dump_world.storage / f"{stem}.manifest.json"
    tampered = json.loads(path.read_text())
    tampered["tableRowCounts"]["public.tasks"] += 1
    tampered["tableRowCounts"]["public.gone"] = 3
    path.write_text(json.dumps(tampered))
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    proc = _restore_elsewhere(
        env,
        manifest["artifact"],
        "--target-db",
        "diff",
        "--policy",
        "create",
    )
    assert proc.returncode == 7, proc.stderr
    st = _summary(dump_world)
    assert st["reason"] == "VerificationError"
    assert sorted(st["mismatches"]) == [
        "public.gone: missing",
        f"public.tasks: {manifest['tableRowCounts']['public.tasks']} rows, manifest "
        f"{manifest['tableRowCounts']['public.tasks'] + 1}",
    ]
    assert "diff" not in _databases(scratch_cluster)  # nothing half-checked is left behind


def test_a_corrupted_artifact_is_refused_before_anything_is_created(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    artifact = dump_world.storage / manifest["artifact"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    proc = _restore_elsewhere(
        env,
        "latest",
        "--target-db",
        "corrupt",
        "--policy",
        "create",
    )
    assert proc.returncode == 7
    st = _summary(dump_world)
    assert "sha256 differs from its manifest" in st["message"]
    assert st["artifact"] == manifest["artifact"]  # `latest` resolved: the failure names it
    assert "corrupt" not in _databases(scratch_cluster)


def test_directory_artifacts_restore_with_parallel_jobs_and_schema_only_skips_rows(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    _backup(dump_world, BACKUP_FORMAT="directory", BACKUP_COMPRESSION="gzip:1")
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    proc = _restore_elsewhere(
        env,
        "latest",
        "--target-db",
        "par",
        "--policy",
        "create",
        "--jobs",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    assert _summary(dump_world)["parallelJobs"] == 4
    proc = _restore_elsewhere(env, "latest", "--target-db", "schema",
        "--policy", "create", "--schema-only", "--no-owner", "--role", scratch_cluster.admin.user,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    st = _summary(dump_world)
    assert st["checksPassed"] == ["restored", "tablesExist"]
    assert set(_counts(scratch_cluster, "schema").values()) == {0}
    for db in ("par", "schema"):
        scratch_cluster.drop_database(db)


def test_an_outer_compressed_artifact_restores_with_one_job(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    if not manifest["artifact"].endswith((".zst", ".lz4", ".gz")):
        pytest.skip("pg_dump compresses natively here; no outer compression to test")
    env = _target_env(dump_world, scratch_cluster, tmp_path)
    proc = _restore_elsewhere(
        env,
        "latest",
        "--target-db",
        "one",
        "--policy",
        "create",
        "--jobs",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    assert _summary(dump_world)["parallelJobs"] == 1
    scratch_cluster.drop_database("one")


# -- drills -----------------------------------------------------------------------------------
def _drill_env(world: DumpWorld, cluster: PgCluster, tmp: Path, **extra: str) -> dict[str, str]:
    env = _target_env(world, cluster, tmp)
    env["PGDATABASE"] = "postgres"
    env.update(extra)
    return env


def _scratch_left(cluster: PgCluster) -> set[str]:
    return {d for d in _databases(cluster) if d.startswith("learnops_drill_")}


def test_a_drill_restores_on_the_scratch_server_checks_everything_and_drops_it(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    assertions = json.dumps(
        [
            {"name": "five courses", "sql": "SELECT count(*) = 5 FROM courses"},
            {"name": "rubrics", "sql": "SELECT bool_and(rubric ? 'points') FROM tasks"},
        ]
    )
    env = _drill_env(dump_world, scratch_cluster, tmp_path, DRILL_ASSERTIONS=assertions)
    proc = run_runner(env, "drill", "latest")
    assert proc.returncode == 0, proc.stderr
    st = _summary(dump_world)
    assert (st["kind"], st["artifact"], st["sha256"]) == (
        "drill",
        manifest["artifact"],
        manifest["sha256"],
    )
    assert st["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts",
        "assertion:five courses", "assertion:rubrics",
    ]  # fmt: skip
    assert st["tablesChecked"] == len(manifest["tableRowCounts"])
    assert st["scratchDropped"] is True
    assert not _scratch_left(scratch_cluster)
    assert not files_containing(dump_world.storage, dump_world.secrets())
    assert not any(s in dump_world.termlog.read_text() for s in dump_world.secrets())


@pytest.mark.parametrize("how", ["same-endpoint", "same-cluster-other-name"])
def test_a_drill_never_runs_on_the_source_server(
    dump_world: DumpWorld, pg_cluster: PgCluster, tmp_path: Path, how: str
) -> None:
    _backup(dump_world)
    host = dump_world.conn.host if how == "same-endpoint" else "localhost"
    env = _drill_env(dump_world, pg_cluster, tmp_path, PGHOST=host)
    proc = run_runner(env, "drill", "latest")
    assert proc.returncode == 9, proc.stderr
    st = _summary(dump_world)
    assert st["reason"] == "ScratchIsSource"
    assert ("host and port" in st["message"]) == (how == "same-endpoint")
    assert not _scratch_left(pg_cluster)


def test_a_drill_of_a_corrupted_artifact_or_a_false_assertion_fails_and_leaves_nothing(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    manifest = _backup(dump_world)
    env = _drill_env(
        dump_world,
        scratch_cluster,
        tmp_path,
        DRILL_ASSERTIONS=json.dumps(
            [{"name": "no courses", "sql": "SELECT count(*) = 0 FROM courses"}]
        ),
    )
    proc = run_runner(env, "drill", manifest["artifact"])
    assert proc.returncode == 7
    st = _summary(dump_world)
    assert "assertion 'no courses' did not return true" in st["message"]
    assert st["checksPassed"] == ["checksum", "restored", "tablesExist", "rowCounts"]
    assert not _scratch_left(scratch_cluster)
    copy = dump_world.storage / manifest["artifact"]
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0x55
    copy.write_bytes(bytes(data))
    proc = run_runner(_drill_env(dump_world, scratch_cluster, tmp_path), "drill", "latest")
    assert proc.returncode == 7
    st = _summary(dump_world)
    assert (st["reason"], st.get("checksPassed")) == ("VerificationError", None)
    assert "sha256 differs from its manifest" in st["message"]
    # `latest` resolved before the check failed: the failure names the artifact it failed on
    # (the operator's lastFailedDrill.artifact of a scheduled drill comes from here)
    assert st["artifact"] == manifest["artifact"]
    assert not _scratch_left(scratch_cluster)


def test_a_drill_refuses_a_manifest_without_row_counts(
    dump_world: DumpWorld, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    _backup(dump_world, BACKUP_ROW_COUNTS="false")
    proc = run_runner(_drill_env(dump_world, scratch_cluster, tmp_path), "drill", "latest")
    assert proc.returncode == 2
    assert "tableRowCounts" in _summary(dump_world)["message"]
    shutil.rmtree(dump_world.storage)
