"""Finished backup runs: a Job's result goes into its DatabaseBackup's status, exactly once.

The watermark (status.lastReportedJob/lastReportedTime) lives in the resource itself, so a
restart, a re-delivered event or a second replica never records or announces a run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from learnops_operator import builders, drills, inventory, metrics, results, status
from learnops_operator.context import Context

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _keep_last(body: Mapping[str, Any]) -> int:
    retention = (body.get("spec") or {}).get("retention") or {}
    return int(retention.get("keepLast") or 7)


def job_needs_work(ctx: Context, job: Mapping[str, Any]) -> bool:
    """Only finished Jobs whose result is not recorded yet."""
    meta = job["metadata"]
    owner_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner_name or results.finished_condition(job) is None:
        return False
    known = (ctx.backups.get((meta["namespace"], owner_name)) or {}).get("status") or {}
    return bool(known.get("lastReportedJob") != meta["name"])


def job_changed(ctx: Context, job: Mapping[str, Any]) -> None:
    """A finished Job's result goes into the owner's status, once, with one Event."""
    meta = job["metadata"]
    owner_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    cond = results.finished_condition(job)
    if not owner_name or cond is None:
        return
    key = (meta["namespace"], owner_name)
    known = (ctx.backups.get(key) or {}).get("status") or {}
    if known.get("lastReportedJob") == meta["name"]:
        return  # the cheap exit for every re-delivered event of an already recorded Job
    pods = ctx.kube.job_pods(meta["namespace"], meta["name"])
    result = results.from_job(job, pods, builders.CONTAINER_NAME, _now())
    if result is None:
        return
    written = ctx.kube.update_status(
        *key,
        lambda st, b: (
            inventory.with_artifact(
                status.record(st, result, int(b["metadata"].get("generation") or 0), _now()),
                result,
                _keep_last(b),
                status.iso(result.finished_at),
            )
            if status.should_record(st, result)
            else None
        ),
    )
    if written is None:
        return
    backup = ctx.backups.get(key) or ctx.kube.get_backup(*key)
    if backup is None:
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
    metrics.observe(*key, result, int(written[1].get("consecutiveFailures") or 0))
    drills.after_backup(ctx, backup, result)
    log.info(
        "run recorded",
        extra={
            "event": "run_recorded",
            "namespace": key[0],
            "resource": key[1],
            "job": result.job,
            "succeeded": result.succeeded,
            "reason": result.reason,
        },
    )
