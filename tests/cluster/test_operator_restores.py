"""DatabaseRestore: admission of every invalid combination, the status flow of a run and of each
failure reason, one run per generation, and the operator's RBAC (still no Secret).

No kubelet here: the tests write the restore pod's terminated state through pods/status, exactly
what a kubelet writes, so the same flow holds when pods really run (tests/e2e).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import (
    OPERATOR_SA,
    Namespace,
    OperatorProcess,
    backup,
    restore_summary,
)
from tests.support.operator import RESTORE_SHA as SHA


def restore(name: str, **spec: Any) -> dict[str, Any]:
    """A DatabaseRestore of DatabaseBackup `nightly` into a new database; overrides merge."""
    body: dict[str, Any] = {
        "source": {"backupRef": {"name": "nightly"}},
        "target": {
            "host": "scratch.example",
            "user": "restorer",
            "pgpassSecretRef": {"name": "restore-pgpass"},
            "dbname": "app_restored",
            "policy": "create",
        },
    }
    body.update(spec)
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseRestore",
        "metadata": {"name": name},
        "spec": body,
    }


def _admit(cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    proc = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    return proc.returncode == 0, proc.stderr


def _target(**fields: Any) -> dict[str, Any]:
    return {"target": fields}


PGPASS = {"pgpassSecretRef": {"name": "s"}, "host": "h", "user": "u", "dbname": "d"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {}}, "exactly one of source.backupRef or source.storage"),
        (
            {
                "source": {
                    "backupRef": {"name": "nightly"},
                    "storage": {"persistentVolumeClaim": {"claimName": "b"}, "artifact": "a.dump"},
                }
            },
            "exactly one of source.backupRef or source.storage",
        ),
        (
            {"source": {"storage": {"artifact": "a.dump"}}},
            "needs exactly one storage target",
        ),
        (
            {
                "source": {
                    "storage": {
                        "persistentVolumeClaim": {"claimName": "b"},
                        "artifact": "a.dump.age",
                        "encrypted": True,
                    }
                }
            },
            "identitySecretRef is required for an encrypted source",
        ),
        (_target(**{**PGPASS, "policy": "clean"}), "set target.allowClean: true"),
        (
            _target(**{k: v for k, v in PGPASS.items() if k != "host"}),
            "required with pgpassSecretRef",
        ),
        (
            _target(dbname="d", urlSecretRef={"name": "s"}, host="h"),
            "must not be set with urlSecretRef",
        ),
        (_target(dbname="d"), "exactly one of target.pgpassSecretRef or target.urlSecretRef"),
        (
            _target(**PGPASS, urlSecretRef={"name": "t"}),
            "exactly one of target.pgpassSecretRef or target.urlSecretRef",
        ),
        (_target(**{k: v for k, v in PGPASS.items() if k != "dbname"}), "dbname"),
        (_target(**{**PGPASS, "policy": "overwrite"}), "Unsupported value"),
        ({"options": {"role": "owner"}}, "options.role needs options.noOwner"),
        ({"options": {"jobs": 0}}, "greater than or equal to 1"),
        ({"source": {"backupRef": {"name": "n", "artifact": "../etc/passwd"}}}, "should match"),
        ({"timeoutSeconds": 5}, "greater than or equal to 60"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_invalid_restore_is_rejected_at_admission_with_a_readable_message(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_kubeconfig: Path,
    spec: dict[str, Any],
    message: str,
) -> None:
    admitted, error = _admit(kube_cluster, namespace, restore("bad", **spec))
    assert not admitted
    assert message in error


def test_valid_restores_are_admitted_with_their_defaults(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    for manifest in (
        restore("from-backup"),
        restore(
            "from-pvc",
            source={"storage": {"persistentVolumeClaim": {"claimName": "b"}, "artifact": "latest"}},
            target={
                "urlSecretRef": {"name": "u"},
                "dbname": "x",
                "policy": "clean",
                "allowClean": True,
            },
            options={"jobs": 4, "noOwner": True, "role": "app", "schemaOnly": True},
        ),
        restore(
            "encrypted",
            source={
                "storage": {
                    "persistentVolumeClaim": {"claimName": "b"},
                    "artifact": "a.dump",
                    "encrypted": True,
                },
                "identitySecretRef": {"name": "age"},
            },
        ),
    ):
        admitted, error = _admit(kube_cluster, namespace, manifest)
        assert admitted, error
    out = kube_cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(restore("defaults", target={**PGPASS})),
    ).stdout  # fmt: skip
    spec = json.loads(out)["spec"]
    assert spec["target"]["policy"] == "ifEmpty"
    assert spec["allowSourceTarget"] is False
    assert spec["source"]["backupRef"]["artifact"] == "latest"
    assert spec["options"] == {
        "jobs": 1,
        "schemaOnly": False,
        "noOwner": False,
        "withGlobals": False,
        "checkRowCounts": True,
    }


def test_restore_names_longer_than_42_characters_are_rejected(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    admitted, error = _admit(kube_cluster, namespace, restore("r" * 43))
    assert not admitted
    assert "at most 42 characters" in error


@pytest.mark.parametrize(
    ("drill", "message"),
    [
        (
            {"server": {"host": "s", "user": "u", "pgpassSecretRef": {"name": "p"}}},
            "exactly one of",
        ),
        (
            {
                "schedule": "0 4 * * *",
                "afterEveryBackup": True,
                "server": {"host": "s", "user": "u", "pgpassSecretRef": {"name": "p"}},
            },
            "exactly one of schedule or afterEveryBackup",
        ),
        (
            {"schedule": "0 4 * * *", "server": {"host": "s", "user": "u"}},
            "pgpassSecretRef or urlSecretRef",
        ),
        (
            {"schedule": "0 4 * * * *", "server": {"urlSecretRef": {"name": "p"}}},
            "exactly 5 space-separated fields",
        ),
        (
            {
                "afterEveryBackup": True,
                "server": {"urlSecretRef": {"name": "p"}},
                "assertions": [{"name": "x"}],
            },
            "sql",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_invalid_restore_drill_is_rejected_at_admission(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_kubeconfig: Path,
    drill: dict[str, Any],
    message: str,
) -> None:
    admitted, error = _admit(kube_cluster, namespace, backup("drilled", restoreDrill=drill))
    assert not admitted
    assert message in error


# -- the status flow --------------------------------------------------------------------------
def _rstatus(ns: Namespace, name: str) -> dict[str, Any]:
    return dict((ns.get("databaserestore", name) or {}).get("status") or {})


def _settled(ns: Namespace, name: str, timeout: float = 30) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := _rstatus(ns, name)).get("phase") in ("Succeeded", "Failed") and s,
        timeout,
        f"{name} to finish",
    )
    return status


def _restore_job(ns: Namespace, name: str, generation: int = 1) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: ns.get("job", f"{name}-restore-g{generation}"),
        20,
        f"Job of generation {generation}",
    )
    return job


def _with_backup(ns: Namespace) -> None:
    ns.apply(backup("nightly"))
    wait_for(lambda: ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")


def test_a_successful_restore_reports_artifact_checksum_counts_events_and_metrics(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("r1"))
    job = _restore_job(backup_ns, "r1")
    running = _rstatus(backup_ns, "r1")
    assert (running["phase"], running["jobName"], running["runGeneration"]) == (
        "Running",
        job["metadata"]["name"],
        1,
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:6] == [
        "restore",
        "latest",
        "--target-db",
        "app_restored",
        "--policy",
        "create",
    ]
    assert {
        "name": "backup",
        "persistentVolumeClaim": {"claimName": "backups", "readOnly": True},
    } in pod["volumes"]
    assert next(m for m in container["volumeMounts"] if m["name"] == "backup")["readOnly"] is True
    assert job["metadata"]["ownerReferences"][0]["kind"] == "DatabaseRestore"
    backup_ns.run_job(job["metadata"]["name"], 0, restore_summary())
    st = _settled(backup_ns, "r1")
    assert st["phase"] == "Succeeded", st
    assert st["artifact"] == "nightly-20261130T020000Z.dump"
    assert st["sha256"] == SHA
    assert st["durationSeconds"] == 4.5
    assert st["rowCounts"] == {"tablesChecked": 3, "rowsChecked": 1234, "mismatches": []}
    assert st["parallelJobs"] == 1
    assert st["startTime"]
    assert st["completionTime"]
    cond = condition(st, "Succeeded")
    assert cond, st
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "Restored", 1)
    assert [e["type"] for e in backup_ns.events("RestoreStarted")] == ["Normal"]
    assert [e["type"] for e in backup_ns.events("RestoreSucceeded")] == ["Normal"]
    line = f'learnops_restore_last_result{{name="r1",namespace="{backup_ns.name}"}} 1.0'
    assert line in operator.metrics()
    row = backup_ns.kubectl("get", "dbr", "r1", "--no-headers").split()
    assert {"Succeeded", "nightly", "app_restored"} <= set(row)


@pytest.mark.parametrize(
    ("exit_code", "summary", "reason"),
    [
        (9, restore_summary(False), "TargetNotEmpty"),
        (
            9,
            restore_summary(False, reason="TargetExists", message="database exists"),
            "TargetExists",
        ),
        (
            9,
            restore_summary(False, reason="TargetIsSource", message="the source"),
            "TargetIsSource",
        ),
        (
            7,
            restore_summary(
                False,
                exitCode=7,
                reason="VerificationError",
                message="1 of 3 tables differ from the manifest: public.tasks: 9 rows, manifest 10",
                tablesChecked=3,
                rowsChecked=30,
                mismatches=["public.tasks: 9 rows, manifest 10"],
            ),
            "VerificationError",
        ),
        (
            3,
            restore_summary(False, exitCode=3, reason="ConnectionError", message="no route"),
            "ConnectionError",
        ),
        (137, None, "Failed"),
    ],
    ids=["not-empty", "exists", "source", "row-counts", "connection", "no-summary"],
)
def test_each_failure_reason_reaches_status_with_a_warning_event(
    backup_ns: Namespace,
    operator: OperatorProcess,
    exit_code: int,
    summary: dict[str, Any] | None,
    reason: str,
) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("r2"))
    job = _restore_job(backup_ns, "r2")
    backup_ns.run_job(job["metadata"]["name"], exit_code, summary or {})
    st = _settled(backup_ns, "r2")
    assert (st["phase"], st["reason"]) == ("Failed", reason), st
    cond = condition(st, "Succeeded")
    assert cond, st
    assert (cond["status"], cond["reason"]) == ("False", reason)
    if summary and summary.get("mismatches"):
        assert st["rowCounts"]["mismatches"] == summary["mismatches"]
    assert [e["type"] for e in backup_ns.events("RestoreFailed")] == ["Warning"]
    line = f'learnops_restore_last_result{{name="r2",namespace="{backup_ns.name}"}} 0.0'
    assert line in operator.metrics()


def test_the_backups_own_source_database_is_refused_without_a_job(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    # backup("nightly") dumps app on db.example:5432
    same = {"host": "DB.example.", "user": "u", "pgpassSecretRef": {"name": "p"}, "dbname": "app"}
    backup_ns.apply(restore("over-source", target={**same, "policy": "ifEmpty"}))
    st = _settled(backup_ns, "over-source")
    assert (st["phase"], st["reason"]) == ("Failed", "TargetIsSource")
    assert "allowSourceTarget" in st["message"]
    assert not backup_ns.items("jobs", "app.kubernetes.io/component=restore")
    backup_ns.apply(
        restore("allowed", target={**same, "policy": "ifEmpty"}, allowSourceTarget=True)
    )
    job = _restore_job(backup_ns, "allowed")
    assert "--allow-source-target" in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_missing_backup_or_pvc_waits_pending_and_starts_once_it_exists(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(restore("early"))
    st = wait_for(lambda: (s := _rstatus(backup_ns, "early")).get("phase") and s, 20, "a phase")
    assert (st["phase"], st["reason"]) == ("Pending", "BackupNotFound")
    _with_backup(backup_ns)
    _restore_job(backup_ns, "early")  # the sweep retried it
    backup_ns.apply(
        restore(
            "no-pvc",
            source={
                "storage": {"persistentVolumeClaim": {"claimName": "gone"}, "artifact": "a.dump"}
            },
        )
    )
    st = wait_for(lambda: (s := _rstatus(backup_ns, "no-pvc")).get("reason") and s, 20, "a reason")
    assert (st["phase"], st["reason"]) == ("Pending", "PersistentVolumeClaimNotFound")
    backup_ns.add_pvc("gone")
    job = _restore_job(backup_ns, "no-pvc")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][1] == "a.dump"


def test_one_run_per_generation(backup_ns: Namespace, operator: OperatorProcess) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("once"))
    job = _restore_job(backup_ns, "once")
    backup_ns.run_job(job["metadata"]["name"], 0, restore_summary())
    _settled(backup_ns, "once")
    # churn that is no new generation: labels, annotations, re-applying the same spec
    backup_ns.kubectl("label", "dbr", "once", "touched=yes")
    backup_ns.kubectl("annotate", "dbr", "once", "note=again")
    backup_ns.apply(restore("once"))
    backup_ns.kubectl("delete", "job", job["metadata"]["name"], "--wait=true")
    wait_for(lambda: not backup_ns.items("jobs", "app.kubernetes.io/instance=once"), 20, "no Job")
    assert not backup_ns.items("jobs", "app.kubernetes.io/instance=once")
    assert _rstatus(backup_ns, "once")["phase"] == "Succeeded"
    # a new generation runs again, once
    backup_ns.kubectl(
        "patch", "dbr", "once", "--type=merge", "-p", '{"spec":{"target":{"dbname":"second"}}}'
    )
    job2 = _restore_job(backup_ns, "once", generation=2)
    assert "second" in job2["spec"]["template"]["spec"]["containers"][0]["args"]
    running = _rstatus(backup_ns, "once")
    assert (running["phase"], running["runGeneration"]) == ("Running", 2)
    assert len(backup_ns.events("RestoreStarted")) == 2


def test_a_job_deleted_before_reporting_fails_the_restore_as_lost(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("lost"))
    job = _restore_job(backup_ns, "lost")
    backup_ns.kubectl("delete", "job", job["metadata"]["name"], "--cascade=background")
    st = _settled(backup_ns, "lost")
    assert (st["phase"], st["reason"]) == ("Failed", "JobLost")


def test_the_operator_still_reads_no_secret_and_may_only_watch_restores(
    kube_cluster: KubeCluster, operator_kubeconfig: Path
) -> None:
    def can(verb: str, resource: str) -> str:
        proc = kube_cluster.kubectl(
            "auth", "can-i", verb, resource, "-A", as_user=OPERATOR_SA, check=False
        )
        return str(proc.stdout.strip())

    for verb in ("get", "list", "watch", "create"):
        assert can(verb, "secrets") == "no", verb
    for verb in ("get", "list", "watch"):
        assert can(verb, "databaserestores.learnops.io") == "yes", verb
    proc = kube_cluster.kubectl(
        "auth", "can-i", "update", "databaserestores.learnops.io", "--subresource=status", "-A",
        as_user=OPERATOR_SA, check=False,
    )  # fmt: skip
    assert proc.stdout.strip() == "yes"
    for verb in ("create", "delete", "patch"):
        assert can(verb, "databaserestores.learnops.io") == "no", verb
    assert can("delete", "jobs") == "no"


def test_a_missing_target_secret_is_learned_from_the_restore_pods_mount_failure(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("nosecret"))
    job = _restore_job(backup_ns, "nosecret")
    pod = backup_ns.job_pod(job["metadata"]["name"])
    backup_ns.apply(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod['metadata']['name']}.mount"},
            "involvedObject": {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": backup_ns.name,
                "uid": pod["metadata"]["uid"],
            },
            "reason": "FailedMount",
            "type": "Warning",
            "source": {"component": "kubelet"},
            "message": 'MountVolume.SetUp failed for volume "db-credentials" : '
            'secret "restore-pgpass" not found',
        }
    )
    st = wait_for(
        lambda: (s := _rstatus(backup_ns, "nosecret")).get("reason") == "SecretNotFound" and s,
        20,
        "reason SecretNotFound",
    )
    assert st["phase"] == "Running"  # the Job waits for the Secret
    assert "restore-pgpass" in st["message"]
    assert [e["type"] for e in backup_ns.events("SecretNotFound")] == ["Warning"]
    backup_ns.run_job(job["metadata"]["name"], 0, restore_summary())
    assert _settled(backup_ns, "nosecret")["phase"] == "Succeeded"
