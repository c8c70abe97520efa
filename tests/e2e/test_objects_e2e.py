"""A DatabaseBackup writing to an S3 server from a real pod, and restored from there.

SeaweedFS runs as a pod of the kind cluster (tests/harness/pods3.py); the operator's on-demand
Job backs up the PostgreSQL pod into its bucket, encrypted with age, with the S3 keys from a
Secret mounted as files. The object is listed in the bucket from this host, then the runbook's
restore-from-bucket Job (docs/runbook.md, site values replaced) restores it into an empty
database in another pod. An encrypted bucket backup drilled after every backup (the drill pod
streams it from the bucket, decrypts it with the identity Secret mounted as a file) becomes
Restorable. The PostgreSQL canary passwords, the S3 secret key and the age identity appear in no
pod spec, Event, status or log.

The static bridge network of the locally assembled kind node enforces no NetworkPolicy, so the
chart's egress rule for the endpoint is checked by the chart tests, not here (docs/dump.md).
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.harness.kube import KubeCluster
from tests.harness.podpostgres import PodPostgres
from tests.harness.pods3 import PodS3
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.objects import make_age_key
from tests.support.operator import Namespace, OperatorProcess
from tests.support.ship import yaml_objects

TABLES = ("courses", "tasks", "submissions")
PREFIX = "e2e/"


@pytest.fixture
def canary_db(pg_cluster: PodPostgres, pg_db: Conn) -> tuple[Conn, str]:
    """A backup role whose password is a unique canary, allowed to read pg_db; the connection
    as the dump pod makes it (through the PostgreSQL Service)."""
    canary = f"canary-{secrets.token_hex(8)}"
    role = f"backup_{secrets.token_hex(4)}"
    pg_cluster.create_user(role, canary)
    with pg_cluster.connect(pg_db) as c:
        c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    return pg_cluster.in_cluster(Conn(pg_db.host, pg_db.port, role, canary, pg_db.dbname)), canary


def _counts(pg: PodPostgres, conn: Conn) -> dict[str, int]:
    with pg.connect(conn) as c:
        count = sql.SQL("SELECT count(*) FROM {}")
        rows = {t: c.execute(count.format(sql.Identifier(t))).fetchone() for t in TABLES}
    return {t: int(row[0]) for t, row in rows.items() if row is not None}  # type: ignore[call-overload]


def _runbook_job() -> dict[str, Any]:
    (job,) = [
        d
        for d in yaml_objects()
        if d["kind"] == "Job" and d["metadata"]["name"] == "learnops-restore-from-bucket"
    ]
    return copy.deepcopy(job)


def test_a_backup_pod_uploads_an_encrypted_dump_to_s3_that_a_restore_pod_restores(
    kube_cluster: KubeCluster,
    backup_ns: Namespace,
    operator: OperatorProcess,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    pod_s3: PodS3,
    canary_db: tuple[Conn, str],
    tmp_path: Path,
) -> None:
    conn, canary = canary_db
    bucket = f"e2e-{secrets.token_hex(4)}"
    pod_s3.create_bucket(bucket)
    job = _runbook_job()
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    secret_of = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    # the backup and the restore share the credentials Secret the runbook names
    pod_s3.credentials_secret(backup_ns.name, secret_of["storage-credentials"])
    age = make_age_key(tmp_path / "age")  # stays on this host until the restore
    s3 = {
        "bucket": bucket,
        "prefix": PREFIX,
        "endpoint": pod_s3.endpoint,
        "forcePathStyle": True,
        "region": "us-east-1",
        "credentialsSecretRef": {"name": secret_of["storage-credentials"]},
    }
    backup_ns.declare_backup(
        conn, canary, "offsite", storage={"s3": s3}, encryption={"ageRecipients": [age.recipient]}
    )

    st = backup_ns.run_now("offsite", "e2e-s3", timeout=180)
    assert st["lastResult"] == "Succeeded", st
    success = st["lastSuccessfulBackup"]
    artifact = success["artifact"]
    assert artifact.startswith("offsite-")
    assert artifact.endswith(".dump.zst.age")
    assert (success["storageKind"], success["bucket"], success["key"]) == (
        "s3", bucket, PREFIX + artifact,
    )  # fmt: skip
    [backup_job] = backup_ns.items("jobs")
    assert backup_job["status"].get("succeeded") == 1
    assert backup_ns.condition("offsite", "LastBackupSucceeded")["status"] == "True"

    # the bucket, seen from this host: the artifact, its manifest and latest, nothing half-done
    keys = pod_s3.keys(bucket)
    stem = PREFIX + artifact.removesuffix(".dump.zst.age")
    assert keys == sorted(
        [PREFIX + artifact, f"{stem}.manifest.json", f"{PREFIX}offsite.latest.json"]
    )
    stored = pod_s3.read(bucket, PREFIX + artifact)
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert len(stored) == success["sizeBytes"]
    manifest = json.loads(pod_s3.read(bucket, f"{stem}.manifest.json"))
    assert manifest["status"] == "ok"
    assert manifest["sha256"] == success["sha256"]
    assert [r.startswith("sha256:") for r in manifest["encryption"]["recipients"]] == [True]
    latest = json.loads(pod_s3.read(bucket, f"{PREFIX}offsite.latest.json"))
    assert latest["artifact"] == artifact

    # the runbook's restore-from-bucket Job, this site's values, in a pod of its own
    restorer = pg_cluster.create_user(
        f"restore_{secrets.token_hex(4)}", "restore-pw", superuser=True
    )
    target = f"restored_{secrets.token_hex(4)}"
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    try:
        in_cluster = pg_cluster.in_cluster(restorer)
        backup_ns.kubectl(
            "create", "secret", "generic", secret_of["db-credentials"],
            "--from-file=pgpass=/dev/stdin",
            input=f"{in_cluster.host}:{in_cluster.port}:*:{in_cluster.user}:restore-pw\n",
        )  # fmt: skip
        backup_ns.kubectl(
            "create", "secret", "generic", secret_of["age-identity"],
            f"--from-file=identity={age.identity}",
        )  # fmt: skip
        job["metadata"]["namespace"] = backup_ns.name
        container["args"] = ["restore", "latest", "--target-db", target]
        site = {
            "BACKUP_BUCKET": bucket,
            "BACKUP_OBJECT_PREFIX": PREFIX,
            "BACKUP_PREFIX": "offsite",
            "BACKUP_OBJECT_ENDPOINT": pod_s3.endpoint,
            "PGHOST": in_cluster.host,
            "PGPORT": str(in_cluster.port),
            "PGUSER": in_cluster.user,
            "PGSSLMODE": "disable",
        }
        for item in container["env"]:
            item["value"] = site.get(item["name"], item["value"])
        backup_ns.apply(job)
        name = job["metadata"]["name"]

        def finished() -> dict[str, Any] | None:
            status: dict[str, Any] = (backup_ns.get("job", name) or {}).get("status", {})
            return status if status.get("succeeded") or status.get("failed") else None

        status = wait_for(finished, 240, "the restore Job to finish", every=1)
        logs = backup_ns.kubectl("logs", f"job/{name}", check=False)
        assert status.get("succeeded") == 1, (status, logs[-3000:])
        assert _counts(pg_cluster, pg_db.with_db(target)) == _counts(pg_cluster, pg_db)
        # the identity reached the restore pod as a file only; drop it as the runbook says
        backup_ns.kubectl("delete", "secret", secret_of["age-identity"])
    finally:
        pg_cluster.drop_database(target)

    needles = [canary, pod_s3.secret, age.secret_line]
    written = backup_ns.kubectl("get", "databasebackups,cronjobs,jobs,events", "-o", "json")
    assert not [n for n in needles if n in written]
    pods = json.loads(backup_ns.kubectl("get", "pods", "-o", "json"))["items"]
    assert len(pods) >= 2  # the backup pod and the restore pod
    specs = json.dumps([[p["metadata"], p["spec"], p["status"]] for p in pods])
    assert not [n for n in needles if n in specs]
    assert not [n for n in needles if n in operator.logs()]
    for pod in pods:
        logs = backup_ns.kubectl("logs", pod["metadata"]["name"], "--all-containers", check=False)
        assert logs.strip(), pod["metadata"]["name"]  # the runner logged something
        assert not [n for n in needles if n in logs]
    for key in pod_s3.keys(bucket):
        if key.endswith(".json"):
            text = pod_s3.read(bucket, key).decode()
            assert not [n for n in [*needles, age.recipient] if n in text]


def test_an_encrypted_bucket_backup_drilled_after_every_backup_becomes_restorable(
    backup_ns: Namespace,
    operator: OperatorProcess,
    scratch_cluster: PodPostgres,
    pod_s3: PodS3,
    canary_db: tuple[Conn, str],
    tmp_path: Path,
) -> None:
    conn, canary = canary_db
    bucket = f"e2e-{secrets.token_hex(4)}"
    pod_s3.create_bucket(bucket)
    pod_s3.credentials_secret(backup_ns.name, "drill-s3")
    age = make_age_key(tmp_path / "age")
    backup_ns.kubectl(
        "create", "secret", "generic", "drill-age", f"--from-file=identity={age.identity}"
    )  # fmt: skip
    drill_password = f"canary-{secrets.token_hex(8)}"
    role = scratch_cluster.create_user(f"drill_{secrets.token_hex(4)}", drill_password)
    with scratch_cluster.connect() as c:
        c.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(role.user)))
    scratch = scratch_cluster.in_cluster(role)
    backup_ns.kubectl(
        "create", "secret", "generic", "scratch-pgpass", "--from-file=pgpass=/dev/stdin",
        input=f"{scratch.host}:{scratch.port}:*:{scratch.user}:{drill_password}\n",
    )  # fmt: skip
    s3 = {
        "bucket": bucket,
        "prefix": PREFIX,
        "endpoint": pod_s3.endpoint,
        "forcePathStyle": True,
        "region": "us-east-1",
        "credentialsSecretRef": {"name": "drill-s3"},
    }
    drill = {
        "afterEveryBackup": True,
        "server": {
            "host": scratch.host,
            "port": scratch.port,
            "user": scratch.user,
            "sslMode": "disable",
            "pgpassSecretRef": {"name": "scratch-pgpass"},
        },
        "identitySecretRef": {"name": "drill-age"},
        "assertions": [{"name": "five courses", "sql": "SELECT count(*) = 5 FROM courses"}],
        "timeoutSeconds": 180,
    }
    backup_ns.declare_backup(
        conn, canary, "drilled", storage={"s3": s3},
        encryption={"ageRecipients": [age.recipient]}, restoreDrill=drill,
    )  # fmt: skip

    st = backup_ns.run_now("drilled", "e2e-s3-drill", timeout=180)
    assert st["lastResult"] == "Succeeded", st
    artifact = st["lastSuccessfulBackup"]["artifact"]
    assert artifact.endswith(".dump.zst.age")
    cond = wait_for(
        lambda: (
            (c := backup_ns.condition("drilled", "Restorable")).get("status") in ("True", "False")
            and c
        ),
        240,
        "Restorable from the after-backup drill",
    )
    logs = backup_ns.kubectl("logs", "-l", "app.kubernetes.io/component=drill", check=False)
    assert (cond["status"], cond["reason"]) == ("True", "DrillPassed"), (cond, logs[-3000:])
    verified = backup_ns.status("drilled")["lastVerifiedRestore"]
    assert verified["artifact"] == artifact
    assert verified["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts", "assertion:five courses",
    ]  # fmt: skip
    [job] = backup_ns.items("jobs", "app.kubernetes.io/component=drill")
    assert job["metadata"]["labels"]["learnops.io/trigger"] == "after-backup"
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if "persistentVolumeClaim" in v]
    assert {"storage-credentials", "age-identity"} <= {v["name"] for v in volumes}
    with scratch_cluster.connect() as c:
        left = c.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'learnops\\_drill\\_%'"
        )
        assert left.fetchall() == []

    needles = [canary, drill_password, pod_s3.secret, age.secret_line]
    written = backup_ns.kubectl("get", "databasebackups,cronjobs,jobs,events", "-o", "json")
    assert not [n for n in needles if n in written]
    assert not [n for n in needles if n in operator.logs()]
    for pod in json.loads(backup_ns.kubectl("get", "pods", "-o", "json"))["items"]:
        logs = backup_ns.kubectl("logs", pod["metadata"]["name"], "--all-containers", check=False)
        assert not [n for n in needles if n in logs], pod["metadata"]["name"]
