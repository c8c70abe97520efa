"""The pure decisions: what should happen for one object, before any API call is made."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from learnops_operator import drift, ondemand, ours, reconcile, runs
from learnops_operator.policy import PodPolicy

IMAGE = PodPolicy(default_image="registry.example/learnops/dump:1.2.3")


def _backup(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseBackup",
        "metadata": {
            "name": "nightly",
            "namespace": "team-a",
            "uid": "uid-1",
            "generation": 2,
            "annotations": {},
        },
        "spec": {
            "schedule": "30 2 * * *",
            "database": {
                "host": "db",
                "dbname": "app",
                "user": "backup",
                "pgpassSecretRef": {"name": "pg"},
            },
            "storage": {"persistentVolumeClaim": {"claimName": "backups"}},
        },
        "status": dict(status),
    }


def _live_cronjob(backup: dict[str, Any]) -> dict[str, Any]:
    plan = reconcile.desired(backup, IMAGE)
    assert isinstance(plan, reconcile.Desired)
    live = copy.deepcopy(plan.cronjob)
    live["metadata"]["resourceVersion"] = "7"
    live["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    return live


def test_a_valid_resource_is_planned_as_its_cronjob() -> None:
    plan = reconcile.desired(_backup(), IMAGE)
    assert isinstance(plan, reconcile.Desired)
    assert plan.cronjob["metadata"]["name"] == "nightly-backup"
    assert plan.cronjob["metadata"]["labels"] == ours.labels("nightly")


def test_an_invalid_spec_is_planned_as_the_reason_and_no_cronjob() -> None:
    body = _backup()
    body["spec"]["schedule"] = "every night"
    plan = reconcile.desired(body, IMAGE)
    assert isinstance(plan, reconcile.Invalid)
    assert "5-field cron" in plan.why


def test_a_new_backup_now_token_plans_exactly_its_job() -> None:
    body = _backup()
    body["metadata"]["annotations"]["learnops.io/backup-now"] = "t1"
    run = ondemand.decide(body, IMAGE)
    assert run is not None
    assert run.token == "t1"
    assert run.job["metadata"]["annotations"]["learnops.io/backup-now-token"] == "t1"
    assert ondemand.decide(body, IMAGE) == run  # the same token always names the same Job


@pytest.mark.parametrize(
    "change",
    ["no token", "token already started", "being deleted", "invalid spec"],
)
def test_no_job_is_planned_without_a_new_token_for_a_valid_living_resource(change: str) -> None:
    body = _backup()
    if change != "no token":
        body["metadata"]["annotations"]["learnops.io/backup-now"] = "t1"
    if change == "token already started":
        body["status"]["lastOnDemandToken"] = "t1"
    if change == "being deleted":
        body["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    if change == "invalid spec":
        body["spec"]["timeZone"] = "Mars/Olympus"
    assert ondemand.decide(body, IMAGE) is None


def test_our_own_apply_echoed_back_needs_no_repair() -> None:
    backup = _backup()
    assert drift.decide(backup, "MODIFIED", _live_cronjob(backup), IMAGE) is None


def test_an_edited_cronjob_is_planned_for_revert() -> None:
    backup = _backup()
    live = _live_cronjob(backup)
    live["spec"]["schedule"] = "* * * * *"
    fix = drift.decide(backup, "MODIFIED", live, IMAGE)
    assert fix is not None
    assert (fix.revert, fix.recreate) == (True, False)
    assert fix.cronjob["spec"]["schedule"] == "30 2 * * *"


def test_a_removed_owner_reference_is_drift() -> None:
    backup = _backup()
    live = _live_cronjob(backup)
    live["metadata"]["ownerReferences"] = []
    fix = drift.decide(backup, "MODIFIED", live, IMAGE)
    assert fix is not None
    assert fix.revert


def test_a_deleted_cronjob_of_a_living_owner_is_planned_for_recreation() -> None:
    backup = _backup()
    fix = drift.decide(backup, "DELETED", _live_cronjob(backup), IMAGE)
    assert fix is not None
    assert fix.recreate


def test_a_new_schedule_time_is_mirrored_without_a_revert() -> None:
    backup = _backup(lastScheduleTime="2026-11-29T02:30:00Z")
    live = _live_cronjob(backup)
    live["status"] = {"lastScheduleTime": "2026-11-30T02:30:00Z"}
    fix = drift.decide(backup, "MODIFIED", live, IMAGE)
    assert fix is not None
    assert (fix.revert, fix.schedule_time) == (False, "2026-11-30T02:30:00Z")
    backup["status"]["lastScheduleTime"] = "2026-11-30T02:30:00Z"
    assert drift.decide(backup, "MODIFIED", live, IMAGE) is None


def test_look_alikes_and_owners_going_away_need_no_repair() -> None:
    backup = _backup()
    other = _live_cronjob(backup)
    other["metadata"]["name"] = "copied-labels"
    other["spec"]["schedule"] = "* * * * *"
    assert drift.decide(backup, "MODIFIED", other, IMAGE) is None
    foreign = _live_cronjob(backup)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert drift.decide(backup, "DELETED", foreign, IMAGE) is None
    assert drift.decide(None, "DELETED", _live_cronjob(backup), IMAGE) is None
    going = _backup()
    going["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert drift.decide(going, "DELETED", _live_cronjob(backup), IMAGE) is None


def _job(name: str, finished: bool) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if finished else []
    return {
        "metadata": {"name": name, "namespace": "team-a", "labels": ours.labels("nightly")},
        "status": {"conditions": conditions},
    }


def test_a_finished_job_not_yet_recorded_is_planned_for_recording() -> None:
    run = runs.decide(_job("nightly-1", True), _backup(lastReportedJob="nightly-0"))
    assert run == runs.Finished(("team-a", "nightly"), "nightly-1")
    # an owner the mirror has not seen yet: still recorded (the write reads it)
    assert runs.decide(_job("nightly-1", True), None) == run


def test_running_recorded_and_unlabelled_jobs_need_nothing() -> None:
    assert runs.decide(_job("nightly-1", False), _backup()) is None
    assert runs.decide(_job("nightly-1", True), _backup(lastReportedJob="nightly-1")) is None
    unlabelled = _job("nightly-1", True)
    unlabelled["metadata"]["labels"] = {}
    assert runs.decide(unlabelled, _backup()) is None


def test_labels_alone_do_not_make_a_child_ours() -> None:
    backup = _backup()
    child: dict[str, Any] = {"metadata": {"namespace": "team-a", "labels": ours.labels("nightly")}}
    assert ours.owner_key(child) == ("team-a", "nightly")
    assert not ours.controlled_by(child, backup)
    child["metadata"]["ownerReferences"] = [ours.owner_reference(_owner(backup))]
    assert ours.controlled_by(child, backup)


def _owner(backup: dict[str, Any]) -> Any:
    plan = reconcile.desired(backup, IMAGE)
    assert isinstance(plan, reconcile.Desired)
    return plan.owner
