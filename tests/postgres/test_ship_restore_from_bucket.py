"""The runbook's restore-from-bucket Job, run as written against SeaweedFS and PostgreSQL.

The Job's container args and env are taken verbatim from docs/runbook.md; only what is
site-specific there (endpoint, bucket, prefix, database host, port, user, sslmode) is replaced
with this test's values, and its Secret volumes are laid out as files at the paths the Job
mounts them (here under a temp dir). The e2e tier runs the same Job's image in a pod.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, pgpass_line, run_runner
from tests.support.objects import AgeKey, object_env, table_fingerprints
from tests.support.ship import yaml_objects


def _job() -> dict[str, object]:
    (job,) = [
        d
        for d in yaml_objects()
        if d["kind"] == "Job" and d["metadata"]["name"] == "learnops-restore-from-bucket"
    ]
    return job


def test_the_runbooks_restore_from_bucket_job_restores_an_encrypted_backup(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    age_key: AgeKey,
    tmp_path: Path,
) -> None:
    bucket = bucket_of(s3_server)
    # A real, encrypted backup as a DatabaseBackup with prefix "prod/" writes it.
    backup_env = object_env(
        dump_world, s3_server, bucket,
        BACKUP_OBJECT_PREFIX="prod/", BACKUP_AGE_RECIPIENTS=age_key.recipient,
    )  # fmt: skip
    made = run_runner(backup_env)
    assert made.returncode == 0, made.stderr

    spec = _job()["spec"]["template"]["spec"]  # type: ignore[index]
    (container,) = spec["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    # Secret volumes -> files at the mounted paths, re-rooted under tmp_path.
    root = tmp_path / "mounts"

    def local(path: str) -> Path:
        return root / path.lstrip("/")

    creds = local(env["BACKUP_CREDENTIALS_DIR"])
    creds.mkdir(parents=True)
    for name in ("accessKeyId", "secretAccessKey"):
        (creds / name).write_bytes((s3_server.credentials / name).read_bytes())
    identity = local(env["BACKUP_AGE_IDENTITY_FILE"])
    identity.parent.mkdir(parents=True)
    identity.write_bytes(age_key.identity.read_bytes())
    passfile = local(env["PGPASSFILE"])
    passfile.parent.mkdir(parents=True)
    passfile.write_text(pgpass_line(pg_cluster.admin, "*"))
    passfile.chmod(0o600)
    target = "learnops_restored"
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    try:
        site = {
            "BACKUP_BUCKET": bucket,
            "BACKUP_PREFIX": "t",  # the DatabaseBackup's name (DumpWorld's prefix)
            "BACKUP_OBJECT_ENDPOINT": s3_server.endpoint,
            "PGHOST": pg_cluster.admin.host,
            "PGPORT": str(pg_cluster.admin.port),
            "PGUSER": pg_cluster.admin.user,
            "PGSSLMODE": "disable",
            "BACKUP_CREDENTIALS_DIR": str(creds),
            "BACKUP_AGE_IDENTITY_FILE": str(identity),
            "PGPASSFILE": str(passfile),
            "TMPDIR": str(dump_world.tmp),
        }
        assert env["BACKUP_OBJECT_PREFIX"] == "prod/"  # the runbook's, kept as written
        run_env = {**env, **site, "PATH": os.environ["PATH"]}
        restored = run_runner(run_env, *container["args"])
        assert restored.returncode == 0, restored.stderr
        source = pg_cluster.admin.with_db(dump_world.conn.dbname)
        assert table_fingerprints(pg_cluster, source) == table_fingerprints(
            pg_cluster, pg_cluster.admin.with_db(target)
        )
        assert json.loads(s3_server.read(bucket, "prod/t.latest.json"))["status"] == "ok"
    finally:
        pg_cluster.drop_database(target)
