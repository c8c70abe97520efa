"""A DatabaseBackup to object storage: env names only, credentials as Secret files, status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from learnops_operator import builders
from learnops_operator.results import from_termination
from learnops_operator.spec import Owner, parse
from learnops_operator.status import record

OWNER = Owner(namespace="team-a", name="nightly", uid="0000-1111", generation=3)
IMAGE = "registry.example/learnops/dump:1.2.3"
RECIPIENT = "age1tv4pvfx5eddkcpklpfyzt2p00sxt00nuuh9cs32zudk4wv7x432qqlfjq6"


def _spec(storage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": "30 2 * * *",
        "database": {
            "host": "db",
            "dbname": "app",
            "user": "backup",
            "pgpassSecretRef": {"name": "pg-backup"},
        },
        "storage": storage,
    }
    spec.update(extra)
    return spec


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    template = builders.pod_template(OWNER, parse(spec), IMAGE, "scheduled")
    pod: dict[str, Any] = template["spec"]
    return pod


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"]}


def test_an_s3_target_gets_its_settings_as_env_and_its_keys_only_as_a_secret_volume() -> None:
    pod = _pod(
        _spec(
            {
                "s3": {
                    "bucket": "learnops-backups",
                    "prefix": "prod/",
                    "endpoint": "http://seaweedfs.storage:8333",
                    "forcePathStyle": True,
                    "serverSideEncryption": {"algorithm": "AES256"},
                    "credentialsSecretRef": {"name": "s3-creds"},
                }
            },
            encryption={"ageRecipients": [RECIPIENT]},
        )
    )
    env = _env(pod)
    assert env["BACKUP_STORAGE_KIND"] == "s3"
    assert env["BACKUP_BUCKET"] == "learnops-backups"
    assert env["BACKUP_OBJECT_PREFIX"] == "prod/"
    assert env["BACKUP_S3_PATH_STYLE"] == "true"
    assert env["BACKUP_S3_SSE"] == "AES256"
    assert env["BACKUP_CREDENTIALS_DIR"] == builders.STORAGE_SECRET_DIR
    assert env["BACKUP_AGE_RECIPIENTS"] == RECIPIENT
    assert "BACKUP_STORAGE_ROOT" not in env
    # every env entry is a plain value: no valueFrom, so no Secret data in the pod spec
    assert all(set(e) == {"name", "value"} for e in pod["containers"][0]["env"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "backup" not in volumes  # no PVC
    assert volumes["storage-credentials"]["secret"]["secretName"] == "s3-creds"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["storage-credentials"]["readOnly"] is True
    assert pod["automountServiceAccountToken"] is False


def test_web_identity_mounts_a_projected_token_and_no_keys() -> None:
    pod = _pod(
        _spec(
            {
                "s3": {
                    "bucket": "irsa-backups",
                    "webIdentity": {"roleArn": "arn:aws:iam::123456789012:role/backup"},
                }
            },
            serviceAccountName="backup",
        )
    )
    env = _env(pod)
    assert env["BACKUP_S3_ROLE_ARN"].endswith(":role/backup")
    assert env["BACKUP_S3_WEB_IDENTITY_TOKEN_FILE"].startswith(builders.WEB_IDENTITY_DIR)
    assert "BACKUP_CREDENTIALS_DIR" not in env
    (token,) = [v for v in pod["volumes"] if v["name"] == "web-identity"]
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "sts.amazonaws.com"


def test_recipients_from_a_configmap_arrive_as_a_file() -> None:
    pod = _pod(
        _spec(
            {"gcs": {"bucket": "my-backups"}},
            encryption={"ageRecipientsFrom": {"configMapKeyRef": {"name": "keys", "key": "age"}}},
        )
    )
    env = _env(pod)
    assert env["BACKUP_STORAGE_KIND"] == "gcs"
    assert env["BACKUP_AGE_RECIPIENTS_FILE"] == f"{builders.RECIPIENTS_DIR}/recipients"
    (vol,) = [v for v in pod["volumes"] if v["name"] == "age-recipients"]
    assert vol["configMap"]["items"] == [{"key": "age", "path": "recipients"}]


def test_azure_names_the_account_and_container() -> None:
    env = _env(_pod(_spec({"azureBlob": {"account": "acct01", "container": "pg-backups"}})))
    assert env["BACKUP_STORAGE_KIND"] == "azureBlob"
    assert env["BACKUP_BUCKET"] == "pg-backups"
    assert env["BACKUP_AZURE_ACCOUNT"] == "acct01"


def test_status_shows_bucket_and_key_of_the_last_backup_and_nothing_else_from_the_pod() -> None:
    summary = {
        "status": "ok",
        "exitCode": 0,
        "reason": "Ok",
        "message": "",
        "artifact": "nightly-20261201T023000Z.dump.zst.age",
        "sizeBytes": 1234,
        "sha256": "ab" * 32,
        "finishedAt": "2026-12-01T02:30:05Z",
        "durationSeconds": 5.0,
        "location": {
            "kind": "s3",
            "bucket": "learnops-backups",
            "key": "prod/nightly-20261201T023000Z.dump.zst.age",
            "secretAccessKey": "should-never-be-copied",
        },
    }
    terminated = {"exitCode": 0, "message": json.dumps(summary)}
    result = from_termination("nightly-1", terminated, datetime.now(UTC), prefix="nightly")
    status = record({}, result, 3, datetime.now(UTC))
    success = status["lastSuccessfulBackup"]
    assert success["bucket"] == "learnops-backups"
    assert success["key"] == "prod/nightly-20261201T023000Z.dump.zst.age"
    assert success["storageKind"] == "s3"
    assert "should-never-be-copied" not in json.dumps(status)
