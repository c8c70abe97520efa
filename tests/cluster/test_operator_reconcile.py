"""The operator turns a DatabaseBackup into exactly one CronJob and keeps it that way."""

from __future__ import annotations

import json

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import (
    OPERATOR_SA,
    Namespace,
    OperatorProcess,
    backup,
)


def _ready(ns: Namespace, name: str) -> bool:
    return ns.condition(name, "Ready").get("status") == "True"


def test_a_new_backup_gets_its_cronjob_and_reports_ready(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly", timeZone="Europe/Berlin"))
    wait_for(lambda: _ready(backup_ns, "nightly"), 20, "Ready=True")
    cronjob = backup_ns.get("cronjob", "nightly-backup")
    assert cronjob is not None
    assert cronjob["spec"]["schedule"] == "30 2 * * *"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    owner = cronjob["metadata"]["ownerReferences"][0]
    body = backup_ns.get("databasebackup", "nightly")
    assert body is not None
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "DatabaseBackup",
        body["metadata"]["uid"],
        True,
    )
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "learnops-operator"
    status = body["status"]
    assert status["cronJobName"] == "nightly-backup"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["nextScheduleTime"].endswith(":30:00Z")
    assert "finalizers" not in body["metadata"]
    table = backup_ns.kubectl("get", "dbb", "nightly")
    assert table.split("\n")[0].split() == [
        "NAME",
        "SCHEDULE",
        "SUSPENDED",
        "LAST",
        "SUCCESS",
        "LAST",
        "RESULT",
        "SIZE",
        "AGE",
    ]
    assert "nightly" in backup_ns.kubectl("get", "learnops")  # the category


def test_spec_changes_and_suspend_reach_the_cronjob(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    wait_for(lambda: _ready(backup_ns, "nightly"), 20, "Ready=True")
    backup_ns.kubectl(
        "patch",
        "dbb",
        "nightly",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"schedule": "15 4 * * 1-5", "suspend": True, "timeoutSeconds": 900}}),
    )

    def updated() -> bool:
        cj = backup_ns.get("cronjob", "nightly-backup") or {}
        spec = cj.get("spec", {})
        job = spec.get("jobTemplate", {}).get("spec", {})
        return (spec.get("schedule"), spec.get("suspend"), job.get("activeDeadlineSeconds")) == (
            "15 4 * * 1-5",
            True,
            900,
        )

    wait_for(updated, 20, "the CronJob to follow the spec")
    body = backup_ns.get("databasebackup", "nightly") or {}
    wait_for(
        lambda: (
            (backup_ns.get("databasebackup", "nightly") or {})
            .get("status", {})
            .get("observedGeneration")
            == body["metadata"]["generation"]
        ),
        10,
        "observedGeneration",
    )
    assert "nextScheduleTime" not in (backup_ns.get("databasebackup", "nightly") or {})["status"]


