"""Finished backup runs: a Job's result goes into its DatabaseBackup's status, exactly once.

`decide` is the pure decision over a Job event and the mirrored DatabaseBackup, cheap enough for
the event loop (most Job events are for runs recorded long ago); `record` carries it out in a
thread. The watermark (status.lastReportedJob/lastReportedTime) lives in the resource itself,
so a restart, a re-delivered event or a second replica never records or announces a run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from learnops_operator import builders, drills, inventory, metrics, ours, results, status
from learnops_operator.context import Context, Key

log = logging.getLogger(__name__)
WARNED_LIMIT = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def _keep_last(body: Mapping[str, Any]) -> int:
    retention = (body.get("spec") or {}).get("retention") or {}
    return int(retention.get("keepLast") or 7)


@dataclass(frozen=True)
class Finished:
    """A finished Job whose result is not in its owner's status yet."""

    key: Key
    job: str


def _refused(ctx: Context, job: Mapping[str, Any], backup: Mapping[str, Any], why: str) -> None:
    """The termination message broke the schema: say so; the exit code decides the result."""
    uid = f"refused/{job['metadata'].get('uid') or job['metadata']['name']}"
    if uid in ctx.warned:
        return
    ctx.warned.add(uid)
    ctx.kube.post_event(
        backup,
        "Warning",
        "TerminationMessageRejected",
        f"Job {job['metadata']['name']}: the dump's termination message was refused ({why}); "
        "its result is taken from the exit code",
    )
    log.warning(
        "termination message refused",
        extra={"event": "run.refused", "job": job["metadata"]["name"], "why": why},
    )


def decide(job: Mapping[str, Any], backup: Mapping[str, Any] | None) -> Finished | None:
    """None for running Jobs and runs already recorded.

    `backup` is the mirrored owner; None when the mirror has not seen it yet (the Job watch may
    deliver first after a start), and then the status write reads the resource itself.
    """
    key = ours.owner_key(job)
    if key is None or results.finished_condition(job) is None:
        return None
    name = str(job["metadata"]["name"])
    if ((backup or {}).get("status") or {}).get("lastReportedJob") == name:
        return None
    return Finished(key, name)


def owned(job: Mapping[str, Any], backup: Mapping[str, Any], cronjob_uid: str | None) -> bool:
    """A run counts only if the resource controls its Job: directly (on demand) or through
    the resource's own CronJob (scheduled). Labels can be copied; owner uids cannot."""
    if ours.controlled_by(job, backup):
        return True
    controller = ours.controller_of(job)
    return bool(
        cronjob_uid
        and controller is not None
        and controller.get("kind") == "CronJob"
        and controller.get("uid") == cronjob_uid
    )


def _cronjob_uid(ctx: Context, backup: Mapping[str, Any]) -> str | None:
    """The uid of the CronJob this resource controls: from the watch, else one read."""
    meta = backup["metadata"]
    key = (meta["namespace"], builders.cronjob_name(meta["name"]))
    if key in ctx.cronjobs:
        return ctx.cronjobs[key]
    live = ctx.kube.get_cronjob(*key)
    if live is None or not ours.controlled_by(live, backup):
        return None
    return str(live["metadata"]["uid"])


def _foreign(ctx: Context, job: Mapping[str, Any], backup: Mapping[str, Any]) -> None:
    """One Warning per Job that carries this resource's labels without being its run."""
    uid = str(job["metadata"].get("uid") or job["metadata"]["name"])
    if uid in ctx.warned:
        return
    if len(ctx.warned) > WARNED_LIMIT:
        ctx.warned.clear()  # a repeat Warning after 10,000 look-alikes is acceptable
    ctx.warned.add(uid)
    name = job["metadata"]["name"]
    ctx.kube.post_event(
        backup,
        "Warning",
        "ForeignJobIgnored",
        f"Job {name} carries this resource's labels but is not controlled by it or by its "
        "CronJob; its result is ignored",
    )
    log.warning(
        "foreign job ignored",
        extra={"event": "run.ignored", "namespace": job["metadata"]["namespace"], "job": name},
    )


def record(ctx: Context, job: Mapping[str, Any], run: Finished) -> None:
    """Check the run is ours, read its pods, fold the result into status, announce it once."""
    namespace = run.key[0]
    backup = ctx.backups.get(run.key) or ctx.kube.get_backup(*run.key)
    if backup is None:
        return
    if not owned(job, backup, _cronjob_uid(ctx, backup)):
        _foreign(ctx, job, backup)
        return
    pods = ctx.kube.job_pods(namespace, run.job)
    result = results.from_job(job, pods, builders.CONTAINER_NAME, _now())
    if result is None:
        return
    if result.rejected is not None:
        _refused(ctx, job, backup, result.rejected)
    written = ctx.kube.update_status(
        *run.key,
        lambda st, b: (
            inventory.with_artifact(
                status.record(st, result, int(b["metadata"].get("generation") or 0), _now()),
                result,
                _keep_last(b),
                status.iso(result.finished_at),
            )
            if status.should_record(st, result, _now())
            else None
        ),
    )
    if written is None:
        return
    if result.succeeded:
        size = f", {status.human_size(result.size_bytes)}" if result.size_bytes is not None else ""
        ctx.kube.post_event(
            backup,
            "Normal",
            "BackupSucceeded",
            f"{result.job} wrote {result.artifact or 'its artifact'}{size}",
        )
    else:
        ctx.kube.post_event(
            backup,
            "Warning",
            "BackupFailed",
            f"{result.job} failed ({result.reason}): {result.message}",
        )
    metrics.observe(*run.key, result, int(written[1].get("consecutiveFailures") or 0))
    drills.after_backup(ctx, backup, result)
    log.info(
        "run recorded",
        extra={
            "event": "run.recorded",
            "namespace": namespace,
            "resource": run.key[1],
            "job": result.job,
            "succeeded": result.succeeded,
            "reason": result.reason,
        },
    )
