"""Restore drills and the inventory on a DatabaseBackup: drill Jobs after each backup or on a
schedule, their results in status (lastVerifiedRestore, Restorable, verifiedRestoreTime), the
drill gauges, and the chart's alert rules evaluated on those gauges by promtool.

No kubelet here: pods' terminated states are written through pods/status (as a kubelet would).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.harness import promtool
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, backup, dump_summary
from tests.support.ship import render

SCRATCH = {"host": "scratch.example", "user": "drill", "pgpassSecretRef": {"name": "scratch"}}


def _status(ns: Namespace, name: str = "nightly") -> dict[str, Any]:
    return dict((ns.get("databasebackup", name) or {}).get("status") or {})


def _ready(ns: Namespace, name: str = "nightly") -> None:
    wait_for(lambda: ns.condition(name, "Ready").get("status") == "True", 20, "Ready=True")


def _backup_run(ns: Namespace, token: str, artifact: str) -> None:
    """One on-demand backup run that succeeds with `artifact`."""
    ns.kubectl("annotate", "dbb", "nightly", "--overwrite", f"learnops.io/backup-now={token}")
    job = f"nightly-now-{hashlib.sha256(token.encode()).hexdigest()[:10]}"
    ns.run_job(
        job,
        0,
        dump_summary(
            "nightly", artifact=artifact, sha256=hashlib.sha256(artifact.encode()).hexdigest()
        ),
    )
    wait_for(lambda: _status(ns).get("lastReportedJob") == job, 30, f"{job} recorded")


def drill_summary(ok: bool, artifact: str, **overrides: Any) -> dict[str, Any]:
    """What `learnops-dump drill` writes as its termination message."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data: dict[str, Any] = {
        "status": "ok" if ok else "failed",
        "exitCode": 0 if ok else 7,
        "reason": "Ok" if ok else "VerificationError",
        "message": "" if ok else f"{artifact}: sha256 differs from its manifest",
        "kind": "drill",
        "artifact": artifact,
        "sizeBytes": 5 * 1024 * 1024,
        "sha256": "cd" * 32,
        "startedAt": now,
        "finishedAt": now,
        "durationSeconds": 3.25,
        "runnerVersion": "0.1.0",
        "tablesChecked": 3,
        "rowsChecked": 42,
        "checksPassed": ["checksum", "restored", "tablesExist", "rowCounts"] if ok else [],
    }
    data.update(overrides)
    return data


def _drill_job(ns: Namespace, artifact: str) -> dict[str, Any]:
    name = f"nightly-drill-{hashlib.sha256(artifact.encode()).hexdigest()[:10]}"
    job: dict[str, Any] = wait_for(lambda: ns.get("job", name), 20, f"drill Job {name}")
    return job


def _gauge(operator: OperatorProcess, metric: str, ns: Namespace) -> float | None:
    for series, value in promtool.samples(operator.metrics(), metric, namespace=ns.name):
        if series.startswith(metric + "{"):
            return float(value)
    return None


def test_a_drill_after_every_backup_verifies_the_artifact_in_status_and_metrics(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly", restoreDrill={"afterEveryBackup": True, "server": SCRATCH}))
    _ready(backup_ns)
    cond = wait_for(lambda: backup_ns.condition("nightly", "Restorable"), 20, "Restorable")
    assert (cond["status"], cond["reason"]) == ("Unknown", "NoDrillYet")
    _backup_run(backup_ns, "run-1", "nightly-20261130T020000Z.dump")
    st = _status(backup_ns)
    (entry,) = st["artifacts"]
    assert entry["name"] == "nightly-20261130T020000Z.dump"
    assert entry["sizeBytes"] == 5 * 1024 * 1024
    assert "verifiedRestoreTime" not in entry
    job = _drill_job(backup_ns, entry["name"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["drill", entry["name"], "--source", "db.example:5432"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["PGHOST"], env["PGUSER"]) == ("scratch.example", "drill")
    assert {
        "name": "backup",
        "persistentVolumeClaim": {"claimName": "backups", "readOnly": True},
    } in pod["volumes"]
    assert [e["type"] for e in backup_ns.events("DrillStarted")] == ["Normal"]
    backup_ns.run_job(job["metadata"]["name"], 0, drill_summary(True, entry["name"]))
    cond = wait_for(
        lambda: (c := backup_ns.condition("nightly", "Restorable")).get("status") == "True" and c,
        30,
        "Restorable=True",
    )
    assert cond["reason"] == "DrillPassed"
    st = _status(backup_ns)
    verified = st["lastVerifiedRestore"]
    assert verified["artifact"] == entry["name"]
    assert verified["durationSeconds"] == 3.25
    assert verified["checksPassed"] == ["checksum", "restored", "tablesExist", "rowCounts"]
    assert verified["tablesChecked"] == 3
    assert st["artifacts"][0]["verifiedRestoreTime"] == verified["time"]
    assert [e["type"] for e in backup_ns.events("DrillPassed")] == ["Normal"]
    wait_for(
        lambda: _gauge(operator, "learnops_backup_restorable", backup_ns) == 1.0, 10, "gauge 1"
    )
    assert _gauge(operator, "learnops_backup_unverified_since_timestamp_seconds", backup_ns) == 0.0
    assert "RESTORABLE" in backup_ns.kubectl("get", "dbb", "nightly", "-o", "wide")


def test_a_failed_drill_sets_restorable_false_and_the_shipped_alerts_select_it(
    backup_ns: Namespace, operator: OperatorProcess, tmp_path: Path
) -> None:
    backup_ns.apply(
        backup(
            "nightly",
            restoreDrill={
                "afterEveryBackup": True,
                "server": SCRATCH,
                "verificationWindowSeconds": 600,
            },
        )
    )
    _ready(backup_ns)
    artifact = "nightly-20261201T020000Z.dump"
    _backup_run(backup_ns, "run-1", artifact)
    job = _drill_job(backup_ns, artifact)
    backup_ns.run_job(job["metadata"]["name"], 7, drill_summary(False, artifact))
    cond = wait_for(
        lambda: (c := backup_ns.condition("nightly", "Restorable")).get("status") == "False" and c,
        30,
        "Restorable=False",
    )
    assert cond["reason"] == "VerificationError"
    assert "sha256 differs from its manifest" in cond["message"]
    failed = _status(backup_ns)["lastFailedDrill"]
    assert (failed["artifact"], failed["reason"]) == (artifact, "VerificationError")
    assert [e["type"] for e in backup_ns.events("DrillFailed")] == ["Warning"]
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
    assert backup_ns.events("DriftReverted")
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


def test_the_inventory_lists_the_newest_artifacts_first_and_no_more_than_keep_last(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly", retention={"keepLast": 2}))
    _ready(backup_ns)
    for i in (1, 2, 3):
        _backup_run(backup_ns, f"run-{i}", f"nightly-2026120{i}T020000Z.dump")
    names = [a["name"] for a in _status(backup_ns)["artifacts"]]
    assert names == ["nightly-20261203T020000Z.dump", "nightly-20261202T020000Z.dump"]
