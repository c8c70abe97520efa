"""The runbook's restore procedure, run as written: its Job restores a real backup.

The Job is taken verbatim from docs/runbook.md; only what is site-specific there (namespace,
database host, port, user, sslmode, artifact name) is replaced with this test's values.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.fixtures_ship import yaml_objects
from tests.harness.containers import RUNTIME_UID, Engine
from tests.harness.dumpimage import build_dump_image
from tests.harness.kube import KubeCluster
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import Conn, PgCluster

REPO = Path(__file__).resolve().parents[2]
TABLES = ("courses", "tasks", "submissions")


def _runbook_job() -> dict[str, Any]:
    (job,) = [
        d
        for d in yaml_objects()
        if d["kind"] == "Job" and d["metadata"]["name"] == "learnops-restore"
    ]
    return copy.deepcopy(job)


def _counts(pg: PgCluster, conn: Conn) -> dict[str, int]:
    with pg.connect(conn) as c:
        count = sql.SQL("SELECT count(*) FROM {}")
        rows = {t: c.execute(count.format(sql.Identifier(t))).fetchone() for t in TABLES}
    return {t: int(row[0]) for t, row in rows.items() if row is not None}  # type: ignore[call-overload]


def test_the_runbooks_restore_job_restores_a_real_backup(
    kube_cluster: KubeCluster,
    container_engine: Engine,
    namespace: str,
    pod_runner: PodRunner | None,
    pg_cluster: PgCluster,
    pg_db: Conn,
    tmp_path: Path,
) -> None:
    if pod_runner is None:
        pytest.skip("needs the local PVC layout of the kubelet stand-in")
    job = _runbook_job()
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    image = container["image"]
    build_dump_image(container_engine, image)
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    sub_path = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])["subPath"]
    storage = pod_runner.pvc_dir(namespace, claim["persistentVolumeClaim"]["claimName"]) / sub_path
    storage.mkdir(parents=True)

    # A real backup of the source database into that PVC, as the backup pods write it.
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(pg_db.pgpass_line())
    pgpass.chmod(0o600)
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": pg_db.host,
        "PGPORT": str(pg_db.port),
        "PGDATABASE": pg_db.dbname,
        "PGUSER": pg_db.user,
        "PGPASSFILE": str(pgpass),
        "PGSSLMODE": "disable",
        "BACKUP_STORAGE_ROOT": str(storage),
        "BACKUP_PREFIX": "src",
        "BACKUP_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "TMPDIR": str(tmp_path),
    }
    subprocess.run(["learnops-dump", "run"], env=env, check=True, capture_output=True)
    artifact = json.loads((storage / "src.latest.json").read_text())["artifact"]
    for path in [storage, *storage.rglob("*")]:
        os.chown(path, RUNTIME_UID, RUNTIME_UID)

    # Step 2: the empty target database; step 3: the restore role's pgpass Secret.
    restorer = pg_cluster.create_user(
        f"restore_{namespace.replace('-', '_')}", "restore-pw", superuser=True
    )
    target = f"restored_{namespace.replace('-', '_')}"
    with pg_cluster.connect() as c:
        c.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
    secret = next(v for v in spec["volumes"] if "secret" in v)["secret"]["secretName"]
    kube_cluster.kubectl(
        "create",
        "secret",
        "generic",
        secret,
        "-n",
        namespace,
        "--from-file=pgpass=/dev/stdin",
        input=f"{restorer.host}:{restorer.port}:*:{restorer.user}:restore-pw\n",
    )
    kube_cluster.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim["persistentVolumeClaim"]["claimName"]},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ),
    )

    # Step 4: the runbook's Job with this site's values.
    job["metadata"]["namespace"] = namespace
    container["args"] = ["restore", artifact, "--target-db", target]
    site = {
        "PGHOST": restorer.host,
        "PGPORT": str(restorer.port),
        "PGUSER": restorer.user,
        "PGSSLMODE": "disable",
    }
    for item in container["env"]:
        item["value"] = site.get(item["name"], item["value"])
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    name = job["metadata"]["name"]
    deadline = time.monotonic() + 180
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and not (status.get("succeeded") or status.get("failed")):
        time.sleep(1)
        got = kube_cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout
        status = json.loads(got).get("status", {})
    assert status.get("succeeded") == 1, (status, pod_runner.errors)

    # Step 5: the restored database holds what the source held.
    assert _counts(pg_cluster, pg_db.with_db(target)) == _counts(pg_cluster, pg_db)
