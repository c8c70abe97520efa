"""A DatabaseBackup writing to S3 (SeaweedFS on loopback) from a real pod, encrypted with age.

The operator builds the pod from the CRD's storage.s3 and encryption fields; the dump image
streams into the bucket; status shows bucket and key; neither the S3 secret nor the age
identity appears in any cluster object, the pod, or the operator's logs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_objects import AgeKey
from tests.fixtures_operator import Namespace, OperatorProcess, backup, wait_for
from tests.harness.containers import Engine
from tests.harness.objectservers import ObjectServer
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import Conn, PgCluster

REPO = Path(__file__).resolve().parents[2]
DUMP_IMAGE = "learnops/dump:e2e"


@pytest.fixture(scope="module")
def dump_image(container_engine: Engine) -> str:
    return container_engine.build(DUMP_IMAGE, REPO / "images/dump/Dockerfile", REPO / "images/dump")


def test_a_real_pod_backs_up_to_s3_encrypted_and_status_names_bucket_and_key(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    pg_db: Conn,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    age_key: AgeKey,
) -> None:
    if pod_runner is None:
        pytest.skip("the S3 server listens on this host's loopback (the kubelet stand-in's net)")
    canary = f"canary-{secrets.token_hex(8)}"
    role = f"backup_{secrets.token_hex(4)}"
    pg_cluster.create_user(role, canary)
    with pg_cluster.connect(pg_db) as c:
        c.execute(f'GRANT pg_read_all_data TO "{role}"')
    line = f"{pg_db.host}:{pg_db.port}:{pg_db.dbname}:{role}:{canary}\n"
    backup_ns.kubectl(
        "create", "secret", "generic", "off-pgpass", "--from-file=pgpass=/dev/stdin", input=line
    )
    creds = s3_server.credentials
    backup_ns.kubectl(
        "create", "secret", "generic", "off-s3",
        f"--from-file=accessKeyId={creds / 'accessKeyId'}",
        f"--from-file=secretAccessKey={creds / 'secretAccessKey'}",
    )  # fmt: skip
    bucket = bucket_of(s3_server)
    backup_ns.apply(
        backup(
            "offsite",
            database={
                "host": pg_db.host,
                "port": pg_db.port,
                "dbname": pg_db.dbname,
                "user": role,
                "sslMode": "disable",
                "pgpassSecretRef": {"name": "off-pgpass", "key": "pgpass"},
            },
            storage={
                "s3": {
                    "bucket": bucket,
                    "prefix": "e2e/",
                    "endpoint": s3_server.endpoint,
                    "forcePathStyle": True,
                    "credentialsSecretRef": {"name": "off-s3"},
                }
            },
            encryption={"ageRecipients": [age_key.recipient]},
            image=DUMP_IMAGE,
            imagePullPolicy="Never",
            backoffLimit=0,
        )
    )
    wait_for(lambda: backup_ns.condition("offsite", "Ready").get("status") == "True", 30, "Ready")
    backup_ns.kubectl("annotate", "dbb", "offsite", "learnops.io/backup-now=e2e-s3")

    def status() -> dict[str, Any]:
        return dict((backup_ns.get("databasebackup", "offsite") or {}).get("status") or {})

    st: dict[str, Any] = wait_for(lambda: (s := status()).get("lastResult") and s, 180, "result")
    assert st["lastResult"] == "Succeeded", (st, pod_runner.errors)
    success = st["lastSuccessfulBackup"]
    assert success["bucket"] == bucket
    assert success["storageKind"] == "s3"
    assert success["key"] == f"e2e/{success['artifact']}"
    assert success["artifact"].endswith(".dump.zst.age")
    stored = s3_server.read(bucket, success["key"])
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert b"PGDMP" not in stored
    latest = json.loads(s3_server.read(bucket, "e2e/offsite.latest.json"))
    assert latest["artifact"] == success["artifact"]
    assert latest["sha256"] == success["sha256"]

    # secrets: the S3 key and the DB password are in Secrets only; the identity nowhere at all
    written = backup_ns.kubectl(
        "get", "databasebackups,cronjobs,jobs,events,pods,configmaps", "-o", "json"
    )
    for needle in (s3_server.secret, canary, age_key.secret_line):
        assert needle not in written
        assert needle not in operator.logs()
    secrets_json = backup_ns.kubectl("get", "secrets", "-o", "json")
    assert age_key.secret_line not in secrets_json
    pods = json.loads(backup_ns.kubectl("get", "pods", "-o", "json"))["items"]
    (pod,) = pods
    env = pod["spec"]["containers"][0]["env"]
    assert all("valueFrom" not in e for e in env)
    assert not any(needle in json.dumps(pod) for needle in (s3_server.secret, age_key.secret_line))
