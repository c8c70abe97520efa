"""DatabaseRestore on the control plane alone: admission of every invalid combination, the Job a
restore starts and its Running status, refusals and waits that need no pod, and the operator's
RBAC (still no Secret).

What a restore pod then reports (success, each failure reason, one run per generation, a missing
Secret as the kubelet says it) needs pods that really run: tests/e2e/test_restore_status_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import (
    OPERATOR_SA,
    Namespace,
    OperatorProcess,
    backup,
)


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


def test_a_restore_starts_one_read_only_job_and_reports_it_running(
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
    started = wait_for(lambda: backup_ns.events("RestoreStarted"), 20, "the RestoreStarted Event")
    assert [e["type"] for e in started] == ["Normal"]


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
