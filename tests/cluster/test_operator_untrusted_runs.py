"""A run's word is untrusted: hostile termination messages and look-alike Jobs, through real
Job and Pod objects (the kubelet's part is written through pods/status, as in
tests/cluster/test_operator_runs.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, backup, dump_summary


def _status(ns: Namespace, name: str) -> dict[str, Any]:
    return dict((ns.get("databasebackup", name) or {}).get("status") or {})


def _run(ns: Namespace, token: str, exit_code: int, message: str) -> str:
    ns.kubectl("annotate", "dbb", "nightly", "--overwrite", f"learnops.io/backup-now={token}")
    job: str = wait_for(
        lambda: [
            j["metadata"]["name"]
            for j in ns.items("jobs")
            if j["metadata"]["annotations"].get("learnops.io/backup-now-token") == token
        ],
        15,
        f"the Job of {token}",
    )[0]
    pod = ns.job_pod(job)
    ns.finish_pod(pod["metadata"]["name"], exit_code, message)
    wait_for(lambda: _status(ns, "nightly").get("lastReportedJob") == job, 30, f"{job} recorded")
    return job


def _hostile(kind: str) -> str:
    summary = dump_summary("nightly")
    if kind == "huge":
        summary["message"] = "x" * 60_000  # 15 times the kubelet's limit (and within argv's)
    elif kind == "escape":
        summary["artifact"] = "nightly-20261130T020000Z\x1b]8;;http://evil\x07.dump"
    elif kind == "nan":
        return json.dumps(summary).replace('"durationSeconds": 2.5', '"durationSeconds": NaN')
    elif kind == "other-prefix":
        summary["artifact"] = "payroll-20261130T020000Z.dump"
    return json.dumps(summary)


@pytest.mark.parametrize("kind", ["huge", "escape", "nan", "other-prefix"])
def test_a_hostile_summary_is_refused_with_a_warning_and_never_counts_as_a_backup(
    backup_ns: Namespace, operator: OperatorProcess, kind: str
) -> None:
    backup_ns.apply(backup("nightly", backoffLimit=0))
    wait_for(lambda: backup_ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")
    job = _run(backup_ns, "hostile", 0, _hostile(kind))
    st = _status(backup_ns, "nightly")
    assert "lastSuccessfulBackup" not in st
    assert st["lastFailedBackup"]["reason"] == "InvalidSummary"
    assert st["lastFailedBackup"]["job"] == job
    text = json.dumps(st)
    assert "\\u001b" not in text
    assert "payroll" not in text
    assert len(text) < 8192
    warnings = backup_ns.events("TerminationMessageRejected")
    assert [e["type"] for e in warnings] == ["Warning"]
    assert job in warnings[0]["message"]


def test_a_finish_time_in_2099_does_not_freeze_later_results(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly", backoffLimit=0))
    wait_for(lambda: backup_ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")
    future = dump_summary("nightly")
    future["finishedAt"] = "2099-12-31T23:59:59Z"
    _run(backup_ns, "future", 0, json.dumps(future))
    st = _status(backup_ns, "nightly")
    assert st["lastSuccessfulBackup"]["time"] < "2099"
    assert st["lastReportedTime"] < "2099"
    # a later failure is still reported
    failed = _run(backup_ns, "later", 3, json.dumps(dump_summary("nightly", ok=False)))
    st = _status(backup_ns, "nightly")
    assert st["lastFailedBackup"]["job"] == failed
    assert st["consecutiveFailures"] == 1


def test_a_job_with_our_labels_but_no_owner_is_not_a_backup(
    kube_cluster: KubeCluster, backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    wait_for(lambda: backup_ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")
    cronjob = backup_ns.get("cronjob", "nightly-backup") or {}
    forged: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "nightly-forged",
            "labels": cronjob["metadata"]["labels"],
        },
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }
    backup_ns.apply(forged)
    pod = backup_ns.job_pod("nightly-forged")
    backup_ns.finish_pod(pod["metadata"]["name"], 0, json.dumps(dump_summary("nightly")))
    wait_for(lambda: backup_ns.events("ForeignJobIgnored"), 30, "the ForeignJobIgnored Warning")
    wait_for(
        lambda: (
            (j := backup_ns.get("job", "nightly-forged") or {})
            and condition(j.get("status"), "Complete")
        ),
        30,
        "the forged Job to complete",
    )
    st = _status(backup_ns, "nightly")
    assert "lastSuccessfulBackup" not in st
    assert st.get("lastReportedJob") != "nightly-forged"
    (event,) = backup_ns.events("ForeignJobIgnored")
    assert event["type"] == "Warning"
    assert "nightly-forged" in event["message"]
