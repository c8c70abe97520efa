"""A run's word is untrusted, said by pods that really run: each backup pod here plays a hostile
scenario of tests/e2e/scenario-image (oversized, not JSON, lying, escape sequences, another
resource's artifact, secrets in the text), and its termination message reaches the operator the
way a kubelet reports it (cut to 4 KiB, its exit code and times the kubelet's own).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess
from tests.support.scenario_pods import (
    events_of,
    ready,
    recorded,
    run,
    scenario_backup,
    shared_namespace,
    trigger,
)

# scenario (= DatabaseBackup name) -> (reason on the resource, exit code, refused with a Warning)
HOSTILE = {
    # 60 kB of message: the kubelet keeps the last 4 KiB, which is no summary
    "huge": ("NoSummary", 0, False),
    "text": ("NoSummary", 0, False),  # "backup done, trust me"
    "escape": ("InvalidSummary", 0, True),  # an OSC 8 hyperlink in the artifact name
    "nan": ("InvalidSummary", 0, True),  # durationSeconds: NaN
    "other-prefix": ("InvalidSummary", 0, True),  # claims payroll's artifact
    "lying": ("ConnectionError", 3, True),  # says "ok, exit 0" from a container that exited 3
    "leaky": ("ConnectionError", 3, False),  # a URL with a password and password=...
}
LEAK = "hunter2-scenario-canary"  # what scenarios/run/leaky prints


@pytest.fixture(scope="module")
def hostile(
    kube_cluster: KubeCluster, operator_kubeconfig: object, scenario_operator: OperatorProcess
) -> Iterator[tuple[Namespace, dict[str, str]]]:
    """Every hostile scenario run once, side by side: (namespace, Job of each scenario)."""
    with shared_namespace(kube_cluster) as ns:
        for name in HOSTILE:
            ns.apply(scenario_backup(name, name))
        for name in HOSTILE:
            ready(ns, name)
        jobs = {name: trigger(ns, name, "hostile") for name in HOSTILE}
        for name, job in jobs.items():
            recorded(ns, name, job, timeout=120)
        yield ns, jobs


@pytest.mark.parametrize("scenario", list(HOSTILE))
def test_a_hostile_pod_never_counts_as_a_backup_and_its_failure_is_bounded(
    hostile: tuple[Namespace, dict[str, str]], scenario_operator: OperatorProcess, scenario: str
) -> None:
    ns, jobs = hostile
    reason, exit_code, refused = HOSTILE[scenario]
    job = jobs[scenario]
    st = ns.status(scenario)
    assert "lastSuccessfulBackup" not in st, st
    assert not st.get("artifacts"), st
    assert st["lastResult"] == "Failed"
    failed = st["lastFailedBackup"]
    assert (failed["reason"], failed["job"], failed.get("exitCode")) == (reason, job, exit_code)
    text = json.dumps(st)
    assert "\\u001b" not in text
    assert "evil" not in text
    assert "payroll" not in text
    assert len(text) < 8192
    warnings = events_of(ns, "TerminationMessageRejected", scenario, at_least=int(refused))
    if refused:
        assert [e["type"] for e in warnings] == ["Warning"]
        assert job in warnings[0]["message"]
    else:
        assert warnings == []
    assert [e["type"] for e in events_of(ns, "BackupFailed", scenario, at_least=1)] == ["Warning"]
    line = f'learnops_backup_last_result{{name="{scenario}",namespace="{ns.name}"}} 0.0'
    wait_for(lambda: line in scenario_operator.metrics(), 15, f"{line} in the metrics")


def test_the_kubelet_cuts_an_oversized_message_to_4_kib_before_the_operator_reads_it(
    hostile: tuple[Namespace, dict[str, str]],
) -> None:
    ns, jobs = hostile
    [pod] = ns.items("pods", f"job-name={jobs['huge']}")
    [container] = pod["status"]["containerStatuses"]
    message = container["state"]["terminated"]["message"]
    assert 0 < len(message.encode()) <= 4096
    assert not message.startswith("{")  # the tail of the summary, not its head


def test_secrets_in_a_pods_message_are_masked_before_status_and_events(
    hostile: tuple[Namespace, dict[str, str]], scenario_operator: OperatorProcess
) -> None:
    ns, _ = hostile
    message = ns.status("leaky")["lastFailedBackup"]["message"]
    assert "postgresql://***@db.example/app" in message
    assert "password=***" in message
    written = ns.kubectl("get", "databasebackups,cronjobs,jobs,events", "-o", "json")
    assert LEAK not in written
    assert LEAK not in scenario_operator.logs()


def test_a_finish_time_in_2099_does_not_freeze_later_results(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    backup_ns.add_pgpass_secret("unused")
    backup_ns.apply(scenario_backup("nightly", "future"))
    ready(backup_ns, "nightly")
    _, st = run(backup_ns, "nightly", "future")
    assert st["lastResult"] == "Succeeded", st
    assert st["lastSuccessfulBackup"]["time"] < "2099"
    assert st["lastReportedTime"] < "2099"
    # a later failure is still reported
    patch = {"spec": {"database": {"user": "failed"}}}
    backup_ns.kubectl("patch", "dbb", "nightly", "--type=merge", "-p", json.dumps(patch))
    failed, st = run(backup_ns, "nightly", "later")
    assert st["lastFailedBackup"]["job"] == failed
    assert st["lastFailedBackup"]["reason"] == "ConnectionError"
    assert st["consecutiveFailures"] == 1
    assert st["lastSuccessfulBackup"]["time"] < st["lastReportedTime"] < "2099"


def test_a_job_with_our_labels_but_no_owner_is_not_a_backup(
    backup_ns: Namespace, scenario_operator: OperatorProcess
) -> None:
    backup_ns.add_pgpass_secret("unused")
    backup_ns.apply(scenario_backup("nightly"))  # its pods would report a success
    ready(backup_ns, "nightly")
    cronjob = backup_ns.get("cronjob", "nightly-backup") or {}
    forged: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nightly-forged", "labels": cronjob["metadata"]["labels"]},
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }
    backup_ns.apply(forged)
    wait_for(
        lambda: (
            (j := backup_ns.get("job", "nightly-forged") or {})
            and condition(j.get("status"), "Complete").get("status") == "True"
        ),
        90,
        "the forged Job's real pod to succeed",
    )
    wait_for(lambda: backup_ns.events("ForeignJobIgnored"), 30, "the ForeignJobIgnored Warning")
    st = backup_ns.status("nightly")
    assert "lastSuccessfulBackup" not in st
    assert st.get("lastReportedJob") != "nightly-forged"
    (event,) = backup_ns.events("ForeignJobIgnored")
    assert event["type"] == "Warning"
    assert "nightly-forged" in event["message"]
