"""The runbook's restore procedure, run as written on a real kubelet: its Job restores a real
backup that a DatabaseBackup's pod wrote into `storage.subPath` of a local-path volume (which
ignores fsGroup, so the runner must make that directory itself).

The Job is taken verbatim from docs/runbook.md; only what is site-specific there (namespace,
database host, port, user, sslmode, artifact name) is replaced with this test's values.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

from psycopg import sql

from tests.harness.kube import KubeCluster
from tests.harness.platform import Platform
from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess
from tests.support.ship import yaml_objects

TABLES = ("courses", "tasks", "submissions")


def _runbook_job() -> dict[str, Any]:
    (job,) = [
        d
        for d in yaml_objects()
        if d["kind"] == "Job" and d["metadata"]["name"] == "learnops-restore"
    ]
    return copy.deepcopy(job)


def _counts(pg: PodPostgres, conn: Conn) -> dict[str, int]:
    with pg.connect(conn) as c:
        count = sql.SQL("SELECT count(*) FROM {}")
        rows = {t: c.execute(count.format(sql.Identifier(t))).fetchone() for t in TABLES}
    return {t: int(row[0]) for t, row in rows.items() if row is not None}  # type: ignore[call-overload]


def test_the_runbooks_restore_job_restores_a_backup_made_into_a_subpath(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    platform: Platform,
    pg_cluster: PodPostgres,
    pg_db: Conn,
) -> None:
    job = _runbook_job()
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    claim_name = claim["persistentVolumeClaim"]["claimName"]
    sub_path = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])["subPath"]
    ns = Namespace(kube_cluster, namespace)
    ns.add_pvc(claim_name)

    # Step 1: a real backup by the operator's pod, into storage.subPath of that claim.
    password = f"backup-{secrets.token_hex(6)}"
    role = f"backup_{secrets.token_hex(4)}"
    pg_cluster.create_user(role, password)
    with pg_cluster.connect(pg_db) as c:
        c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    source = pg_cluster.in_cluster(Conn(pg_db.host, pg_db.port, role, password, pg_db.dbname))
    storage = {"persistentVolumeClaim": {"claimName": claim_name}, "subPath": sub_path}
    ns.declare_backup(source, password, "src", storage=storage)
    st = ns.run_now("src", "restore-1", timeout=180)
    assert st["lastResult"] == "Succeeded", st
    artifact = st["lastSuccessfulBackup"]["artifact"]
    files = platform.volume_files(namespace, claim_name)
    assert f"{sub_path}/{artifact}" in files
    assert f"{sub_path}/src.latest.json" in files

    # Step 2: the empty target database; step 3: the restore role's pgpass Secret.
    restorer = pg_cluster.create_user(
        f"restore_{namespace.replace('-', '_')}", "restore-pw", superuser=True
    )
    target = f"restored_{namespace.replace('-', '_')}"
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    in_cluster = pg_cluster.in_cluster(restorer)
    secret = next(v for v in spec["volumes"] if "secret" in v)["secret"]["secretName"]
    kube_cluster.kubectl(
        "create", "secret", "generic", secret, "-n", namespace, "--from-file=pgpass=/dev/stdin",
        input=f"{in_cluster.host}:{in_cluster.port}:*:{in_cluster.user}:restore-pw\n",
    )  # fmt: skip

    # Step 4: the runbook's Job with this site's values.
    job["metadata"]["namespace"] = namespace
    container["args"] = ["restore", artifact, "--target-db", target]
    site = {
        "PGHOST": in_cluster.host,
        "PGPORT": str(in_cluster.port),
        "PGUSER": in_cluster.user,
        "PGSSLMODE": "disable",
    }
    for item in container["env"]:
        item["value"] = site.get(item["name"], item["value"])
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    name = job["metadata"]["name"]

    def finished() -> dict[str, Any] | None:
        got = kube_cluster.read("job", name, namespace=namespace) or {}
        status: dict[str, Any] = got.get("status", {})
        return status if status.get("succeeded") or status.get("failed") else None

    status = wait_for(finished, 240, "the restore Job to finish", every=1)
    logs = kube_cluster.kubectl("logs", f"job/{name}", "-n", namespace, check=False).stdout
    assert status.get("succeeded") == 1, (status, logs[-3000:])

    # Step 5: the restored database holds what the source held.
    assert _counts(pg_cluster, pg_db.with_db(target)) == _counts(pg_cluster, pg_db)
