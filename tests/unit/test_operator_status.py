"""Status bookkeeping: conditions, recorded runs, next run times and overdue detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from learnops_operator import status
from learnops_operator.results import RunResult
from learnops_operator.spec import parse

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def _spec(schedule: str = "30 2 * * *", tz: str = "Etc/UTC", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "schedule": schedule,
        "timeZone": tz,
        "database": {"host": "db", "dbname": "app", "user": "u", "pgpassSecretRef": {"name": "s"}},
        "storage": {"persistentVolumeClaim": {"claimName": "pvc"}},
        "timeoutSeconds": 600,
    }
    body.update(extra)
    return parse(body)


def _ok(job: str, at: datetime) -> RunResult:
    return RunResult(job, True, "Ok", "", at, 0, "a.dump", 2048, "abc", 1.5)


def _failed(job: str, at: datetime, reason: str = "ConnectionError") -> RunResult:
    return RunResult(job, False, reason, "could not connect", at, 3)


def test_reconciled_sets_ready_with_observed_generation_and_next_run() -> None:
    st = status.reconciled({}, _spec(), "nightly-backup", 4, NOW)
    ready = status.condition(st, status.READY)
    assert ready is not None
    assert ready["status"] == "True"
    assert ready["observedGeneration"] == 4
    assert st["observedGeneration"] == 4
    assert st["cronJobName"] == "nightly-backup"
    assert st["nextScheduleTime"] == "2026-12-01T02:30:00Z"
    last = status.condition(st, status.LAST_BACKUP_SUCCEEDED)
    assert last is not None
    assert last["status"] == "Unknown"


def test_suspended_backups_have_no_next_run() -> None:
    st = status.reconciled({"nextScheduleTime": "x"}, _spec(suspend=True), "cj", 1, NOW)
    assert "nextScheduleTime" not in st


def test_next_run_honours_the_time_zone_across_daylight_saving() -> None:
    spec = _spec("30 2 * * *", "Europe/Berlin")
    # Berlin is UTC+1 in winter and UTC+2 in summer
    assert status.next_run(spec, NOW) == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert status.next_run(spec, summer) == datetime(2026, 7, 2, 0, 30, tzinfo=UTC)


def test_transition_time_only_moves_when_the_status_value_changes() -> None:
    first = status.set_condition({}, "Ready", "True", "A", "m", 1, NOW)
    later = NOW + timedelta(hours=1)
    same = status.set_condition(first, "Ready", "True", "B", "m2", 2, later)
    flipped = status.set_condition(same, "Ready", "False", "C", "m3", 2, later)
    assert status.condition(same, "Ready")["lastTransitionTime"] == "2026-11-30T04:00:00Z"  # type: ignore[index]
    assert status.condition(flipped, "Ready")["lastTransitionTime"] == "2026-11-30T05:00:00Z"  # type: ignore[index]


def test_failures_count_up_and_a_success_resets_them() -> None:
    st: dict[str, Any] = {}
    st = status.record(st, _failed("j1", NOW), 1, NOW)
    st = status.record(st, _failed("j2", NOW + timedelta(days=1), "Timeout"), 1, NOW)
    assert st["consecutiveFailures"] == 2
    assert st["lastResult"] == "Failed"
    assert st["lastFailedBackup"]["reason"] == "Timeout"
    assert status.condition(st, status.LAST_BACKUP_SUCCEEDED)["status"] == "False"  # type: ignore[index]
    st = status.record(st, _ok("j3", NOW + timedelta(days=2)), 1, NOW)
    assert st["consecutiveFailures"] == 0
    assert st["lastResult"] == "Succeeded"
    assert st["lastSuccessfulBackup"] == {
        "time": "2026-12-02T04:00:00Z",
        "job": "j3",
        "artifact": "a.dump",
        "sizeBytes": 2048,
        "size": "2.0Ki",
        "sha256": "abc",
        "durationSeconds": 1.5,
    }
    assert st["lastFailedBackup"]["job"] == "j2"  # history of the last failure is kept


def test_each_job_is_recorded_once_and_older_results_never_overwrite_newer_ones() -> None:
    st = status.record({}, _ok("j2", NOW), 1, NOW)
    assert not status.should_record(st, _ok("j2", NOW))  # re-delivered after a restart
    assert not status.should_record(st, _failed("j1", NOW - timedelta(hours=1)))
    assert status.should_record(st, _failed("j3", NOW + timedelta(minutes=1)))


def test_a_success_clears_a_missing_secret_verdict() -> None:
    st = status.not_ready({}, status.SECRET_NOT_FOUND, "gone", 1, NOW)
    st = status.record(st, _ok("j", NOW), 1, NOW)
    assert status.condition(st, status.READY)["status"] == "True"  # type: ignore[index]


def test_no_success_within_two_intervals_is_flagged_as_missed_runs() -> None:
    spec = _spec("0 * * * *")  # hourly, 600 s timeout
    created = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)
    on_time = status.schedule_check({}, spec, created, 1, datetime(2026, 11, 30, 2, 5, tzinfo=UTC))
    assert status.condition(on_time, status.ON_SCHEDULE)["status"] == "True"  # type: ignore[index]
    late = status.schedule_check({}, spec, created, 1, datetime(2026, 11, 30, 2, 11, tzinfo=UTC))
    cond = status.condition(late, status.ON_SCHEDULE)
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "MissedRuns")


def test_a_recent_success_keeps_the_backup_on_schedule() -> None:
    spec = _spec("0 * * * *")
    st = status.record({}, _ok("j", datetime(2026, 11, 30, 3, 0, tzinfo=UTC)), 1, NOW)
    checked = status.schedule_check(st, spec, datetime(2026, 1, 1, tzinfo=UTC), 1, NOW)
    assert status.condition(checked, status.ON_SCHEDULE)["status"] == "True"  # type: ignore[index]


def test_weekday_schedules_are_not_overdue_over_the_weekend() -> None:
    spec = _spec("0 3 * * 1-5")
    friday = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
    st = status.record({}, _ok("j", friday), 1, NOW)
    sunday = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    checked = status.schedule_check(st, spec, friday, 1, sunday)
    assert status.condition(checked, status.ON_SCHEDULE)["status"] == "True"  # type: ignore[index]


def test_suspension_makes_the_schedule_check_unknown() -> None:
    st = status.schedule_check({}, _spec(suspend=True), NOW - timedelta(days=9), 1, NOW)
    assert status.condition(st, status.ON_SCHEDULE)["reason"] == "Suspended"  # type: ignore[index]


def test_sizes_read_like_kubectl_quantities() -> None:
    assert status.human_size(512) == "512B"
    assert status.human_size(1536) == "1.5Ki"
    assert status.human_size(5 * 1024**3) == "5.0Gi"


def test_each_database_and_the_globals_get_their_own_status_entry() -> None:
    lines = (
        {
            "database": "app",
            "status": "ok",
            "artifact": "a.app.dump",
            "sizeBytes": 1,
            "sha256": "s",
        },
        {
            "database": "crm",
            "status": "ok",
            "artifact": "a.crm.dump",
            "sizeBytes": 2,
            "sha256": "t",
        },
    )
    ok = RunResult("j1", True, "Ok", "", NOW, 0, None, 3, None, 1.0, lines, None,
                   {"status": "ok", "artifact": "a.globals.sql", "sha256": "g"})  # fmt: skip
    new = status.record({}, ok, 1, NOW)
    success = new["lastSuccessfulBackup"]
    assert [d["database"] for d in success["databases"]] == ["app", "crm"]
    assert success["databases"][1]["artifact"] == "a.crm.dump"
    assert success["globals"] == {"artifact": "a.globals.sql", "sha256": "g"}
    assert "2 database artifacts" in status.condition(new, "LastBackupSucceeded")["message"]  # type: ignore[index]
    failed_lines = ({"database": "app", "status": "ok"},
                    {"database": "crm", "status": "failed", "reason": "DumpError"})  # fmt: skip
    failed = RunResult("j2", False, "DumpError", "database 'crm': denied", NOW, 4,
                       databases=failed_lines)  # fmt: skip
    after = status.record(new, failed, 1, NOW)["lastFailedBackup"]
    assert after["databases"][1] == {"database": "crm", "status": "failed", "reason": "DumpError"}
