"""On-demand runs: one Job per `learnops.io/backup-now` token, never two.

`decide` is the pure decision, cheap enough for the event loop (most events carry a token that
was handled long ago); `start` carries it out in a thread. The Job name is derived from the
token, so a repeat (restart, second replica, lost status write) hits AlreadyExists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from learnops_operator import builders
from learnops_operator.context import Context
from learnops_operator.policy import PodPolicy
from learnops_operator.reconcile import Desired, desired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A token that has not started its Job yet, and the Job that serves it."""

    token: str
    job: dict[str, Any]


def decide(body: Mapping[str, Any], bounds: PodPolicy) -> Run | None:
    """The Job to create for this DatabaseBackup now, if any."""
    meta = body["metadata"]
    token = (meta.get("annotations") or {}).get(builders.BACKUP_NOW_ANNOTATION)
    if not token or meta.get("deletionTimestamp"):
        return None
    if token == (body.get("status") or {}).get("lastOnDemandToken"):
        return None
    plan = desired(body, bounds)
    if not isinstance(plan, Desired):
        return None  # Ready=False already says why; nothing sensible to run
    # the CronJob's own pod template, so both triggers run exactly the same pod
    template = plan.cronjob["spec"]["jobTemplate"]["spec"]["template"]
    image = template["spec"]["containers"][0]["image"]
    return Run(str(token), builders.on_demand_job(plan.owner, plan.spec, image, str(token)))


def start(ctx: Context, body: Mapping[str, Any], run: Run) -> bool:
    """Create the Job and record its token; True if this call created it."""
    meta = run.job["metadata"]
    created = ctx.kube.create_job(run.job)
    ctx.kube.update_status(
        meta["namespace"],
        body["metadata"]["name"],
        lambda st, _b: {**st, "lastOnDemandToken": run.token},
        known=body,
    )
    if created:
        ctx.kube.post_event(
            body, "Normal", "BackupStarted", f"on-demand Job {meta['name']} started"
        )
        log.info(
            "on-demand job created",
            extra={
                "event": "ondemand.started",
                "namespace": meta["namespace"],
                "job": meta["name"],
            },
        )
    return created
