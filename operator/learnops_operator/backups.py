"""DatabaseBackup reconciliation: plain functions over (Context, body), called by thin handlers.

Each function is idempotent and safe to repeat after a restart or on a second replica: the
CronJob is server-side applied, on-demand Jobs have deterministic names, and run results are
recorded behind a watermark kept in status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from learnops_operator import builders, metrics, status
from learnops_operator.context import Context
from learnops_operator.errors import InvalidSpec, MissingReference
from learnops_operator.kube import api_message
from learnops_operator.spec import BackupSpec, Owner, parse

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def announce_transition(
    ctx: Context,
    body: Mapping[str, Any],
    written: tuple[dict[str, Any], dict[str, Any]] | None,
    kind: str,
    event_type: str,
    reason: str,
    message: str,
) -> None:
    """Post an Event only when condition `kind` actually changed: repeats never storm."""
    if written is None:
        return
    old, new = (status.condition(s, kind) or {} for s in written)
    if (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason")):
        ctx.kube.post_event(body, event_type, reason, message)


def _invalid(ctx: Context, body: Mapping[str, Any], owner: Owner, why: str) -> InvalidSpec:
    written = ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: status.not_ready(st, "InvalidSpec", why, owner.generation, _now()),
        known=body,
    )
    announce_transition(ctx, body, written, status.READY, "Warning", "InvalidSpec", why)
    return InvalidSpec(why)


def reconcile(ctx: Context, body: Mapping[str, Any]) -> None:
    """Create or repair the CronJob, then report Ready. Raises InvalidSpec / MissingReference."""
    owner = Owner.from_body(body)
    try:
        spec = parse(body.get("spec") or {})
    except InvalidSpec as exc:
        raise _invalid(ctx, body, owner, str(exc)) from None
    desired = builders.cronjob(owner, spec, ctx.settings.dump_image)
    try:
        ctx.kube.apply(desired)
    except ApiException as exc:
        if exc.status != 422:
            raise
        # what admission of our CR cannot see, e.g. a malformed quantity in spec.resources
        why = f"the CronJob was rejected: {api_message(exc)}"
        raise _invalid(ctx, body, owner, why) from None
    name = desired["metadata"]["name"]
    # Object storage has no claim to wait for (its Secret the operator may not read).
    if spec.objects is None and not ctx.kube.pvc_exists(owner.namespace, spec.claim_name):
        message = (
            f"PersistentVolumeClaim {spec.claim_name!r} not found in namespace "
            f"{owner.namespace!r}; backups cannot run until it exists"
        )
        written = ctx.kube.update_status(
            owner.namespace,
            owner.name,
            lambda st, _b: status.not_ready(
                st, "PersistentVolumeClaimNotFound", message, owner.generation, _now()
            ),
            known=body,
        )
        announce_transition(
            ctx, body, written, status.READY, "Warning", "PersistentVolumeClaimNotFound", message
        )
        raise MissingReference("PersistentVolumeClaimNotFound", message)
    written = ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: status.reconciled(st, spec, name, owner.generation, _now()),
        known=body,
    )
    was = (status.condition(written[0], status.READY) or {}) if written else {}
    if was.get("status") == "False":
        # a recovery is news; the first Ready of a new resource is not worth an API write
        announce_transition(
            ctx,
            body,
            written,
            status.READY,
            "Normal",
            "Reconciled",
            f"CronJob {name} is up to date ({was.get('reason')} resolved)",
        )
    log.info(
        "reconciled",
        extra={
            "event": "reconciled",
            "namespace": owner.namespace,
            "resource": owner.name,
            "generation": owner.generation,
        },
    )


def remember(ctx: Context, event_type: str | None, body: Mapping[str, Any]) -> None:
    """Keep the in-memory mirror of DatabaseBackups current (watch events, incl. the listing)."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if event_type == "DELETED":
        ctx.backups.pop(key, None)
        ctx.diffbase.forget(str(meta.get("uid")))
        metrics.forget(*key)
        return
    ctx.backups[key] = dict(body)


def wants_on_demand(body: Mapping[str, Any]) -> bool:
    """A learnops.io/backup-now token that has not started its Job yet."""
    meta = body["metadata"]
    token = (meta.get("annotations") or {}).get(builders.BACKUP_NOW_ANNOTATION)
    if not token or meta.get("deletionTimestamp"):
        return False
    return bool(token != (body.get("status") or {}).get("lastOnDemandToken"))


