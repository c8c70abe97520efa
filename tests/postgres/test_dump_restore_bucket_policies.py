"""`learnops-dump restore` from a bucket (SeaweedFS S3), encrypted with age: the same policies,
refusals and row-count checks as a PVC's artifact, and a stored object whose bytes are not the
backup's never completes a restore (its sha256 is checked before the stream's last chunk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import obstore
import pytest

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, run_runner
from tests.support.objects import AgeKey, elsewhere_env, object_env, table_fingerprints


@pytest.fixture
def backed_up(
    dump_world: DumpWorld, s3_server: ObjectServer, age_key: AgeKey, tmp_path: Path
) -> tuple[dict[str, str], str, dict[str, Any]]:
    """An encrypted backup in a fresh bucket: (its runner env, bucket, latest.json)."""
    bucket = f"t-{tmp_path.name[-10:].replace('_', '-').lower()}"
    s3_server.create_bucket(bucket)
    env = object_env(dump_world, s3_server, bucket, BACKUP_AGE_RECIPIENTS=age_key.recipient)
    proc = run_runner(env)
    assert proc.returncode == 0, proc.stderr
    latest: dict[str, Any] = json.loads(s3_server.read(bucket, "t.latest.json"))
    return env, bucket, latest


def _run(world: DumpWorld, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_runner(env, "restore", "--allow-other-source", *args)
    summary: dict[str, Any] = json.loads(world.termlog.read_text())
    return proc.returncode, summary


def _databases(cluster: PgCluster) -> set[str]:
    with cluster.connect() as c:
        return {str(r[0]) for r in c.execute("SELECT datname FROM pg_database").fetchall()}


def test_an_encrypted_bucket_artifact_restores_with_a_policy_and_its_row_counts_checked(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    scratch_cluster: PgCluster,
    backed_up: tuple[dict[str, str], str, dict[str, Any]],
    age_key: AgeKey,
    tmp_path: Path,
) -> None:
    env, bucket, latest = backed_up
    assert str(latest["artifact"]).endswith(".age")
    restore_env = elsewhere_env(env, scratch_cluster, tmp_path, age_key.identity)
    code, st = _run(dump_world, restore_env, "latest", "--target-db", "from_bucket", "--policy",
                    "create")  # fmt: skip
    try:
        assert code == 0, st
        assert (st["status"], st["policy"], st["artifact"]) == ("ok", "create", latest["artifact"])
        assert st["sha256"] == latest["sha256"]
        assert st["location"]["bucket"] == bucket
        assert st["checksPassed"] == ["restored", "tablesExist", "rowCounts"]
        assert st["tablesChecked"] == len(latest["tableRowCounts"])
        assert st["mismatches"] == []
        assert st["parallelJobs"] == 1  # a stream is not seekable: one job, one transaction
        assert table_fingerprints(pg_cluster, dump_world.conn) == table_fingerprints(
            scratch_cluster, scratch_cluster.admin.with_db("from_bucket")
        )
        # ifEmpty: the now-filled database is refused, untouched
        before = table_fingerprints(scratch_cluster, scratch_cluster.admin.with_db("from_bucket"))
        code, st = _run(dump_world, restore_env, "latest", "--target-db", "from_bucket")
        assert (code, st["reason"]) == (9, "TargetNotEmpty"), st
        assert "policy ifEmpty restores only into an empty database" in st["message"]
        after = table_fingerprints(scratch_cluster, scratch_cluster.admin.with_db("from_bucket"))
        assert after == before
        # create: an existing database is refused
        code, st = _run(dump_world, restore_env, "latest", "--target-db", "from_bucket",
                        "--policy", "create")  # fmt: skip
        assert (code, st["reason"]) == (9, "TargetExists"), st
        # clean: restores over it, the row counts match the manifest again
        code, st = _run(dump_world, restore_env, "latest", "--target-db", "from_bucket",
                        "--policy", "clean")  # fmt: skip
        assert code == 0, st
        assert st["mismatches"] == []
    finally:
        scratch_cluster.drop_database("from_bucket")


def test_an_encrypted_bucket_artifact_without_its_identity_is_refused_before_the_target(
    dump_world: DumpWorld,
    scratch_cluster: PgCluster,
    backed_up: tuple[dict[str, str], str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    env, _, _ = backed_up
    restore_env = elsewhere_env(env, scratch_cluster, tmp_path, None)
    code, st = _run(dump_world, restore_env, "latest", "--target-db", "no_identity", "--policy",
                    "create")  # fmt: skip
    assert (code, st["status"]) == (2, "failed"), st
    assert "BACKUP_AGE_IDENTITY_FILE" in st["message"]
    assert "no_identity" not in _databases(scratch_cluster)


@pytest.mark.parametrize("policy", ["create", "ifEmpty"])
def test_a_bucket_object_that_is_not_the_backup_never_completes_a_restore(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    scratch_cluster: PgCluster,
    s3_server: ObjectServer,
    tmp_path: Path,
    policy: str,
) -> None:
    # unencrypted (zstd only): nothing but the manifest's sha256 tells the bytes apart, and the
    # replaced bytes still decompress and restore
    bucket = f"t-{tmp_path.name[-10:].replace('_', '-').lower()}"
    s3_server.create_bucket(bucket)
    env = object_env(dump_world, s3_server, bucket)
    first = run_runner(env)
    assert first.returncode == 0, first.stderr
    good = json.loads(s3_server.read(bucket, "t.latest.json"))
    with pg_cluster.connect(pg_cluster.admin.with_db(dump_world.conn.dbname)) as c:
        c.execute("INSERT INTO courses (title) VALUES ('written after the first backup')")
    second = run_runner(env)
    assert second.returncode == 0, second.stderr
    newer = json.loads(s3_server.read(bucket, "t.latest.json"))
    # the newest object's bytes replaced by the older (valid) backup: a well-formed archive,
    # but not the one its manifest describes
    obstore.put(s3_server.store(bucket), newer["artifact"],
                s3_server.read(bucket, good["artifact"]))  # fmt: skip
    target = f"not_backup_{policy.lower()}"
    if policy == "ifEmpty":
        with scratch_cluster.connect() as c:
            c.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
    restore_env = elsewhere_env(env, scratch_cluster, tmp_path, None)
    try:
        code, st = _run(dump_world, restore_env, newer["artifact"], "--target-db", target,
                        "--policy", policy)  # fmt: skip
        assert (code, st["reason"]) == (7, "VerificationError"), st
        assert "sha256 differs from its manifest" in st["message"]
        if policy == "create":
            assert target not in _databases(scratch_cluster)  # dropped again
        else:
            with scratch_cluster.connect(scratch_cluster.admin.with_db(target)) as c:
                row = c.execute(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                ).fetchone()
            assert row == (0,)  # the transaction rolled back: still empty
    finally:
        scratch_cluster.drop_database(target)


def test_an_encrypted_artifact_copied_onto_a_claim_restores_with_its_identity(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    scratch_cluster: PgCluster,
    s3_server: ObjectServer,
    backed_up: tuple[dict[str, str], str, dict[str, Any]],
    age_key: AgeKey,
    tmp_path: Path,
) -> None:
    _, bucket, latest = backed_up
    storage = tmp_path / "claim"
    storage.mkdir()
    for key in s3_server.keys(bucket):  # the artifact, its manifest, latest.json
        (storage / key).write_bytes(s3_server.read(bucket, key))
    env = dump_world.env(BACKUP_STORAGE_ROOT=str(storage))
    restore_env = elsewhere_env(env, scratch_cluster, tmp_path, age_key.identity)
    code, st = _run(dump_world, restore_env, "latest", "--target-db", "from_claim", "--policy",
                    "create")  # fmt: skip
    try:
        assert code == 0, st
        assert (st["artifact"], st["sha256"]) == (latest["artifact"], latest["sha256"])
        assert st["checksPassed"] == ["restored", "tablesExist", "rowCounts"]
        assert table_fingerprints(pg_cluster, dump_world.conn) == table_fingerprints(
            scratch_cluster, scratch_cluster.admin.with_db("from_claim")
        )
    finally:
        scratch_cluster.drop_database("from_claim")
    # without the identity: refused before a database is made
    code, st = _run(dump_world, elsewhere_env(env, scratch_cluster, tmp_path, None), "latest",
                    "--target-db", "from_claim", "--policy", "create")  # fmt: skip
    assert (code, st["reason"]) == (2, "ConfigError"), st
    assert "from_claim" not in _databases(scratch_cluster)
