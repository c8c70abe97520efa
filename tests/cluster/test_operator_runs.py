"""On-demand runs on the control plane alone: which Jobs the operator creates for which token.

What the runs then report (termination messages into status, Events, metrics, missed runs) needs
pods that really run: tests/e2e/test_operator_e2e.py.
"""

from __future__ import annotations

from tests.harness.wait import wait_for
from tests.support.operator import (
    Namespace,
    OperatorProcess,
    backup,
)


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
    assert len(backup_ns.events("BackupStarted", at_least=2)) == 2
