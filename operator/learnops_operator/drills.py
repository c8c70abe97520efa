"""Restore drills of a DatabaseBackup (spec.restoreDrill): schedule them, record what they prove.

A scheduled drill is a second CronJob (`<name>-drill`) that drills latest.json's artifact; with
afterEveryBackup one Job per artifact starts when its backup's success is recorded. Results go
into the DatabaseBackup's status behind their own watermark (lastReportedDrillJob/-Time), once:
lastVerifiedRestore or lastFailedDrill, the Restorable condition, the inventory's
verifiedRestoreTime, an Event, and the drill gauges.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from learnops_operator import (
    builders,
    inventory,
    jobpods,
    restoremetrics,
    restoreresults,
    results,
    status,
)
from learnops_operator.context import Context
from learnops_operator.errors import InvalidSpec
from learnops_operator.kube import api_message
from learnops_operator.restorespec import DrillSpec, Storage, parse_drill
from learnops_operator.spec import BackupSpec, Owner, parse

log = logging.getLogger(__name__)
RESTORABLE = "Restorable"


def _now() -> datetime:
    return datetime.now(UTC)


def _wanted(body: Mapping[str, Any]) -> tuple[Owner, BackupSpec, DrillSpec | None] | None:
    try:
        spec = parse(body.get("spec") or {})
        return Owner.from_body(body), spec, parse_drill(body.get("spec") or {})
    except InvalidSpec:
        return None


def _invalid_drill(body: Mapping[str, Any]) -> str | None:
    """Why spec.restoreDrill is invalid when the rest of the spec is valid (None: it is not)."""
    try:
        parse(body.get("spec") or {})
    except InvalidSpec:
        return None  # the backup's own reconcile reports an invalid backup spec
    try:
        parse_drill(body.get("spec") or {})
    except InvalidSpec as exc:
        return str(exc)
    return None


def _storage(spec: BackupSpec) -> Storage:
    """The backup's own storage, its claim or its bucket (jobpods sets the backup's prefix)."""
    return Storage(spec.claim_name, spec.sub_path, objects=spec.objects)


def _source_endpoint(spec: BackupSpec) -> str | None:
    db = spec.database
    if db.pgpass_secret is None or not db.host:
        return None  # a URL Secret hides it; the drill still compares the manifest and identity
    return f"{db.host.strip().lower().rstrip('.')}:{db.port or 5432}"


def _image(ctx: Context, spec: BackupSpec) -> tuple[str, str]:
    return spec.image or ctx.settings.dump_image, spec.image_pull_policy


def reconcile(ctx: Context, body: Mapping[str, Any]) -> None:
    """After the backup's own reconcile: the drill CronJob and an initial Restorable."""
    current = dict(body.get("status") or {})
    wanted = _wanted(body)
    if wanted is None:
        why = _invalid_drill(body)
        if why is not None:  # slipped past admission (an older CRD): no drill, and why not
            _suspend_cronjob(ctx, Owner.from_body(body), current)
            _set_restorable(ctx, body, "False", "InvalidSpec", why)
        return
    owner, _, drill = wanted
    if drill is None or drill.schedule is None:
        _suspend_cronjob(ctx, owner, current)
    else:
        cronjob = _desired_cronjob(ctx, body)
        assert cronjob is not None
        try:
            ctx.kube.apply(cronjob)
        except ApiException as exc:
            if exc.status != 422:
                raise
            why = f"the drill CronJob was rejected: {api_message(exc)}"
            _set_restorable(ctx, body, "False", "InvalidSpec", why)
            return
        name = cronjob["metadata"]["name"]
        if current.get("drillCronJobName") != name:
            ctx.kube.update_status(
                owner.namespace, owner.name, lambda st, _b: {**st, "drillCronJobName": name}
            )
    if drill is not None and status.condition(current, RESTORABLE) is None:
        _set_restorable(ctx, body, "Unknown", "NoDrillYet", "no restore drill has finished yet")