def test_an_edited_or_deleted_cronjob_is_put_back_within_seconds(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    wait_for(lambda: backup_ns.get("cronjob", "nightly-backup"), 20, "the CronJob")
    backup_ns.kubectl(
        "patch",
        "cronjob",
        "nightly-backup",
        "--type=merge",
        "-p",
        '{"spec":{"schedule":"* * * * *","concurrencyPolicy":"Allow"}}',
    )
    wait_for(
        lambda: (
            (backup_ns.get("cronjob", "nightly-backup") or {}).get("spec", {}).get("schedule")
            == "30 2 * * *"
        ),
        10,
        "the edit to be reverted",
    )
    cj = backup_ns.get("cronjob", "nightly-backup") or {}
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    assert backup_ns.events("DriftReverted", at_least=1)
    old_uid = cj["metadata"]["uid"]
    backup_ns.kubectl("delete", "cronjob", "nightly-backup")
    recreated = wait_for(
        lambda: (
            (c := backup_ns.get("cronjob", "nightly-backup"))
            and c["metadata"]["uid"] != old_uid
            and c
        ),
        10,
        "the CronJob to be recreated",
    )
    assert recreated["spec"]["schedule"] == "30 2 * * *"
    assert backup_ns.events("CronJobRecreated", at_least=1)


def test_deleting_a_backup_cascades_to_its_children_and_leaves_no_finalizer(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    wait_for(lambda: _ready(backup_ns, "nightly"), 20, "Ready=True")
    backup_ns.kubectl("annotate", "dbb", "nightly", "learnops.io/backup-now=before-delete")
    wait_for(lambda: backup_ns.items("jobs"), 10, "the on-demand Job")
    backup_ns.kubectl("delete", "dbb", "nightly", "--timeout=15s")  # no stuck finalizer
    wait_for(
        lambda: not backup_ns.items("cronjobs") and not backup_ns.items("jobs"),
        30,
        "garbage collection of the CronJob and the Job",
    )
    assert backup_ns.get("databasebackup", "nightly") is None


def test_a_missing_pvc_sets_ready_false_until_it_appears(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    manifest = backup("nightly")
    manifest["spec"]["storage"]["persistentVolumeClaim"]["claimName"] = "later"
    backup_ns.apply(manifest)
    cond = wait_for(
        lambda: (c := backup_ns.condition("nightly", "Ready")).get("status") == "False" and c,
        20,
        "Ready=False",
    )
    assert cond["reason"] == "PersistentVolumeClaimNotFound"
    assert "'later'" in cond["message"]
    assert [e["type"] for e in backup_ns.events("PersistentVolumeClaimNotFound", at_least=1)] == [
        "Warning"
    ]
    backup_ns.add_pvc("later")
    # kopf retries with backoff (5 s, then 10 s ...)
    wait_for(lambda: _ready(backup_ns, "nightly"), 30, "Ready=True once the PVC exists")
    assert [e["type"] for e in backup_ns.events("Reconciled", at_least=1)] == ["Normal"]


def test_the_operator_service_account_cannot_read_secrets(
    kube_cluster: KubeCluster, operator_kubeconfig: object
) -> None:
    for verb in ("get", "list", "watch"):
        proc = kube_cluster.kubectl(
            "auth", "can-i", verb, "secrets", "--all-namespaces", as_user=OPERATOR_SA, check=False
        )
        assert proc.stdout.strip() == "no", verb
    proc = kube_cluster.kubectl(
        "auth", "can-i", "get", "persistentvolumeclaims", "-A", as_user=OPERATOR_SA, check=False
    )
    assert proc.stdout.strip() == "yes"


def test_every_log_line_is_json_with_an_event_key(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    wait_for(lambda: _ready(backup_ns, "nightly"), 20, "Ready=True")
    lines = [line for line in operator.logs().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert "event" in record, line


def test_a_spec_the_cronjob_api_rejects_sets_ready_false_with_its_reason(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    # the CRD schema cannot know that a toleration with operator Exists must not have a value
    bad = [{"key": "dedicated", "operator": "Exists", "value": "backup"}]
    backup_ns.apply(backup("nightly", tolerations=bad))
    cond = wait_for(
        lambda: (c := backup_ns.condition("nightly", "Ready")).get("status") == "False" and c,
        20,
        "Ready=False",
    )
    assert cond["reason"] == "InvalidSpec"
    assert "value must be empty when `operator` is 'Exists'" in cond["message"]
    assert backup_ns.get("cronjob", "nightly-backup") is None
    backup_ns.kubectl(
        "patch",
        "dbb",
        "nightly",
        "--type=merge",
        "-p",
        '{"spec":{"tolerations":[{"key":"dedicated","operator":"Exists"}]}}',
    )
    wait_for(lambda: _ready(backup_ns, "nightly"), 20, "Ready=True after the fix")


def test_an_object_storage_backup_is_ready_without_any_pvc(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    manifest = backup("offsite")
    manifest["spec"]["storage"] = {
        "s3": {"bucket": "learnops-backups", "credentialsSecretRef": {"name": "s3-creds"}}
    }
    backup_ns.apply(manifest)
    wait_for(lambda: _ready(backup_ns, "offsite"), 20, "Ready=True")
    cronjob = backup_ns.get("cronjob", "offsite-backup") or {}
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert (env["BACKUP_STORAGE_KIND"], env["BACKUP_BUCKET"]) == ("s3", "learnops-backups")
