"""Scheduled restore drills on the control plane alone: their own CronJob, its drift repaired,
suspended when the drill is dropped; drills of bucket backups (the bucket's env and credentials,
no claim; an encrypted backup's age identity as a file, required at admission and re-checked).

What drills then report (lastVerifiedRestore, Restorable, the drill gauges and the chart's alerts
on them) and the inventory of runs need pods that really run: tests/e2e/test_restore_status_e2e.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from learnops_operator import drills
from learnops_operator.context import Context
from learnops_operator.kube import Kube
from learnops_operator.results import RunResult
from learnops_operator.settings import Settings

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import S3, Namespace, OperatorProcess, backup

SCRATCH = {"host": "scratch.example", "user": "drill", "pgpassSecretRef": {"name": "scratch"}}


def _status(ns: Namespace, name: str = "nightly") -> dict[str, Any]:
    return dict((ns.get("databasebackup", name) or {}).get("status") or {})


def test_scheduled_drills_get_their_own_cronjob_which_is_suspended_when_dropped(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(
        backup(
            "nightly",
            restoreDrill={
                "schedule": "30 4 * * *",
                "server": SCRATCH,
                "assertions": [{"name": "has courses", "sql": "SELECT count(*) > 0 FROM courses"}],
            },
        )
    )
    cronjob = wait_for(lambda: backup_ns.get("cronjob", "nightly-drill"), 20, "the drill CronJob")
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "30 4 * * *",
        "Etc/UTC",
        "Forbid",
    )
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["drill", "latest"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "SELECT count(*) > 0 FROM courses" in env["DRILL_ASSERTIONS"]
    assert _status(backup_ns)["drillCronJobName"] == "nightly-drill"
    # drift: an edit is reverted, a deletion repaired
    backup_ns.kubectl(
        "patch",
        "cronjob",
        "nightly-drill",
        "--type=merge",
        "-p",
        '{"spec":{"schedule":"0 0 * * *"}}',
    )
    wait_for(
        lambda: (
            (backup_ns.get("cronjob", "nightly-drill") or {})["spec"]["schedule"] == "30 4 * * *"
        ),
        20,
        "the drill schedule restored",
    )
    uid = (backup_ns.get("cronjob", "nightly-drill") or {})["metadata"]["uid"]
    backup_ns.kubectl("delete", "cronjob", "nightly-drill")
    wait_for(
        lambda: (
            (backup_ns.get("cronjob", "nightly-drill") or {}).get("metadata", {}).get("uid")
            not in (None, uid)
        ),
        20,
        "the drill CronJob recreated",
    )
    assert backup_ns.events("DriftReverted", at_least=1)
    backup_ns.kubectl(
        "patch",
        "dbb",
        "nightly",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/restoreDrill"}]',
    )
    wait_for(
        lambda: (backup_ns.get("cronjob", "nightly-drill") or {})["spec"].get("suspend") is True,
        20,
        "the drill CronJob suspended",
    )


# -- drills of object-storage backups ---------------------------------------------------------
RECIPIENT = "age1" + "q" * 58
IDENTITY = {"name": "age-identity", "key": "key.txt"}


def _drill_pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def _env(pod: dict[str, Any]) -> dict[str, str]:
    [container] = pod["containers"]
    for item in container["env"]:
        assert "valueFrom" not in item, item  # names and paths only, never a Secret's value
    assert not container.get("envFrom")
    return {e["name"]: e["value"] for e in container["env"]}


def _reads_the_bucket_not_a_claim(pod: dict[str, Any]) -> dict[str, str]:
    env = _env(pod)
    assert (env["BACKUP_STORAGE_KIND"], env["BACKUP_BUCKET"]) == ("s3", "learnops-backups")
    assert env["BACKUP_OBJECT_PREFIX"] == "prod"
    assert env["BACKUP_OBJECT_ENDPOINT"] == "http://s3.example:8333"
    assert env["BACKUP_PREFIX"] == "nightly"  # latest = nightly.latest.json in the bucket
    assert "BACKUP_STORAGE_ROOT" not in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not any("persistentVolumeClaim" in v for v in volumes.values())
    assert volumes["storage-credentials"]["secret"]["secretName"] == "s3-credentials"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert env["BACKUP_CREDENTIALS_DIR"] == mounts["storage-credentials"]["mountPath"]
    assert mounts["storage-credentials"]["readOnly"] is True
    return env


def _identity_mounted_as_a_file(pod: dict[str, Any], env: dict[str, str]) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    secret = volumes["age-identity"]["secret"]
    assert secret["secretName"] == "age-identity"
    assert secret["items"] == [{"key": "key.txt", "path": "identity"}]  # only that key
    assert mounts["age-identity"]["readOnly"] is True
    assert env["BACKUP_AGE_IDENTITY_FILE"] == f"{mounts['age-identity']['mountPath']}/identity"


def _context(kubeconfig: Path) -> Context:
    """The operator's own code in this process, as the operator's ServiceAccount (its RBAC)."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return Context(Settings(), Kube(client.ApiClient(cfg), "drill-test"))


