"""The learning worker's replica ceiling (docs/runbook.md, "Scaling the worker").

Each worker holds database connections and calls a shared AI backend; more than the ceiling
overloads both. The worker clamps its in-process concurrency; the operator clamps the replica
count of Deployments labelled app.kubernetes.io/component=learning-worker and the maxReplicas of
HPAs that target them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from learnops_operator import metrics
from learnops_operator.context import Context

log = logging.getLogger(__name__)
WORKER_COMPONENT = "learning-worker"
WORKER_LABELS = {"app.kubernetes.io/component": WORKER_COMPONENT}


def replicas_over(replicas: int | None, ceiling: int) -> int | None:
    """The clamped count if `replicas` exceeds the ceiling, else None (unset means 1)."""
    value = 1 if replicas is None else replicas
    return ceiling if value > ceiling else None


def hpa_over(spec: Mapping[str, Any], ceiling: int) -> dict[str, int] | None:
    """The HPA spec fields to patch so that it can never scale past the ceiling."""
    patch: dict[str, int] = {}
    if int(spec.get("maxReplicas") or 0) > ceiling:
        patch["maxReplicas"] = ceiling
    if int(spec.get("minReplicas") or 1) > ceiling:
        patch["minReplicas"] = ceiling
    return patch or None


def _why(ceiling: int) -> str:
    return (
        f"learning workers are capped at {ceiling} replicas to protect PostgreSQL and the "
        f"AI backend (learnops-operator --max-worker-replicas)"
    )


def deployment_changed(ctx: Context, event_type: str | None, body: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if event_type == "DELETED":
        ctx.workers.discard(key)
        return
    first_sight = key not in ctx.workers  # ADDED, or labelled as a worker just now
    ctx.workers.add(key)
    ceiling = ctx.settings.max_worker_replicas
    wanted = (body.get("spec") or {}).get("replicas")
    target = replicas_over(wanted, ceiling)
    if target is not None:
        ctx.kube.scale_deployment(meta["namespace"], meta["name"], target)
        metrics.CLAMPS.labels("Deployment").inc()
        ctx.kube.post_event(
            body,
            "Warning",
            "ReplicasClamped",
            f"spec.replicas {wanted} exceeds the ceiling; scaled to {target}: " + _why(ceiling),
        )
        log.warning(
            "worker replicas clamped",
            extra={
                "event": "clamp.deployment_scaled",
                "namespace": key[0],
                "resource": key[1],
                "requested": wanted,
                "to": target,
            },
        )
    if first_sight:
        # an HPA that appeared before this worker was skipped then; catch up once
        for hpa in ctx.kube.list_hpas(meta["namespace"]):
            hpa_changed(ctx, None, hpa)


def hpa_changed(ctx: Context, event_type: str | None, body: Mapping[str, Any]) -> None:
    if event_type == "DELETED":
        return
    meta = body["metadata"]
    spec = body.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind") != "Deployment" or (meta["namespace"], ref.get("name")) not in ctx.workers:
        return
    patch = hpa_over(spec, ctx.settings.max_worker_replicas)
    if patch is None:
        return
    ctx.kube.patch_hpa(meta["namespace"], meta["name"], patch)
    metrics.CLAMPS.labels("HorizontalPodAutoscaler").inc()
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **body}
    ctx.kube.post_event(
        body,
        "Warning",
        "MaxReplicasClamped",
        f"maxReplicas {spec.get('maxReplicas')} exceeds the ceiling; set "
        f"{patch}: " + _why(ctx.settings.max_worker_replicas),
    )
    log.warning(
        "worker hpa clamped",
        extra={
            "event": "clamp.hpa_patched",
            "namespace": meta["namespace"],
            "resource": meta["name"],
            "patch": patch,
        },
    )
