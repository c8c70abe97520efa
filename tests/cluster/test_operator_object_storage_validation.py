"""The CRD admits exactly one storage target and checks bucket names and age recipients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kube import KubeCluster
from tests.support.operator import backup

RECIPIENT = "age1tv4pvfx5eddkcpklpfyzt2p00sxt00nuuh9cs32zudk4wv7x432qqlfjq6"
S3 = {"bucket": "learnops-backups", "credentialsSecretRef": {"name": "s3-creds"}}
DB = {"host": "db.example", "dbname": "app", "user": "backup", "pgpassSecretRef": {"name": "p"}}


def _admit(cluster: KubeCluster, namespace: str, spec: dict[str, Any]) -> tuple[bool, str]:
    manifest = backup("obj")
    manifest["spec"].update(spec)
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip
    return proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"storage": {}}, "exactly one target"),
        (
            {"storage": {"persistentVolumeClaim": {"claimName": "b"}, "s3": S3}},
            "exactly one target",
        ),
        ({"storage": {"s3": S3, "gcs": {"bucket": "abc"}}}, "exactly one target"),
        ({"storage": {"s3": S3, "subPath": "x"}}, "persistentVolumeClaim only"),
        ({"storage": {"s3": {**S3, "bucket": "Upper_Case"}}}, "should match"),
        ({"storage": {"s3": {**S3, "bucket": "ab"}}}, "at least 3"),
        ({"storage": {"s3": {**S3, "bucket": "a..b"}}}, "must not contain '..'"),
        ({"storage": {"s3": {**S3, "bucket": "192.168.1.1"}}}, "IP"),
        ({"storage": {"s3": {"bucket": "abc"}}}, "exactly one of credentialsSecretRef"),
        (
            {"storage": {"s3": {**S3, "serverSideEncryption": {"algorithm": "aws:kms"}}}},
            "kmsKeyId is required",
        ),
        ({"storage": {"s3": {**S3, "endpoint": "ftp://x"}}}, "should match"),
        ({"storage": {"s3": {**S3, "prefix": "../etc"}}}, "should match"),
        ({"storage": {"gcs": {"bucket": "googbackups"}}}, "start with 'goog'"),
        ({"storage": {"azureBlob": {"account": "acct", "container": "a--b"}}}, "should match"),
        ({"storage": {"s3": S3}, "format": "directory"}, "one stream per backup"),
        ({"storage": {"s3": S3}, "verify": "restore"}, "verify restore needs"),
        ({"encryption": {"ageRecipients": ["age1notakey"]}}, "should match"),
        ({"encryption": {"ageRecipients": ["AGE-SECRET-KEY-1QQQ"]}}, "should match"),
        ({"encryption": {}}, "exactly one of ageRecipients"),
        (
            {
                "encryption": {
                    "ageRecipientsFrom": {
                        "configMapKeyRef": {"name": "r", "key": "k"},
                        "secretKeyRef": {"name": "r", "key": "k"},
                    }
                }
            },
            "exactly one of configMapKeyRef",
        ),
        ({"encryption": {"ageRecipients": [RECIPIENT]}, "format": "directory"}, "one stream"),
        ({"encryption": {"ageRecipients": [RECIPIENT]}}, "encryption needs object storage"),
        (
            {"storage": {"s3": S3}, "database": {**DB, "dbnames": ["app", "reports"]}},
            "one database per DatabaseBackup",
        ),
        (
            {"storage": {"s3": S3}, "database": {**DB, "allDatabases": True}},
            "one database per DatabaseBackup",
        ),
        ({"storage": {"s3": S3}, "globals": True}, "globals (roles) need a persistentVolumeClaim"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_object_storage_or_encryption_spec_is_rejected_at_admission(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_kubeconfig: Path,
    spec: dict[str, Any],
    message: str,
) -> None:
    admitted, error = _admit(kube_cluster, namespace, spec)
    assert not admitted
    assert message in error


@pytest.mark.parametrize(
    "spec",
    [
        {"storage": {"s3": {**S3, "prefix": "prod/learnops/", "forcePathStyle": True,
                            "endpoint": "http://seaweedfs.storage:8333", "region": "eu-west-1",
                            "serverSideEncryption": {"algorithm": "aws:kms", "kmsKeyId": "k-1"}}}},
        {"storage": {"s3": {"bucket": "irsa-backups",
                            "webIdentity": {"roleArn": "arn:aws:iam::123456789012:role/backup"}}}},
        {"storage": {"gcs": {"bucket": "my_backups.example"}}},
        {"storage": {"azureBlob": {"account": "acct01", "container": "pg-backups",
                                   "credentialsSecretRef": {"name": "az"}}}},
        {"storage": {"s3": S3}, "encryption": {"ageRecipients": [RECIPIENT]}},
        {"storage": {"gcs": {"bucket": "my-backups"}},
         "encryption": {"ageRecipientsFrom": {"configMapKeyRef": {"name": "r", "key": "keys"}}}},
    ],
)  # fmt: skip
def test_valid_object_storage_and_encryption_specs_are_admitted(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path, spec: dict[str, Any]
) -> None:
    admitted, error = _admit(kube_cluster, namespace, spec)
    assert admitted, error
