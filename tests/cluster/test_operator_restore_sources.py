"""DatabaseRestore from object storage and from encrypted artifacts: admission of the source's
shape, and the Job the operator runs for it (the bucket's credentials Secret and the age identity
mounted as files, never env; no PVC to wait for).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import S3, Namespace, OperatorProcess, backup

TARGET = {
    "host": "scratch.example",
    "user": "restorer",
    "pgpassSecretRef": {"name": "restore-pgpass"},
    "dbname": "app_restored",
    "policy": "create",
}


def _restore(name: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseRestore",
        "metadata": {"name": name},
        "spec": {"source": source, "target": TARGET},
    }


def _admit(cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip
    return proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"storage": {"s3": S3, "artifact": "latest", "encrypted": True}},
            "identitySecretRef is required for an encrypted source",
        ),
        (
            {
                "storage": {
                    "s3": S3,
                    "persistentVolumeClaim": {"claimName": "backups"},
                    "artifact": "latest",
                }
            },
            "needs exactly one storage target",
        ),
        (
            {"storage": {"s3": S3, "gcs": {"bucket": "b"}, "artifact": "latest"}},
            "needs exactly one storage target",
        ),
        (
            {"storage": {"s3": S3, "subPath": "x", "artifact": "latest"}},
            "subPath applies to persistentVolumeClaim only",
        ),
        (
            {"storage": {"s3": {**S3, "bucket": "Not_A_Bucket"}, "artifact": "latest"}},
            "should match",
        ),
    ],
    ids=["encrypted-without-identity", "pvc-and-s3", "s3-and-gcs", "subpath-on-s3", "bad-bucket"],
)
def test_an_invalid_object_storage_source_is_rejected_at_admission(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_kubeconfig: object,
    source: dict[str, Any],
    message: str,
) -> None:
    ok, err = _admit(kube_cluster, namespace, _restore("bad", source))
    assert not ok
    assert message in err


@pytest.mark.parametrize(
    "source",
    [
        {"storage": {"s3": S3, "artifact": "latest", "prefix": "nightly"}},
        {
            "storage": {"gcs": {"bucket": "learnops-backups"}, "artifact": "a.dump.zst.age",
                        "encrypted": True},
            "identitySecretRef": {"name": "age", "key": "key.txt"},
        },
        {
            "storage": {
                "azureBlob": {"account": "acct", "container": "backups"},
                "artifact": "latest",
            }
        },
    ],
    ids=["s3", "gcs-encrypted", "azure"],
)  # fmt: skip
def test_valid_object_storage_sources_are_admitted(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: object, source: dict[str, Any]
) -> None:
    ok, err = _admit(kube_cluster, namespace, _restore("good", source))
    assert ok, err


def _job(ns: Namespace, timeout: float = 30) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = wait_for(
        lambda: ns.items("jobs", "app.kubernetes.io/component=restore"), timeout, "a restore Job"
    )
    [job] = jobs
    return job


def _secret_values_absent(pod: dict[str, Any]) -> None:
    [container] = pod["containers"]
    for item in container["env"]:
        assert "valueFrom" not in item, item  # names and paths only, as plain values
    assert not container.get("envFrom")


def test_an_encrypted_bucket_source_runs_with_its_credentials_and_identity_as_files(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    source = {
        "storage": {"s3": S3, "artifact": "latest", "prefix": "nightly", "encrypted": True},
        "identitySecretRef": {"name": "age-identity", "key": "key.txt"},
    }
    backup_ns.apply(_restore("from-bucket", source))
    job = _job(backup_ns)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"][:2] == ["restore", "latest"]
    assert env["BACKUP_STORAGE_KIND"] == "s3"
    assert env["BACKUP_BUCKET"] == "learnops-backups"
    assert env["BACKUP_OBJECT_PREFIX"] == "prod"
    assert env["BACKUP_OBJECT_ENDPOINT"] == "http://s3.example:8333"
    assert env["BACKUP_S3_PATH_STYLE"] == "true"
    assert env["BACKUP_PREFIX"] == "nightly"
    assert "BACKUP_STORAGE_ROOT" not in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert "backup" not in volumes  # no claim to mount or wait for
    creds = volumes["storage-credentials"]["secret"]
    assert creds["secretName"] == "s3-credentials"
    assert env["BACKUP_CREDENTIALS_DIR"] == mounts["storage-credentials"]["mountPath"]
    identity = volumes["age-identity"]["secret"]
    assert identity["secretName"] == "age-identity"
    assert identity["items"] == [{"key": "key.txt", "path": "identity"}]  # only that key
    assert mounts["age-identity"]["readOnly"] is True
    assert env["BACKUP_AGE_IDENTITY_FILE"] == f"{mounts['age-identity']['mountPath']}/identity"
    _secret_values_absent(pod)
    # the Job exists before the handler's status patch lands: wait for the phase
    wait_for(
        lambda: (
            ((backup_ns.get("dbr", "from-bucket") or {}).get("status") or {}).get("phase")
            == "Running"
        ),
        30,
        "phase Running",
    )


def test_a_backup_ref_to_an_encrypted_bucket_backup_needs_the_identity(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(
        backup(
            "nightly",
            storage={"s3": S3},
            encryption={"ageRecipients": ["age1" + "q" * 58]},
        )
    )
    backup_ns.apply(_restore("no-identity", {"backupRef": {"name": "nightly"}}))
    st: dict[str, Any] = wait_for(
        lambda: (
            (s := (backup_ns.get("dbr", "no-identity") or {}).get("status") or {}).get("phase")
            == "Failed"
            and s
        ),
        30,
        "Failed",
    )
    assert st["reason"] == "IdentityMissing"
    assert "source.identitySecretRef" in st["message"]
    assert backup_ns.items("jobs", "app.kubernetes.io/component=restore") == []
    source = {"backupRef": {"name": "nightly"}, "identitySecretRef": {"name": "age-identity"}}
    backup_ns.apply(_restore("with-identity", source))
    job = _job(backup_ns)
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["BACKUP_STORAGE_KIND"], env["BACKUP_BUCKET"]) == ("s3", "learnops-backups")
    assert env["BACKUP_PREFIX"] == "nightly"
    assert env["BACKUP_AGE_IDENTITY_FILE"].endswith("/identity")
    assert {v["name"] for v in pod["volumes"]} >= {"storage-credentials", "age-identity"}
    _secret_values_absent(pod)


def test_an_encrypted_artifact_on_a_claim_runs_with_its_identity_mounted(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    source = {
        "storage": {
            "persistentVolumeClaim": {"claimName": "backups"},
            "artifact": "a.dump.zst.age",
            "encrypted": True,
        },
        "identitySecretRef": {"name": "age"},
    }
    backup_ns.apply(_restore("enc", source))
    pod = _job(backup_ns)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"] == {"claimName": "backups", "readOnly": True}
    assert volumes["age-identity"]["secret"]["items"] == [{"key": "identity", "path": "identity"}]
    assert env["BACKUP_AGE_IDENTITY_FILE"].endswith("/identity")
    _secret_values_absent(pod)


def test_with_globals_reaches_the_restore_command(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    source = {"storage": {"persistentVolumeClaim": {"claimName": "backups"}, "artifact": "a.dump"}}
    body = _restore("globals", source)
    body["spec"]["options"] = {"withGlobals": True}
    backup_ns.apply(body)
    args = _job(backup_ns)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--with-globals" in args
