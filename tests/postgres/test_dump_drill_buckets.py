"""`learnops-dump drill` of artifacts in a bucket (SeaweedFS S3), plain and age-encrypted: the same
guarantees as a PVC drill (the source refused, every table there, row counts, assertions, the
scratch database dropped), and an object whose bytes are not the backup's fails the drill.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore
import pytest
from psycopg import sql

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import DumpWorld, canary_password, run_runner, secret_forms
from tests.support.objects import AgeKey, elsewhere_env, object_env

ASSERTION = {"name": "five courses", "sql": "SELECT count(*) = 5 FROM courses"}


@pytest.fixture
def drill_login(scratch_cluster: PgCluster) -> Iterator[Conn]:
    """The drill's own role on the scratch server, with a canary password of its own."""
    name = f"driller_{secrets.token_hex(4)}"
    conn = scratch_cluster.create_user(name, canary_password(), superuser=True)
    yield conn
    with scratch_cluster.connect() as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _bucket(server: ObjectServer) -> str:
    name = f"drill-{secrets.token_hex(6)}"  # the server lives for the session
    server.create_bucket(name)
    return name


@pytest.fixture
def plain_bucket(dump_world: DumpWorld, s3_server: ObjectServer) -> tuple[str, dict[str, str]]:
    """A fresh bucket for unencrypted backups: (its name, the runner env that writes to it)."""
    bucket = _bucket(s3_server)
    return bucket, object_env(dump_world, s3_server, bucket)


def _backup(env: dict[str, str], server: ObjectServer, bucket: str) -> dict[str, Any]:
    proc = run_runner(env)
    assert proc.returncode == 0, proc.stderr
    latest: dict[str, Any] = json.loads(server.read(bucket, "t.latest.json"))
    return latest


def _drill(
    world: DumpWorld, env: dict[str, str], artifact: str = "latest"
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = run_runner(env, "drill", artifact)
    summary: dict[str, Any] = json.loads(world.termlog.read_text())
    return proc, summary


def _drill_env(
    env: dict[str, str],
    scratch: PgCluster,
    tmp: Path,
    identity: Path | None = None,
    login: Conn | None = None,
    **extra: str,
) -> dict[str, str]:
    """A role on the scratch server; its maintenance database (the drill makes its own)."""
    out = elsewhere_env(env, scratch, tmp, identity, login)
    out["PGDATABASE"] = "postgres"
    out["DRILL_ASSERTIONS"] = json.dumps([ASSERTION])
    out.update(extra)
    return out


def _scratch_left(cluster: PgCluster) -> list[str]:
    with cluster.connect() as c:
        rows = c.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'learnops\\_drill\\_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _leaks(
    world: DumpWorld, login: Conn, server: ObjectServer, bucket: str, *texts: str
) -> list[str]:
    """Where a spelling of a canary password (the backup's or the drill's) shows up: the given
    output, any object in the bucket."""
    needles = [*world.secrets(), *secret_forms(login.password)]
    found = [t[:80] for t in texts if any(s in t for s in needles)]
    for key in server.keys(bucket):
        data = server.read(bucket, key)
        found += [key for s in needles if s.encode() in data]
    return found


def test_a_drill_of_a_bucket_artifact_restores_checks_everything_and_drops_its_scratch_database(
    dump_world: DumpWorld,
    scratch_cluster: PgCluster,
    s3_server: ObjectServer,
    plain_bucket: tuple[str, dict[str, str]],
    drill_login: Conn,
    tmp_path: Path,
) -> None:
    bucket, env = plain_bucket
    latest = _backup(env, s3_server, bucket)
    drill_env = _drill_env(env, scratch_cluster, tmp_path, login=drill_login)
    proc, st = _drill(dump_world, drill_env)
    assert proc.returncode == 0, st
    assert (st["kind"], st["status"], st["artifact"]) == ("drill", "ok", latest["artifact"])
    assert (st["sha256"], st["sizeBytes"]) == (latest["sha256"], latest["sizeBytes"])
    assert st["location"]["bucket"] == bucket
    assert st["location"]["key"].endswith(latest["artifact"])
    assert st["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts", "assertion:five courses",
    ]  # fmt: skip
    assert st["tablesChecked"] == len(latest["tableRowCounts"])
    assert st["mismatches"] == []
    assert st["scratchDropped"] is True
    assert st["scratchDatabase"].startswith("learnops_drill_")
    assert _scratch_left(scratch_cluster) == []
    texts = (proc.stdout, proc.stderr, dump_world.termlog.read_text())
    assert _leaks(dump_world, drill_login, s3_server, bucket, *texts) == []


