"""Drift: an owned CronJob that was edited or deleted is put back; its lastScheduleTime is
mirrored into the DatabaseBackup's status.

`decide` is the pure decision over the watch event and the mirrored DatabaseBackup, cheap
enough for the event loop (most CronJob events are our own applies and need nothing); `repair`
carries it out in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from learnops_operator import builders, ours
from learnops_operator.context import Context
from learnops_operator.policy import PodPolicy
from learnops_operator.reconcile import Desired, desired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repair:
    """What to do about one CronJob event."""

    backup: Mapping[str, Any]
    cronjob: dict[str, Any]
    """The desired CronJob."""
    recreate: bool = False
    """It was deleted while its owner lives on."""
    revert: bool = False
    """Fields we set were changed."""
    schedule_time: str | None = None
    """A new lastScheduleTime to mirror into status."""


def remember_uid(
    ctx: Context,
    event_type: str | None,
    cronjob: Mapping[str, Any],
    backup: Mapping[str, Any] | None,
) -> None:
    """Keep the uid of each CronJob a mirrored resource controls: its Jobs are that resource's
    scheduled runs (runs.owned)."""
    meta = cronjob["metadata"]
    key = (meta["namespace"], meta["name"])
    if (
        event_type == "DELETED"
        or backup is None
        or meta["name"] != builders.cronjob_name(backup["metadata"]["name"])
        or not ours.controlled_by(cronjob, backup)
    ):
        ctx.cronjobs.pop(key, None)
    else:
        ctx.cronjobs[key] = str(meta.get("uid"))


def decide(
    backup: Mapping[str, Any] | None,
    event_type: str | None,
    cronjob: Mapping[str, Any],
    bounds: PodPolicy,
) -> Repair | None:
    """None when the event needs no API call (the common case)."""
    if backup is None or backup["metadata"].get("deletionTimestamp"):
        return None
    plan = desired(backup, bounds)
    if not isinstance(plan, Desired):
        return None
    meta = cronjob["metadata"]
    # Only the CronJob of this resource's name: another object that copies our labels is no
    # drift. A removed owner reference is (the apply puts it back).
    if meta.get("name") != plan.cronjob["metadata"]["name"]:
        return None
    if event_type == "DELETED":
        # the last state of a CronJob we controlled; the live owner is checked in repair()
        if not ours.controlled_by(cronjob, backup):
            return None
        return Repair(backup, plan.cronjob, recreate=True)
    wanted = plan.cronjob["metadata"]
    revert = not (
        builders.matches(plan.cronjob["spec"], cronjob.get("spec"))
        and builders.matches(wanted["labels"], meta.get("labels"))
        and builders.matches(wanted["ownerReferences"], meta.get("ownerReferences"))
    )
    scheduled = (cronjob.get("status") or {}).get("lastScheduleTime")
    if scheduled == (backup.get("status") or {}).get("lastScheduleTime"):
        scheduled = None
    if not revert and not scheduled:
        return None
    return Repair(backup, plan.cronjob, revert=revert, schedule_time=scheduled or None)


def repair(ctx: Context, live: Mapping[str, Any], fix: Repair) -> None:
    """Carry out `fix` for the CronJob event whose object is `live`."""
    meta = live["metadata"]
    namespace, name = fix.backup["metadata"]["namespace"], fix.backup["metadata"]["name"]
    if fix.recreate:
        current = ctx.kube.get_backup(namespace, name)  # the owner may be going away: no drift
        if (
            current is None
            or current["metadata"].get("deletionTimestamp")
            or current["metadata"].get("uid") != fix.backup["metadata"].get("uid")
        ):
            return
        ctx.kube.apply(fix.cronjob)
        ctx.kube.post_event(
            fix.backup,
            "Warning",
            "CronJobRecreated",
            f"CronJob {meta['name']} was deleted and has been recreated",
        )
        log.warning(
            "cronjob recreated",
            extra={"event": "drift.recreated", "namespace": namespace, "resource": meta["name"]},
        )
        return
    if fix.revert:
        applied = ctx.kube.apply(fix.cronjob)
        # An apply that changes nothing keeps the resourceVersion: then it was no real drift
        # (e.g. the API normalised a quantity we wrote differently).
        if applied["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            ctx.kube.post_event(
                fix.backup,
                "Warning",
                "DriftReverted",
                f"CronJob {meta['name']} was modified; restored the desired spec",
            )
            log.warning(
                "cronjob drift reverted",
                extra={"event": "drift.reverted", "namespace": namespace, "resource": meta["name"]},
            )
    if fix.schedule_time:
        when = fix.schedule_time
        ctx.kube.update_status(namespace, name, lambda st, _b: {**st, "lastScheduleTime": when})
