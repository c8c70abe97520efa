"""Runs and their results: on-demand Jobs, termination messages into status, Events, metrics.

No kubelet runs here: the tests write the pod's terminated state through pods/status, exactly
what the kubelet would write, so the same assertions hold when pods really run.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fixtures_operator import (
    Namespace,
    OperatorProcess,
    backup,
    dump_summary,
    wait_for,
)
from tests.harness.kube import KubeCluster


def _status(ns: Namespace, name: str) -> dict[str, object]:
    return dict((ns.get("databasebackup", name) or {}).get("status") or {})


def _ready(ns: Namespace, name: str) -> None:
    wait_for(lambda: ns.condition(name, "Ready").get("status") == "True", 20, "Ready=True")


def test_backup_now_starts_exactly_one_job_per_token(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    _ready(backup_ns, "nightly")
    backup_ns.kubectl("annotate", "dbb", "nightly", "learnops.io/backup-now=first")
    wait_for(
        lambda: _status(backup_ns, "nightly").get("lastOnDemandToken") == "first",
        15,
        "the token to be recorded",
    )
    # the same token again (e.g. re-applied manifests) and unrelated churn: still one Job
    backup_ns.kubectl("annotate", "dbb", "nightly", "--overwrite", "learnops.io/backup-now=first")
    backup_ns.kubectl("label", "dbb", "nightly", "touched=yes")
    jobs = backup_ns.items("jobs")
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["annotations"]["learnops.io/backup-now-token"] == "first"
    assert job["metadata"]["labels"]["learnops.io/trigger"] == "on-demand"
    cronjob = backup_ns.get("cronjob", "nightly-backup") or {}
    assert (
        job["spec"]["template"]["spec"]["containers"]
        == (cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"])
    )
    backup_ns.kubectl("annotate", "dbb", "nightly", "--overwrite", "learnops.io/backup-now=second")
    wait_for(lambda: len(backup_ns.items("jobs")) == 2, 15, "a second Job for a new token")
    assert len(backup_ns.events("BackupStarted")) == 2


def test_a_successful_run_reaches_status_events_and_metrics(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    _ready(backup_ns, "nightly")
    backup_ns.kubectl("annotate", "dbb", "nightly", "learnops.io/backup-now=run-1")
    job = wait_for(lambda: backup_ns.items("jobs"), 15, "the Job")[0]["metadata"]["name"]
    summary = dump_summary("nightly")
    backup_ns.run_job(job, 0, summary)
    st = wait_for(
        lambda: (s := _status(backup_ns, "nightly")).get("lastResult") and s,
        30,
        "the result in status",
    )
    assert st["lastResult"] == "Succeeded"
    assert st["consecutiveFailures"] == 0
    success = st["lastSuccessfulBackup"]
    assert isinstance(success, dict)
    assert success["job"] == job
    assert success["artifact"] == "nightly-20261130T020000Z.dump"
    assert success["sizeBytes"] == 5 * 1024 * 1024
    assert success["sha256"] == summary["sha256"]
    assert success["durationSeconds"] == 2.5
    assert backup_ns.condition("nightly", "LastBackupSucceeded")["status"] == "True"
    row = backup_ns.kubectl("get", "dbb", "nightly", "--no-headers").split()
    assert "Succeeded" in row
    assert "5.0Mi" in row
    events = backup_ns.events("BackupSucceeded")
    assert [e["type"] for e in events] == ["Normal"]
    metrics = operator.metrics()
    assert f'learnops_backup_last_result{{name="nightly",namespace="{backup_ns.name}"}} 1.0' in (
        metrics
    )
    assert f'learnops_backup_last_size_bytes{{name="nightly",namespace="{backup_ns.name}"}}' in (
        metrics
    )


def test_each_database_and_the_globals_get_their_own_status_entry(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    manifest = backup("multi", globals=True)
    manifest["spec"]["database"]["dbnames"] = ["app", "crm"]
    backup_ns.apply(manifest)
    _ready(backup_ns, "multi")
    backup_ns.kubectl("annotate", "dbb", "multi", "learnops.io/backup-now=run-1")
    job = wait_for(lambda: backup_ns.items("jobs"), 15, "the Job")[0]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKUP_DATABASES"] == '["app", "crm"]'
    assert env["BACKUP_GLOBALS"] == "true"
    sha = "ab" * 32
    lines = [
        {"database": d, "status": "ok", "artifact": f"multi-20261130T020000Z.{d}.dump",
         "sizeBytes": 100, "sha256": sha}
        for d in ("app", "crm")
    ]  # fmt: skip
    globals_ = {"status": "ok", "artifact": "multi-20261130T020000Z.globals.sql",
                "sizeBytes": 7, "sha256": sha, "rolePasswords": False}  # fmt: skip
    summary = dump_summary("multi", artifact=None, sha256=None, databases=lines, globals=globals_)
    backup_ns.run_job(job["metadata"]["name"], 0, summary)
    st = wait_for(
        lambda: (s := _status(backup_ns, "multi")).get("lastResult") and s, 30, "the result"
    )
    success = st["lastSuccessfulBackup"]
    assert isinstance(success, dict)
    assert success["databases"] == [
        {k: v for k, v in line.items() if k != "status"} for line in lines
    ]
    assert success["globals"] == {k: v for k, v in globals_.items() if k != "status"}
    assert "2 database artifacts" in backup_ns.condition("multi", "LastBackupSucceeded")["message"]


def _fail_once(ns: Namespace, token: str, failures: int) -> None:
    ns.kubectl("annotate", "dbb", "nightly", "--overwrite", f"learnops.io/backup-now={token}")

    def job_of_token() -> list[dict[str, Any]]:
        return [
            j
            for j in ns.items("jobs")
            if j["metadata"]["annotations"]["learnops.io/backup-now-token"] == token
        ]

    job = wait_for(job_of_token, 15, f"the Job for {token}")[0]
    ns.run_job(job["metadata"]["name"], 3, dump_summary("nightly", ok=False))
    wait_for(
        lambda: _status(ns, "nightly").get("consecutiveFailures") == failures,
        30,
        f"failure {failures} in status",
    )


def test_failed_runs_are_counted_and_reported_once_each(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly", backoffLimit=0))
    _ready(backup_ns, "nightly")
    for attempt in (1, 2):
        _fail_once(backup_ns, f"fail-{attempt}", attempt)
    st = _status(backup_ns, "nightly")
    failed = st["lastFailedBackup"]
    assert isinstance(failed, dict)
    assert (failed["reason"], failed["exitCode"]) == ("ConnectionError", 3)
    assert failed["message"] == "could not connect to server"
    cond = backup_ns.condition("nightly", "LastBackupSucceeded")
    assert (cond["status"], cond["reason"]) == ("False", "ConnectionError")
    assert [e["type"] for e in backup_ns.events("BackupFailed")] == ["Warning", "Warning"]
    assert st["lastResult"] == "Failed"


def test_a_canary_password_never_leaves_its_secret(
    kube_cluster: KubeCluster, backup_ns: Namespace, operator: OperatorProcess
) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    backup_ns.add_pgpass_secret(canary)
    backup_ns.apply(backup("leaky", backoffLimit=0))
    _ready(backup_ns, "leaky")
    backup_ns.kubectl("annotate", "dbb", "leaky", "learnops.io/backup-now=leak")
    job = wait_for(lambda: backup_ns.items("jobs"), 15, "the Job")[0]["metadata"]["name"]
    # a runner that (wrongly) echoed the URL would still be masked on the way into status
    summary = dump_summary("leaky", ok=False)
    summary["message"] = f"auth failed for postgresql://backup:{canary}@db/app"
    backup_ns.run_job(job, 3, summary)
    wait_for(lambda: _status(backup_ns, "leaky").get("lastFailedBackup"), 30, "the failure")
    # everything the operator writes, plus the pods' specs (the Job controller copies our template)
    written = backup_ns.kubectl("get", "databasebackups,cronjobs,jobs,events,leases", "-o", "json")
    assert json.loads(written)["items"]
    assert canary not in written
    pods = json.loads(backup_ns.kubectl("get", "pods", "-o", "json"))["items"]
    assert pods
    assert canary not in json.dumps([[p["metadata"], p["spec"]] for p in pods])
    assert canary not in operator.logs()


def test_no_success_within_two_schedule_intervals_is_reported_as_missed_runs(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("stale", schedule="0 3 * * *"))
    _ready(backup_ns, "stale")
    # stand-in for history: the last success was three days ago (daily schedule)
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"status": {"lastSuccessfulBackup": {"time": three_days_ago, "job": "old"}}}
    backup_ns.kubectl(
        "patch", "dbb", "stale", "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
    cond = wait_for(
        lambda: (c := backup_ns.condition("stale", "OnSchedule")).get("status") == "False" and c,
        15,
        "OnSchedule=False",
    )
    assert cond["reason"] == "MissedRuns"
    assert "two schedule intervals" in cond["message"]
    assert [e["type"] for e in backup_ns.events("MissedRuns")] == ["Warning"]
    # a fresh success puts it back on schedule
    backup_ns.kubectl("annotate", "dbb", "stale", "learnops.io/backup-now=catch-up")
    job = wait_for(lambda: backup_ns.items("jobs"), 15, "the Job")[0]["metadata"]["name"]
    backup_ns.run_job(job, 0, dump_summary("stale"))
    wait_for(
        lambda: backup_ns.condition("stale", "OnSchedule").get("status") == "True",
        30,
        "OnSchedule=True after a success",
    )