def test_an_encrypted_bucket_artifact_drills_with_its_identity_and_is_refused_without_it(
    dump_world: DumpWorld,
    scratch_cluster: PgCluster,
    s3_server: ObjectServer,
    age_key: AgeKey,
    drill_login: Conn,
    tmp_path: Path,
) -> None:
    bucket = _bucket(s3_server)
    env = object_env(dump_world, s3_server, bucket, BACKUP_AGE_RECIPIENTS=age_key.recipient)
    latest = _backup(env, s3_server, bucket)
    assert str(latest["artifact"]).endswith(".age")
    with_identity = _drill_env(env, scratch_cluster, tmp_path, age_key.identity, drill_login)
    proc, st = _drill(dump_world, with_identity)
    assert proc.returncode == 0, st
    assert (st["artifact"], st["sha256"]) == (latest["artifact"], latest["sha256"])
    assert st["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts", "assertion:five courses",
    ]  # fmt: skip
    assert _scratch_left(scratch_cluster) == []
    # without the identity: refused before the scratch server is touched
    proc, st = _drill(dump_world, _drill_env(env, scratch_cluster, tmp_path, login=drill_login))
    assert (proc.returncode, st["status"], st["reason"]) == (2, "failed", "ConfigError"), st
    assert "BACKUP_AGE_IDENTITY_FILE" in st["message"]
    assert "scratchDatabase" not in st
    assert _scratch_left(scratch_cluster) == []
    texts = (proc.stdout, proc.stderr, dump_world.termlog.read_text())
    assert _leaks(dump_world, drill_login, s3_server, bucket, *texts) == []
    assert not any(age_key.secret_line in t for t in texts)


def test_a_bucket_object_that_is_not_the_backup_fails_the_drill_and_leaves_no_scratch_database(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    scratch_cluster: PgCluster,
    s3_server: ObjectServer,
    plain_bucket: tuple[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    # the newest object's bytes replaced by an older valid backup: it decompresses, restores and
    # even has the same tables; only the manifest's sha256 tells it apart
    bucket, env = plain_bucket
    good = _backup(env, s3_server, bucket)
    with pg_cluster.connect(pg_cluster.admin.with_db(dump_world.conn.dbname)) as c:
        c.execute("INSERT INTO courses (title) VALUES ('written after the first backup')")
    newer = _backup(env, s3_server, bucket)
    obstore.put(s3_server.store(bucket), newer["artifact"],
                s3_server.read(bucket, good["artifact"]))  # fmt: skip
    drill_env = _drill_env(env, scratch_cluster, tmp_path, DRILL_ASSERTIONS="")
    proc, st = _drill(dump_world, drill_env)
    assert (proc.returncode, st["reason"]) == (7, "VerificationError"), st
    assert "sha256 differs from its manifest" in st["message"]
    assert st["artifact"] == newer["artifact"]
    assert st["checksPassed"] == []  # not even "restored": the transaction rolled back
    assert st["scratchDropped"] is True
    assert _scratch_left(scratch_cluster) == []
    # the untouched older artifact still drills (by name)
    proc, st = _drill(dump_world, drill_env, good["artifact"])
    assert proc.returncode == 0, st
    assert _scratch_left(scratch_cluster) == []


@pytest.mark.parametrize("how", ["same-endpoint", "same-cluster-other-name"])
def test_a_bucket_drill_never_runs_on_the_source_server(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    s3_server: ObjectServer,
    plain_bucket: tuple[str, dict[str, str]],
    tmp_path: Path,
    how: str,
) -> None:
    bucket, env = plain_bucket
    _backup(env, s3_server, bucket)
    host = dump_world.conn.host if how == "same-endpoint" else "localhost"
    proc, st = _drill(dump_world, _drill_env(env, pg_cluster, tmp_path, PGHOST=host))
    assert (proc.returncode, st["reason"]) == (9, "ScratchIsSource"), st
    assert ("host and port" in st["message"]) == (how == "same-endpoint")
    assert _scratch_left(pg_cluster) == []