def test_the_drill_cronjob_of_a_bucket_backup_reads_the_bucket_and_mounts_no_claim(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(
        backup(
            "nightly", storage={"s3": S3}, restoreDrill={"schedule": "@daily", "server": SCRATCH}
        )
    )
    cronjob = wait_for(lambda: backup_ns.get("cronjob", "nightly-drill"), 20, "the drill CronJob")
    pod = _drill_pod(cronjob)
    env = _reads_the_bucket_not_a_claim(pod)
    assert pod["containers"][0]["args"][:2] == ["drill", "latest"]
    assert "BACKUP_AGE_IDENTITY_FILE" not in env
    assert "age-identity" not in {v["name"] for v in pod["volumes"]}
    restorable = wait_for(
        lambda: condition(_status(backup_ns), "Restorable") or None, 20, "Restorable"
    )
    assert (restorable["status"], restorable["reason"]) == ("Unknown", "NoDrillYet")


def test_an_encrypted_bucket_backups_drills_mount_its_age_identity_as_a_file(
    backup_ns: Namespace, operator: OperatorProcess, operator_kubeconfig: Path
) -> None:
    drill = {"schedule": "@daily", "server": SCRATCH, "identitySecretRef": IDENTITY}
    backup_ns.apply(
        backup(
            "nightly",
            storage={"s3": S3},
            encryption={"ageRecipients": [RECIPIENT]},
            restoreDrill=drill,
        )
    )
    cronjob = wait_for(lambda: backup_ns.get("cronjob", "nightly-drill"), 20, "the drill CronJob")
    pod = _drill_pod(cronjob)
    _identity_mounted_as_a_file(pod, _reads_the_bucket_not_a_claim(pod))
    # afterEveryBackup: the Job the operator creates once a backup's success is recorded (that
    # needs a pod that really ran, tests/e2e); here the operator's code makes it in-process
    backup_ns.kubectl(
        "patch", "dbb", "nightly", "--type=merge", "-p",
        json.dumps({"spec": {"restoreDrill": {
            "schedule": None, "afterEveryBackup": True, "server": SCRATCH,
            "identitySecretRef": IDENTITY,
        }}}),
    )  # fmt: skip
    body = wait_for(
        lambda: (
            (b := backup_ns.get("dbb", "nightly") or {})["spec"]["restoreDrill"].get(
                "afterEveryBackup"
            )
            and b
        ),
        20,
        "the patched backup",
    )
    artifact = "nightly-20261202T031500Z.dump.zst.age"
    result = RunResult("nightly-backup-1", True, "Completed", "", datetime.now(UTC),
                       artifact=artifact)  # fmt: skip
    assert drills.after_backup(_context(operator_kubeconfig), body, result) is True
    job = wait_for(
        lambda: backup_ns.items("jobs", "app.kubernetes.io/component=drill"), 20, "the drill Job"
    )[0]
    assert job["metadata"]["labels"]["learnops.io/trigger"] == "after-backup"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][:2] == ["drill", artifact]
    _identity_mounted_as_a_file(pod, _reads_the_bucket_not_a_claim(pod))
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("default", False)


