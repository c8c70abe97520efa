"""Scheduled restore drills on the control plane alone: their own CronJob, its drift repaired,
suspended when the drill is dropped.

What drills then report (lastVerifiedRestore, Restorable, the drill gauges and the chart's alerts
on them) and the inventory of runs need pods that really run: tests/e2e/test_restore_status_e2e.py.
"""

from __future__ import annotations

from typing import Any

from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, backup

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
