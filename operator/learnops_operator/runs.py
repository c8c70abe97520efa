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

from learnops_operator import builders, metrics, ours, results, status
from learnops_operator.context import Context, Key

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Finished:
    """A finished Job whose result is not in its owner's status yet."""

    key: Key
    job: str


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


def record(ctx: Context, job: Mapping[str, Any], run: Finished) -> None:
    """Read the run's pods, fold the result into status, announce it once."""
    namespace = run.key[0]
    pods = ctx.kube.job_pods(namespace, run.job)
    result = results.from_job(job, pods, builders.CONTAINER_NAME, _now())
    if result is None:
        return
    written = ctx.kube.update_status(
        *run.key,
        lambda st, b: (
            status.record(st, result, int(b["metadata"].get("generation") or 0), _now())
            if status.should_record(st, result)
            else None
        ),
    )
    if written is None:
        return
    backup = ctx.backups.get(run.key) or ctx.kube.get_backup(*run.key)
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
    metrics.observe(*run.key, result, int(written[1].get("consecutiveFailures") or 0))
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