def test_admission_rejects_the_drill_of_an_encrypted_backup_without_its_identity(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    body = backup(
        "nightly",
        storage={"s3": S3},
        encryption={"ageRecipients": [RECIPIENT]},
        restoreDrill={"afterEveryBackup": True, "server": SCRATCH},
    )
    proc = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "restoreDrill.identitySecretRef is required with encryption" in proc.stderr
    body["spec"]["restoreDrill"]["identitySecretRef"] = {"name": "age-identity"}
    proc = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_drill_without_identity_that_slipped_past_admission_is_not_restorable_and_runs_nothing(
    backup_ns: Namespace, operator: OperatorProcess, operator_kubeconfig: Path
) -> None:
    # admitted without a drill; the operator then sees a body with one (as an older CRD, without
    # the rule, would have let through)
    backup_ns.apply(
        backup("nightly", storage={"s3": S3}, encryption={"ageRecipients": [RECIPIENT]})
    )
    body = wait_for(lambda: backup_ns.get("dbb", "nightly"), 20, "the backup")
    body["spec"]["restoreDrill"] = {"schedule": "@daily", "server": SCRATCH}
    drills.reconcile(_context(operator_kubeconfig), body)
    restorable = condition(_status(backup_ns), "Restorable")
    assert (restorable["status"], restorable["reason"]) == ("False", "InvalidSpec")
    assert "restoreDrill.identitySecretRef is required" in restorable["message"]
    assert backup_ns.get("cronjob", "nightly-drill") is None
    result = RunResult("nightly-backup-1", True, "Completed", "", datetime.now(UTC),
                       artifact="nightly-20261202T031500Z.dump.zst.age")  # fmt: skip
    body["spec"]["restoreDrill"] = {"afterEveryBackup": True, "server": SCRATCH}
    assert drills.after_backup(_context(operator_kubeconfig), body, result) is False
    assert backup_ns.items("jobs", "app.kubernetes.io/component=drill") == []


def test_drill_and_restore_pods_of_a_web_identity_bucket_get_the_projected_token_as_default(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    role = "arn:aws:iam::123456789012:role/learnops-backups"
    s3 = {k: v for k, v in S3.items() if k != "credentialsSecretRef"}
    backup_ns.apply(
        backup(
            "nightly",
            storage={"s3": {**s3, "webIdentity": {"roleArn": role}}},
            restoreDrill={"schedule": "@daily", "server": SCRATCH},
        )
    )
    backup_ns.apply(
        {
            "apiVersion": "learnops.io/v1alpha1",
            "kind": "DatabaseRestore",
            "metadata": {"name": "from-bucket"},
            "spec": {
                "source": {"backupRef": {"name": "nightly"}},
                "target": {**SCRATCH, "dbname": "copy", "policy": "create"},
            },
        }
    )
    cronjob = wait_for(lambda: backup_ns.get("cronjob", "nightly-drill"), 20, "the drill CronJob")
    [restore_job] = wait_for(
        lambda: backup_ns.items("jobs", "app.kubernetes.io/component=restore"), 30, "restore Job"
    )
    for pod in (_drill_pod(cronjob), restore_job["spec"]["template"]["spec"]):
        env = _env(pod)
        assert env["BACKUP_S3_ROLE_ARN"] == role
        volumes = {v["name"]: v for v in pod["volumes"]}
        [source] = volumes["web-identity"]["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        token_path = (
            f"{mounts['web-identity']['mountPath']}/{source['serviceAccountToken']['path']}"
        )
        assert env["BACKUP_S3_WEB_IDENTITY_TOKEN_FILE"] == token_path
        assert "storage-credentials" not in volumes
        assert not any("persistentVolumeClaim" in v for v in volumes.values())
        # the role's trust policy names system:serviceaccount:<namespace>:default
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (
            "default",
            False,
        )