def _suspend_cronjob(ctx: Context, owner: Owner, current: Mapping[str, Any]) -> None:
    """A dropped (or invalid) scheduled drill: its CronJob stays, suspended, out of status."""
    if current.get("drillCronJobName"):
        ctx.kube.suspend_cronjob(owner.namespace, str(current["drillCronJobName"]))
        ctx.kube.update_status(
            owner.namespace,
            owner.name,
            lambda st, _b: {k: v for k, v in st.items() if k != "drillCronJobName"},
        )


def _desired_cronjob(ctx: Context, body: Mapping[str, Any]) -> dict[str, Any] | None:
    wanted = _wanted(body)
    if wanted is None:
        return None
    owner, spec, drill = wanted
    if drill is None or drill.schedule is None:
        return None
    image, pull = _image(ctx, spec)
    return jobpods.drill_cronjob(
        owner,
        drill,
        _storage(spec),
        image,
        pull,
        spec.time_zone,
        spec.suspend,
        _source_endpoint(spec),
    )


def cronjob_changed(ctx: Context, event_type: str | None, cronjob: Mapping[str, Any]) -> None:
    """Drift repair of a drill CronJob: an edited or deleted one is put back."""
    meta = cronjob["metadata"]
    owner_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    backup = ctx.backups.get((meta["namespace"], str(owner_name)))
    if backup is None or backup["metadata"].get("deletionTimestamp"):
        return
    desired = _desired_cronjob(ctx, backup)
    if desired is None or desired["metadata"]["name"] != meta["name"]:
        return  # a dropped drill's CronJob stays suspended
    if event_type == "DELETED":
        live = ctx.kube.get_backup(meta["namespace"], str(owner_name))
        if live is None or live["metadata"].get("deletionTimestamp"):
            return
    elif builders.matches(desired["spec"], cronjob.get("spec")):
        return
    ctx.kube.apply(desired)
    ctx.kube.post_event(
        backup,
        "Warning",
        "DriftReverted",
        f"drill CronJob {meta['name']} was {'deleted' if event_type == 'DELETED' else 'modified'}"
        "; restored the desired spec",
    )


def _set_restorable(
    ctx: Context, body: Mapping[str, Any], value: str, reason: str, message: str
) -> None:
    owner = Owner.from_body(body)
    now = _now()
    ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: status.set_condition(
            st, RESTORABLE, value, reason, message, owner.generation, now
        ),
    )


def after_backup(ctx: Context, body: Mapping[str, Any], result: results.RunResult) -> bool:
    """afterEveryBackup: one drill Job per successful artifact; True if this call created it."""
    if not result.succeeded or not result.artifact:
        return False
    wanted = _wanted(body)
    if wanted is None:
        return False
    owner, spec, drill = wanted
    if drill is None or not drill.after_every_backup:
        return False
    image, pull = _image(ctx, spec)
    job = jobpods.drill_job(
        owner,
        drill,
        _storage(spec),
        image,
        pull,
        result.artifact,
        _source_endpoint(spec),
    )
    created = ctx.kube.create_job(job)
    if created:
        ctx.kube.post_event(
            body,
            "Normal",
            "DrillStarted",
            f"Job {job['metadata']['name']} drills {result.artifact} on the scratch server",
        )
    return created


def job_needs_work(ctx: Context, job: Mapping[str, Any]) -> bool:
    meta = job["metadata"]
    owner = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner or results.finished_condition(job) is None:
        return False
    known = (ctx.backups.get((meta["namespace"], owner)) or {}).get("status") or {}
    return bool(known.get("lastReportedDrillJob") != meta["name"])


