"""DatabaseRestore and restore-drill results from pods that really run: the status flow of a
restore and of each failure reason, one run per generation, a missing Secret as the kubelet
reports it, and drills setting Restorable (with the inventory and the drill gauges).

The restore and drill pods play scenarios of tests/e2e/scenario-image
(tests/support/scenario_pods.py), so every outcome the runner can report is reached in seconds;
real restores into a PostgreSQL pod are tests/e2e/test_restore_e2e.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from learnops_operator.jobpods import drill_job_name

from tests.harness import promtool
from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, backup
from tests.support.scenario_pods import (
    add_secret,
    events_of,
    ready,
    run,
    scenario_backup,
    shared_namespace,
)
from tests.support.ship import render

SHA = "ab" * 32  # what scenarios/restore/* report
ARTIFACT = "nightly-20261130T020000Z.dump"


def restore(name: str, scenario: str = "default", **spec: Any) -> dict[str, Any]:
    """A DatabaseRestore of DatabaseBackup `nightly` whose pod plays restore/<scenario>."""
    body: dict[str, Any] = {
        "source": {"backupRef": {"name": "nightly"}},
        "target": {
            "host": "scratch.example",
            "user": scenario,
            "pgpassSecretRef": {"name": "restore-pgpass"},
            "dbname": "app_restored",
            "policy": "create",
        },
        **spec,
    }
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseRestore",
        "metadata": {"name": name},
        "spec": body,
    }


def _rstatus(ns: Namespace, name: str) -> dict[str, Any]:
    return dict((ns.get("databaserestore", name) or {}).get("status") or {})


def _settled(ns: Namespace, name: str, timeout: float = 90) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := _rstatus(ns, name)).get("phase") in ("Succeeded", "Failed") and s,
        timeout,
        f"{name} to finish",
    )
    return status


def _with_backup(ns: Namespace) -> None:
    ns.add_pgpass_secret("unused")
    ns.apply(backup("nightly"))
    ready(ns, "nightly")


def test_a_successful_restore_reports_artifact_checksum_counts_events_and_metrics(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    add_secret(backup_ns, "restore-pgpass")
    backup_ns.apply(restore("r1"))
    st = _settled(backup_ns, "r1")
    assert st["phase"] == "Succeeded", st
    job = backup_ns.get("job", "r1-restore-g1") or {}
    assert job["status"].get("succeeded") == 1  # the Job controller saw the real pod succeed
    assert (st["jobName"], st["runGeneration"]) == ("r1-restore-g1", 1)
    assert st["artifact"] == ARTIFACT
    assert st["sha256"] == SHA
    assert st["durationSeconds"] == 0.5
    assert st["rowCounts"] == {"tablesChecked": 3, "rowsChecked": 1234, "mismatches": []}
    assert st["parallelJobs"] == 1
    assert st["startTime"] <= st["completionTime"]
    cond = condition(st, "Succeeded")
    assert cond, st
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "Restored", 1)
    assert [e["type"] for e in backup_ns.events("RestoreStarted", at_least=1)] == ["Normal"]
    assert [e["type"] for e in backup_ns.events("RestoreSucceeded", at_least=1)] == ["Normal"]
    line = f'learnops_restore_last_result{{name="r1",namespace="{backup_ns.name}"}} 1.0'
    wait_for(lambda: line in scenario_operator.metrics(), 15, f"{line} in the metrics")
    row = backup_ns.kubectl("get", "dbr", "r1", "--no-headers").split()
    assert {"Succeeded", "nightly", "app_restored"} <= set(row)


# scenario -> (reason, the mismatches reported)
FAILURES: dict[str, tuple[str, list[str]]] = {
    "not-empty": ("TargetNotEmpty", []),
    "exists": ("TargetExists", []),
    "source": ("TargetIsSource", []),
    "row-counts": ("VerificationError", ["public.tasks: 9 rows, manifest 10"]),
    "connection": ("ConnectionError", []),
    "killed": ("Failed", []),  # exit 137 and no message at all
}


@pytest.fixture(scope="module")
def failed_restores(
    kube_cluster: KubeCluster, operator_kubeconfig: object, scenario_operator: OperatorProcess
) -> Iterator[tuple[Namespace, dict[str, dict[str, Any]]]]:
    """One restore per failure scenario, run side by side: (namespace, status of each)."""
    with shared_namespace(kube_cluster) as ns:
        ns.apply(backup("nightly"))
        ready(ns, "nightly")
        add_secret(ns, "restore-pgpass")
        for scenario in FAILURES:
            ns.apply(restore(f"r-{scenario}", scenario))
        yield ns, {s: _settled(ns, f"r-{s}", timeout=120) for s in FAILURES}


@pytest.mark.parametrize("scenario", list(FAILURES))
def test_each_failure_reason_reaches_status_with_a_warning_event(
    failed_restores: tuple[Namespace, dict[str, dict[str, Any]]],
    scenario_operator: OperatorProcess,
    scenario: str,
) -> None:
    ns, statuses = failed_restores
    reason, mismatches = FAILURES[scenario]
    name = f"r-{scenario}"
    st = statuses[scenario]
    assert (st["phase"], st["reason"]) == ("Failed", reason), st
    cond = condition(st, "Succeeded")
    assert cond, st
    assert (cond["status"], cond["reason"]) == ("False", reason)
    if mismatches:
        assert st["rowCounts"]["mismatches"] == mismatches
    job = ns.get("job", f"{name}-restore-g1") or {}
    assert condition(job["status"], "Failed")["status"] == "True"
    assert [e["type"] for e in events_of(ns, "RestoreFailed", name, at_least=1)] == ["Warning"]
    line = f'learnops_restore_last_result{{name="{name}",namespace="{ns.name}"}} 0.0'
    wait_for(lambda: line in scenario_operator.metrics(), 15, f"{line} in the metrics")


def test_one_run_per_generation(backup_ns: Namespace, scenario_operator: OperatorProcess) -> None:
    _with_backup(backup_ns)
    add_secret(backup_ns, "restore-pgpass")
    backup_ns.apply(restore("once"))
    assert _settled(backup_ns, "once")["phase"] == "Succeeded"
    # churn that is no new generation: labels, annotations, re-applying the same spec
    backup_ns.kubectl("label", "dbr", "once", "touched=yes")
    backup_ns.kubectl("annotate", "dbr", "once", "note=again")
    backup_ns.apply(restore("once"))
    backup_ns.kubectl("delete", "job", "once-restore-g1", "--wait=true")
    wait_for(lambda: not backup_ns.items("jobs", "app.kubernetes.io/instance=once"), 20, "no Job")
    assert not backup_ns.items("jobs", "app.kubernetes.io/instance=once")
    assert _rstatus(backup_ns, "once")["phase"] == "Succeeded"
    # a new generation runs again, once
    backup_ns.kubectl(
        "patch", "dbr", "once", "--type=merge", "-p", '{"spec":{"target":{"dbname":"second"}}}'
    )
    st = wait_for(
        lambda: (
            (s := _rstatus(backup_ns, "once")).get("runGeneration") == 2
            and s.get("phase") == "Succeeded"
            and s
        ),
        90,
        "generation 2 restored",
    )
    assert st["jobName"] == "once-restore-g2"
    job2 = backup_ns.get("job", "once-restore-g2") or {}
    assert "second" in job2["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [j["metadata"]["name"] for j in backup_ns.items("jobs")] == ["once-restore-g2"]
    assert len(backup_ns.events("RestoreStarted", at_least=2)) == 2
    assert len(backup_ns.events("RestoreSucceeded", at_least=2)) == 2


def test_a_missing_target_secret_is_learned_from_the_kubelets_mount_failure(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    _with_backup(backup_ns)
    backup_ns.apply(restore("nosecret"))  # restore-pgpass does not exist yet
    st = wait_for(
        lambda: (s := _rstatus(backup_ns, "nosecret")).get("reason") == "SecretNotFound" and s,
        120,
        "reason SecretNotFound",
    )
    assert st["phase"] == "Running"  # the Job waits for the Secret
    assert "restore-pgpass" in st["message"]
    assert [e["type"] for e in backup_ns.events("SecretNotFound", at_least=1)] == ["Warning"]
    backup_ns.kubelet_event("FailedMount")
    # once the Secret exists the kubelet mounts it on its next try, and the restore runs
    add_secret(backup_ns, "restore-pgpass")
    assert _settled(backup_ns, "nosecret", timeout=180)["phase"] == "Succeeded"


# -- restore drills -------------------------------------------------------------------------
SCRATCH = {"host": "scratch.example", "pgpassSecretRef": {"name": "scratch"}}


def _drilled(ns: Namespace, scenario: str, **drill: Any) -> None:
    """DatabaseBackup `nightly`, drilled after every backup by drill/<scenario>."""
    ns.add_pgpass_secret("unused")
    add_secret(ns, "scratch")
    drill = {"afterEveryBackup": True, "server": {**SCRATCH, "user": scenario}, **drill}
    ns.apply(scenario_backup("nightly", restoreDrill=drill))
    ready(ns, "nightly")


def _restorable(ns: Namespace, status: str) -> dict[str, Any]:
    cond: dict[str, Any] = wait_for(
        lambda: (c := ns.condition("nightly", "Restorable")).get("status") == status and c,
        90,
        f"Restorable={status}",
    )
    return cond


def _gauge(operator: OperatorProcess, metric: str, ns: Namespace) -> float | None:
    for series, value in promtool.samples(operator.metrics(), metric, namespace=ns.name):
        if series.startswith(metric + "{"):
            return float(value)
    return None


def test_a_drill_after_every_backup_verifies_the_artifact_in_status_and_metrics(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    _drilled(backup_ns, "drill")
    cond = wait_for(lambda: backup_ns.condition("nightly", "Restorable"), 20, "Restorable")
    assert (cond["status"], cond["reason"]) == ("Unknown", "NoDrillYet")
    _, st = run(backup_ns, "nightly", "run-1")
    artifact = st["lastSuccessfulBackup"]["artifact"]
    cond = _restorable(backup_ns, "True")
    assert cond["reason"] == "DrillPassed"
    job = backup_ns.get("job", drill_job_name("nightly", artifact)) or {}
    assert job["status"].get("succeeded") == 1
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["drill", artifact, "--source", "db.example:5432"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["PGHOST"], env["PGUSER"]) == ("scratch.example", "drill")
    assert {
        "name": "backup",
        "persistentVolumeClaim": {"claimName": "backups", "readOnly": True},
    } in pod["volumes"]
    assert [e["type"] for e in backup_ns.events("DrillStarted", at_least=1)] == ["Normal"]
    st = backup_ns.status("nightly")
    verified = st["lastVerifiedRestore"]
    assert verified["artifact"] == artifact
    assert verified["durationSeconds"] == 0.25
    assert verified["checksPassed"] == ["checksum", "restored", "tablesExist", "rowCounts"]
    assert verified["tablesChecked"] == 3
    (entry,) = st["artifacts"]
    assert (entry["name"], entry["sizeBytes"]) == (artifact, 5 * 1024 * 1024)
    assert entry["verifiedRestoreTime"] == verified["time"]
    assert [e["type"] for e in backup_ns.events("DrillPassed", at_least=1)] == ["Normal"]
    wait_for(
        lambda: _gauge(scenario_operator, "learnops_backup_restorable", backup_ns) == 1.0,
        10,
        "gauge 1",
    )
    unverified = "learnops_backup_unverified_since_timestamp_seconds"
    assert _gauge(scenario_operator, unverified, backup_ns) == 0.0
    assert "RESTORABLE" in backup_ns.kubectl("get", "dbb", "nightly", "-o", "wide")


def test_a_failed_drill_sets_restorable_false_and_the_shipped_alerts_select_it(
    backup_ns: Namespace, scenario_operator: OperatorProcess, tmp_path: Path
) -> None:
    _drilled(backup_ns, "bad", verificationWindowSeconds=600)
    _, st = run(backup_ns, "nightly", "run-1")
    artifact = st["lastSuccessfulBackup"]["artifact"]
    cond = _restorable(backup_ns, "False")
    assert cond["reason"] == "VerificationError"
    assert f"{artifact}: sha256 differs from its manifest" in cond["message"]
    st = backup_ns.status("nightly")
    failed = st["lastFailedDrill"]
    assert (failed["artifact"], failed["reason"]) == (artifact, "VerificationError")
    assert "lastVerifiedRestore" not in st
    (entry,) = st["artifacts"]
    assert "verifiedRestoreTime" not in entry  # only a passed drill verifies an artifact
    assert [e["type"] for e in backup_ns.events("DrillFailed", at_least=1)] == ["Warning"]
    operator = scenario_operator
    wait_for(
        lambda: _gauge(operator, "learnops_backup_restorable", backup_ns) == 0.0, 10, "gauge 0"
    )
    unverified = _gauge(operator, "learnops_backup_unverified_since_timestamp_seconds", backup_ns)
    assert unverified is not None
    assert unverified > 0
    assert _gauge(operator, "learnops_backup_restore_verification_window_seconds", backup_ns) == 600

    # The chart's rules on the scraped series. promtool's clock starts at 0, so the backup's
    # finish time is moved to t=60s; the window (600 s) and the 0/1 values are as scraped.
    (rule,) = [d for d in render("full-monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    series = [
        (s, "60" if s.startswith("learnops_backup_unverified_since") else v)
        for s, v in promtool.samples(
            operator.metrics(), "learnops_backup_", namespace=backup_ns.name
        )
    ]
    labels = {"namespace": backup_ns.name, "name": "nightly", "severity": "warning"}
    proc = promtool.firing(
        tmp_path,
        rule,
        series,
        "30m",
        {"LearnopsBackupNotRestorable": [labels], "LearnopsBackupNotVerified": [labels]},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ... and before the window has passed, the newest backup is not yet overdue.
    proc = promtool.firing(tmp_path, rule, series, "5m", {"LearnopsBackupNotVerified": []})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_inventory_lists_the_newest_artifacts_first_and_no_more_than_keep_last(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    backup_ns.add_pgpass_secret("unused")
    backup_ns.apply(scenario_backup("nightly", retention={"keepLast": 2}))
    ready(backup_ns, "nightly")
    made = [
        run(backup_ns, "nightly", f"run-{i}")[1]["lastSuccessfulBackup"]["artifact"]
        for i in (1, 2, 3)
    ]
    assert len(set(made)) == 3
    names = [a["name"] for a in backup_ns.status("nightly")["artifacts"]]
    assert names == [made[2], made[1]]
