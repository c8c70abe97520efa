"""Pure status computations: conditions, run results, schedule times, overdue detection.

Functions take the current status mapping and return a new dict; the caller writes it back with
optimistic concurrency (kube.update_status), so concurrent writers never lose each other's fields.
"""

from __future__ import annotations

import copy
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from learnops_operator.results import RunResult, parse_time
from learnops_operator.spec import BackupSpec

READY = "Ready"
LAST_BACKUP_SUCCEEDED = "LastBackupSucceeded"
ON_SCHEDULE = "OnSchedule"
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 (a condition reason)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == kind:
            return dict(cond)
    return None


def set_condition(
    status: Mapping[str, Any],
    kind: str,
    value: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """Upsert one condition; lastTransitionTime only moves when the status value changes."""
    new = copy.deepcopy(dict(status))
    conditions = [dict(c) for c in new.get("conditions") or ()]
    previous = next((c for c in conditions if c.get("type") == kind), None)
    transition = iso(now)
    if previous is not None and previous.get("status") == value:
        transition = previous.get("lastTransitionTime") or transition
    entry = {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    conditions = [c for c in conditions if c.get("type") != kind] + [entry]
    order = {READY: 0, LAST_BACKUP_SUCCEEDED: 1, ON_SCHEDULE: 2}
    new["conditions"] = sorted(conditions, key=lambda c: order.get(str(c.get("type")), 99))
    return new


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or unit == "Ti":
            return f"{int(value)}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cron(spec: BackupSpec, start: datetime) -> croniter:
    local = start.astimezone(zoneinfo.ZoneInfo(spec.time_zone))
    return croniter(spec.cron_expression, local)


def next_run(spec: BackupSpec, now: datetime) -> datetime:
    """The next scheduled time after now, interpreted in the spec's time zone, as UTC."""
    nxt: datetime = _cron(spec, now).get_next(datetime)
    return nxt.astimezone(UTC)


def overdue_since(spec: BackupSpec, reference: datetime, now: datetime) -> datetime | None:
    """When a success was due: the second scheduled run after `reference` plus its timeout.

    None while that moment lies in the future, i.e. the backup is on schedule. Using the second
    run tolerates one skipped or failed run; irregular schedules (weekdays only) stay correct.
    """
    it = _cron(spec, reference)
    it.get_next(datetime)
    second: datetime = it.get_next(datetime)
    due = second.astimezone(UTC) + timedelta(seconds=spec.timeout_seconds)
    return due if now > due else None


def reconciled(
    status: Mapping[str, Any], spec: BackupSpec, cronjob_name: str, generation: int, now: datetime
) -> dict[str, Any]:
    """After the CronJob is in place: Ready=True, schedule fields, observedGeneration."""
    new = set_condition(
        status,
        READY,
        "True",
        "Reconciled",
        f"CronJob {cronjob_name} is up to date",
        generation,
        now,
    )
    new["observedGeneration"] = generation
    new["cronJobName"] = cronjob_name
    if spec.suspend:
        new.pop("nextScheduleTime", None)
    else:
        new["nextScheduleTime"] = iso(next_run(spec, now))
    if condition(new, LAST_BACKUP_SUCCEEDED) is None:
        new = set_condition(
            new,
            LAST_BACKUP_SUCCEEDED,
            "Unknown",
            "NoRunYet",
            "no backup has finished yet",
            generation,
            now,
        )
    new.setdefault("consecutiveFailures", 0)
    return new


def not_ready(
    status: Mapping[str, Any], reason: str, message: str, generation: int, now: datetime
) -> dict[str, Any]:
    new = set_condition(status, READY, "False", reason, message, generation, now)
    new["observedGeneration"] = generation
    return new


# A watermark this far ahead of the clock was written from a forged time (before times came
# from the kubelet only); it is not allowed to hide every later result.
WATERMARK_SKEW = timedelta(minutes=5)


def should_record(
    status: Mapping[str, Any], result: RunResult, now: datetime | None = None
) -> bool:
    """Record results once and in order: a restart re-lists every Job and must not recount."""
    if status.get("lastReportedJob") == result.job:
        return False
    watermark = parse_time(status.get("lastReportedTime"))
    if watermark is not None and watermark > (now or datetime.now(UTC)) + WATERMARK_SKEW:
        watermark = None
    return watermark is None or result.finished_at >= watermark


def record(
    status: Mapping[str, Any], result: RunResult, generation: int, now: datetime
) -> dict[str, Any]:
    """Fold one finished run into status."""
    new = copy.deepcopy(dict(status))
    when = iso(result.finished_at)
    new["lastReportedJob"] = result.job
    new["lastReportedTime"] = when
    if result.succeeded:
        success: dict[str, Any] = {"time": when, "job": result.job}
        if result.artifact is not None:
            success["artifact"] = result.artifact
        if result.size_bytes is not None:
            success["sizeBytes"] = result.size_bytes
            success["size"] = human_size(result.size_bytes)
        if result.sha256 is not None:
            success["sha256"] = result.sha256
        if result.duration_seconds is not None:
            success["durationSeconds"] = result.duration_seconds
        if result.databases:
            success["databases"] = [
                {k: v for k, v in line.items() if k != "status"} for line in result.databases
            ]
        if result.databases_omitted:
            success["databasesOmitted"] = result.databases_omitted
        if result.globals is not None and result.globals["status"] == "ok":
            success["globals"] = {k: v for k, v in result.globals.items() if k != "status"}
        if result.location:
            success.update(result.location)
        new["lastSuccessfulBackup"] = success
        new["lastResult"] = "Succeeded"
        new["consecutiveFailures"] = 0
        written = (
            f"{len(result.databases)} database artifacts"
            if result.databases
            else success.get("artifact", "its artifact")
        )
        message = f"{result.job} wrote {written}"
        new = set_condition(
            new, LAST_BACKUP_SUCCEEDED, "True", "Succeeded", message, generation, now
        )
        new = set_condition(
            new, ON_SCHEDULE, "True", "RecentSuccess", f"last success at {when}", generation, now
        )
        ready = condition(new, READY)
        if ready is not None and ready.get("reason") == SECRET_NOT_FOUND:
            # Only a pod can tell that the Secret is back (the operator may not read Secrets).
            new = set_condition(
                new,
                READY,
                "True",
                "Reconciled",
                "the credentials Secret was mounted by a successful run",
                generation,
                now,
            )
    else:
        failure: dict[str, Any] = {
            "time": when,
            "job": result.job,
            "reason": result.reason,
            "message": result.message,
        }
        if result.exit_code is not None:
            failure["exitCode"] = result.exit_code
        if result.databases:
            failure["databases"] = [
                {k: line[k] for k in ("database", "status", "reason") if k in line}
                for line in result.databases
            ]
        new["lastFailedBackup"] = failure
        new["lastResult"] = "Failed"
        new["consecutiveFailures"] = int(new.get("consecutiveFailures") or 0) + 1
        message = (
            f"{result.job} failed: {result.message}" if result.message else f"{result.job} failed"
        )
        new = set_condition(
            new, LAST_BACKUP_SUCCEEDED, "False", result.reason, message, generation, now
        )
    return new


def schedule_check(
    status: Mapping[str, Any], spec: BackupSpec, created: datetime, generation: int, now: datetime
) -> dict[str, Any]:
    """OnSchedule: False once no success happened within two schedule intervals."""
    if spec.suspend:
        return set_condition(
            status,
            ON_SCHEDULE,
            "Unknown",
            "Suspended",
            "scheduled runs are suspended",
            generation,
            now,
        )
    success = status.get("lastSuccessfulBackup") or {}
    reference = parse_time(success.get("time")) or created
    due = overdue_since(spec, reference, now)
    if due is None:
        current = condition(status, ON_SCHEDULE)
        if current is not None and current.get("status") == "True":
            return dict(status)
        return set_condition(
            status,
            ON_SCHEDULE,
            "True",
            "WithinSchedule",
            "a successful backup is not overdue",
            generation,
            now,
        )
    since = "the last success" if success else "creation"
    return set_condition(
        status,
        ON_SCHEDULE,
        "False",
        "MissedRuns",
        f"no successful backup within two schedule intervals of {since} (overdue since {iso(due)})",
        generation,
        now,
    )