def start_on_demand(ctx: Context, body: Mapping[str, Any]) -> bool:
    """One Job per learnops.io/backup-now token; True if this call created it."""
    if not wants_on_demand(body):
        return False
    meta = body["metadata"]
    token = str(meta["annotations"][builders.BACKUP_NOW_ANNOTATION])
    owner = Owner.from_body(body)
    try:
        spec = parse(body.get("spec") or {})
    except InvalidSpec:
        return False  # Ready=False already says why; nothing sensible to run
    job = builders.on_demand_job(owner, spec, ctx.settings.dump_image, token)
    created = ctx.kube.create_job(job)
    ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: {**st, "lastOnDemandToken": token},
        known=body,
    )
    if created:
        ctx.kube.post_event(
            body, "Normal", "BackupStarted", f"on-demand Job {job['metadata']['name']} started"
        )
        log.info(
            "on-demand job created",
            extra={
                "event": "on_demand_started",
                "namespace": owner.namespace,
                "job": job["metadata"]["name"],
            },
        )
    return created


def _desired(backup: Mapping[str, Any]) -> tuple[Owner, BackupSpec] | None:
    try:
        return Owner.from_body(backup), parse(backup.get("spec") or {})
    except InvalidSpec:
        return None


def cronjob_needs_work(ctx: Context, event_type: str | None, cronjob: Mapping[str, Any]) -> bool:
    """Cheap, in-memory: is this CronJob event a deletion, a drift or a new schedule time?"""
    meta = cronjob["metadata"]
    owner_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    backup = ctx.backups.get((meta["namespace"], str(owner_name)))
    if backup is None or backup["metadata"].get("deletionTimestamp"):
        return False
    if event_type == "DELETED":
        return True
    wanted = _desired(backup)
    if wanted is None:
        return False
    desired = builders.cronjob(wanted[0], wanted[1], ctx.settings.dump_image)
    if not builders.matches(desired["spec"], cronjob.get("spec")) or not builders.matches(
        desired["metadata"]["labels"], meta.get("labels")
    ):
        return True
    scheduled = (cronjob.get("status") or {}).get("lastScheduleTime")
    return bool(scheduled and scheduled != (backup.get("status") or {}).get("lastScheduleTime"))


def cronjob_changed(ctx: Context, event_type: str | None, cronjob: Mapping[str, Any]) -> None:
    """Drift repair: an edited or deleted CronJob is put back; lastScheduleTime is mirrored."""
    meta = cronjob["metadata"]
    owner_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner_name:
        return
    key = (meta["namespace"], owner_name)
    backup = ctx.backups.get(key)
    if backup is None or backup["metadata"].get("deletionTimestamp"):
        return
    wanted = _desired(backup)
    if wanted is None:
        return
    owner, spec = wanted
    desired = builders.cronjob(owner, spec, ctx.settings.dump_image)
    if event_type == "DELETED":
        live = ctx.kube.get_backup(*key)  # the owner may be going away: that is no drift
        if (
            live is None
            or live["metadata"].get("deletionTimestamp")
            or (live["metadata"].get("uid") != owner.uid)
        ):
            return
        ctx.kube.apply(desired)
        ctx.kube.post_event(
            backup,
            "Warning",
            "CronJobRecreated",
            f"CronJob {meta['name']} was deleted and has been recreated",
        )
        log.warning(
            "cronjob recreated",
            extra={"event": "drift_recreated", "namespace": key[0], "resource": meta["name"]},
        )
        return
    if not builders.matches(desired["spec"], cronjob.get("spec")) or not builders.matches(
        desired["metadata"]["labels"], meta.get("labels")
    ):
        applied = ctx.kube.apply(desired)
        # An apply that changes nothing keeps the resourceVersion: then it was no real drift
        # (e.g. the API normalised a quantity we wrote differently).
        if applied["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            ctx.kube.post_event(
                backup,
                "Warning",
                "DriftReverted",
                f"CronJob {meta['name']} was modified; restored the desired spec",
            )
            log.warning(
                "cronjob drift reverted",
                extra={"event": "drift_reverted", "namespace": key[0], "resource": meta["name"]},
            )
    scheduled = (cronjob.get("status") or {}).get("lastScheduleTime")
    if scheduled and scheduled != (backup.get("status") or {}).get("lastScheduleTime"):
        ctx.kube.update_status(*key, lambda st, _b: {**st, "lastScheduleTime": scheduled})
