"""The periodic sweep: what no watch event announces.

- a backup that has not succeeded within two schedule intervals (OnSchedule=False + Event);
- a stale nextScheduleTime;
- a backup pod stuck Pending because its Secret is missing (kubelet FailedMount events): the
  operator may not read Secrets, so the pod's own events are the evidence;
- an on-demand token whose Job creation failed earlier.

Runs in a thread; cheap when nothing changed (decisions use the in-memory mirror first).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from learnops_operator import drills, ondemand, ours, reconcile, restores, status
from learnops_operator.announce import announce_transition
from learnops_operator.context import Context
from learnops_operator.errors import InvalidSpec, MissingReference
from learnops_operator.results import parse_time
from learnops_operator.spec import Owner, parse

log = logging.getLogger(__name__)


def _schedule(body: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """The new status for OnSchedule/nextScheduleTime, or None if nothing changes."""
    try:
        spec = parse(body.get("spec") or {})
    except InvalidSpec:
        return None
    current = dict(body.get("status") or {})
    if not current.get("cronJobName"):
        return None  # not reconciled yet
    owner = Owner.from_body(body)
    created = parse_time(body["metadata"].get("creationTimestamp")) or now
    new = status.schedule_check(current, spec, created, owner.generation, now)
    nxt = parse_time(new.get("nextScheduleTime"))
    if not spec.suspend and (nxt is None or nxt <= now):
        new["nextScheduleTime"] = status.iso(status.next_run(spec, now))
    return None if new == current else new


def check_schedules(ctx: Context, now: datetime) -> None:
    for key, body in list(ctx.backups.items()):
        if _schedule(body, now) is None:
            continue
        written = ctx.kube.update_status(*key, lambda _st, b: _schedule(b, now))
        if written is None:
            continue
        new = status.condition(written[1], status.ON_SCHEDULE) or {}
        if new.get("status") == "False":
            announce_transition(
                ctx,
                body,
                written,
                status.ON_SCHEDULE,
                "Warning",
                "MissedRuns",
                str(new.get("message")),
            )


def missing_secret(ctx: Context, pod: dict[str, Any]) -> str | None:
    """The kubelet's verdict that the credentials Secret (or its key) is missing, if any."""
    meta = pod["metadata"]
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError" and "secret" in str(
            waiting.get("message", "")
        ):
            return f"pod {meta['name']} cannot start: its Secret is missing"
    for event in ctx.kube.pod_events(meta["namespace"], meta["uid"]):
        text = str(event.get("message") or "")
        if (
            event.get("reason") == "FailedMount"
            and "secret" in text.lower()
            and ("not found" in text or "couldn't find key" in text)
        ):
            return f"pod {meta['name']} cannot mount the credentials Secret (or its key)"
    return None


def check_pending_pods(ctx: Context, now: datetime) -> None:
    grace = timedelta(seconds=ctx.settings.pending_grace_seconds)
    for pod in ctx.kube.backup_pods(ctx.settings.namespace, ours.SELECTOR_STRING):
        meta = pod["metadata"]
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        created = parse_time(meta.get("creationTimestamp")) or now
        if now - created < grace:
            continue
        key = ours.owner_key(pod)
        body = ctx.backups.get(key) if key else None
        if key is None or body is None:
            continue
        why = missing_secret(ctx, pod)
        if why is None:
            continue
        _reportmissing_secret(ctx, key, body, why, now)


def _reportmissing_secret(
    ctx: Context, key: tuple[str, str], body: Mapping[str, Any], why: str, now: datetime
) -> None:
    database = (body.get("spec") or {}).get("database") or {}
    ref = database.get("pgpassSecretRef") or database.get("urlSecretRef") or {}
    message = f"Secret {ref.get('name')!r} not found or incomplete: {why}"
    gen = int(body["metadata"].get("generation") or 0)
    written = ctx.kube.update_status(
        *key, lambda st, _b: status.not_ready(st, status.SECRET_NOT_FOUND, message, gen, now)
    )
    announce_transition(
        ctx, body, written, status.READY, "Warning", status.SECRET_NOT_FOUND, message
    )


def catch_up(ctx: Context, now: datetime) -> None:
    """Level-triggered safety net: reconcile any resource whose status lags its generation.

    kopf reacts to changes it sees; if one is lost (a crash between kopf recording a change and
    our status write, a handler that gave up), the next sweep still makes it take effect.
    Resources never reconciled at all are left to kopf's creation handler.
    """
    for key, body in list(ctx.backups.items()):
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed is None or observed >= int(body["metadata"].get("generation") or 0):
            continue
        fresh = ctx.kube.get_backup(*key)  # never act on a stale copy
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            continue
        with contextlib.suppress(InvalidSpec, MissingReference):
            reconcile.reconcile(ctx, fresh)
        log.info(
            "caught up", extra={"event": "sweep.caught_up", "namespace": key[0], "resource": key[1]}
        )


def retry_on_demand(ctx: Context, now: datetime) -> None:
    """A token whose Job creation failed earlier (the watch event will not come again)."""
    for body in list(ctx.backups.values()):
        run = ondemand.decide(body, ctx.policy)
        if run is not None:
            ondemand.start(ctx, body, run)


def sweep(ctx: Context) -> None:
    """One pass; each part is independent, so one failing part does not starve the others."""
    now = datetime.now(UTC)
    parts = (
        check_schedules,
        check_pending_pods,
        catch_up,
        retry_on_demand,
        restores.retry_pending,
        restores.check_pending_pods,
        drills.refresh_all,
    )
    for part in parts:
        try:
            part(ctx, now)
        except Exception as exc:
            log.warning(
                "sweep part failed",
                extra={"event": "sweep.failed", "part": part.__name__, "error": str(exc)[:300]},
            )