def record(
    st: Mapping[str, Any],
    result: results.RunResult,
    more: restoreresults.Extras,
    artifact: str | None,
    generation: int,
    now: datetime,
) -> dict[str, Any] | None:
    """Fold one finished drill into the backup's status; None if already recorded or older."""
    if st.get("lastReportedDrillJob") == result.job:
        return None
    mark = results.parse_time(st.get("lastReportedDrillTime"))
    if mark is not None and result.finished_at < mark:
        return None
    new = copy.deepcopy(dict(st))
    when = status.iso(result.finished_at)
    new["lastReportedDrillJob"] = result.job
    new["lastReportedDrillTime"] = when
    if result.succeeded:
        verified: dict[str, Any] = {
            "time": when,
            "job": result.job,
            "checksPassed": list(more.checks_passed),
        }
        if artifact:
            verified["artifact"] = artifact
        if result.duration_seconds is not None:
            verified["durationSeconds"] = result.duration_seconds
        if more.tables_checked is not None:
            verified["tablesChecked"] = more.tables_checked
        new["lastVerifiedRestore"] = verified
        if artifact:
            new = inventory.mark_verified(new, artifact, when)
        message = (
            f"{artifact or 'the artifact'} restored on the scratch server; "
            f"passed: {', '.join(more.checks_passed) or 'restore'}"
        )
        return status.set_condition(
            new, RESTORABLE, "True", "DrillPassed", message, generation, now
        )
    failed: dict[str, Any] = {
        "time": when,
        "job": result.job,
        "reason": result.reason,
        "message": result.message,
    }
    if artifact:
        failed["artifact"] = artifact
    new["lastFailedDrill"] = failed
    message = f"drill of {artifact or 'the artifact'} failed: {result.message or result.reason}"
    return status.set_condition(new, RESTORABLE, "False", result.reason, message, generation, now)


def job_changed(ctx: Context, job: Mapping[str, Any]) -> None:
    meta = job["metadata"]
    owner = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner or results.finished_condition(job) is None:
        return
    key = (str(meta["namespace"]), str(owner))
    pods = ctx.kube.job_pods(key[0], meta["name"])
    result = results.from_job(job, pods, "dump", _now())
    if result is None:
        return
    more = restoreresults.extras(pods, result.succeeded)
    artifact = result.artifact or (meta.get("annotations") or {}).get(jobpods.ARTIFACT_ANNOTATION)
    now = _now()
    written = ctx.kube.update_status(
        *key,
        lambda st, b: record(
            st, result, more, artifact, int(b["metadata"].get("generation") or 0), now
        ),
    )
    if written is None:
        return
    backup = ctx.backups.get(key) or ctx.kube.get_backup(*key)
    if backup is None:
        return
    if result.succeeded:
        ctx.kube.post_event(
            backup,
            "Normal",
            "DrillPassed",
            f"{result.job} restored {artifact} on the scratch server and checked it",
        )
    else:
        ctx.kube.post_event(
            backup,
            "Warning",
            "DrillFailed",
            f"{result.job} failed ({result.reason}): {result.message}",
        )
    refresh(key[0], key[1], {**backup, "status": written[1]})
    log.info(
        "drill recorded",
        extra={
            "event": "drill.recorded",
            "namespace": key[0],
            "resource": key[1],
            "succeeded": result.succeeded,
            "reason": result.reason,
        },
    )


def refresh(namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """Set the drill gauges from a DatabaseBackup's status (no drill configured: none)."""
    try:
        drill = parse_drill(body.get("spec") or {})
    except InvalidSpec:
        drill = None
    if drill is None:
        restoremetrics.forget_drill(namespace, name)
        return
    st = body.get("status") or {}
    cond = status.condition(st, RESTORABLE) or {}
    restorable = {"True": True, "False": False}.get(str(cond.get("status")))
    newest = inventory.newest(st)
    unverified = None
    if newest is not None and not newest.get("verifiedRestoreTime"):
        unverified = results.parse_time(newest.get("time"))
    restoremetrics.observe_drill_state(
        namespace,
        name,
        restorable=restorable,
        last_verified=results.parse_time((st.get("lastVerifiedRestore") or {}).get("time")),
        unverified_since=unverified,
        window_seconds=drill.window_seconds,
    )


def refresh_all(ctx: Context, now: datetime) -> None:
    """Sweep part: the gauges follow status also after a restart or a missed event."""
    for (namespace, name), body in list(ctx.backups.items()):
        refresh(namespace, name, body)
