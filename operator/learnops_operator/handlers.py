"""kopf handlers: thin adapters from watch events to the decisions in reconcile, ondemand,
drift, runs and clamp.

Only change-detection handlers (create/update/resume) reconcile the spec, because they bring
kopf's retries with backoff. Everything else is an event handler: no finalizers, no annotations
on objects we do not own, and level-based (safe to repeat).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from learnops_operator import (
    clamp,
    drift,
    drills,
    metrics,
    mirror,
    ondemand,
    ours,
    reconcile,
    restoremetrics,
    restores,
    runs,
)
from learnops_operator.context import Context
from learnops_operator.diffbase import BOOKKEEPING_PREFIX
from learnops_operator.errors import InvalidSpec, MissingReference
from learnops_operator.jobpods import COMPONENT_DRILL, COMPONENT_RESTORE
from learnops_operator.kube import is_transient, namespace_terminating
from learnops_operator.ours import MANAGED_BY
from learnops_operator.restorespec import RESTORE_PLURAL
from learnops_operator.spec import GROUP, PLURAL, VERSION

RESTORE_JOBS = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/component": COMPONENT_RESTORE,
}
DRILL_JOBS = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/component": COMPONENT_DRILL,
}
MAX_BACKOFF_SECONDS = 300.0


def backoff(retry: int) -> float:
    """5 s, 10 s, 20 s ... capped at 5 minutes."""
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** min(retry, 10)))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Context, **_: Any) -> None:
    """Map our settings onto kopf's."""
    # Retry progress in annotations: status belongs to us and is schema-checked. The diff base
    # stays in memory, which saves one write per resource and handling cycle (diffbase.py).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=BOOKKEEPING_PREFIX
    )
    settings.persistence.diffbase_storage = memo.diffbase
    settings.persistence.finalizer = "learnops.io/kopf-finalizer"  # never added: no delete handler
    # Events are posted deliberately (one per transition or run), never from log lines.
    settings.posting.enabled = False
    settings.execution.max_workers = memo.settings.worker_threads
    # One namespace needs no cluster scanning (namespaces, CRDs): its namespaced Roles do not
    # grant it, and the CRD is checked through discovery before kopf starts (preflight.py).
    settings.scanning.disabled = memo.settings.namespace is not None
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def _guard(name: str, retry: int, exc: Exception) -> None:
    metrics.RECONCILE_ERRORS.labels(name).inc()
    if isinstance(exc, InvalidSpec):
        raise kopf.PermanentError(str(exc)) from exc
    if isinstance(exc, MissingReference):
        raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
    if is_transient(exc):
        raise kopf.TemporaryError(f"transient API error: {exc}", delay=backoff(retry)) from exc


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_backup(body: kopf.Body, memo: Context, retry: int, **_: Any) -> None:
    try:
        reconcile.reconcile(memo, body)
        drills.reconcile(memo, body)
    except Exception as exc:
        _guard("reconcile", retry, exc)
        raise


# Event handlers are async and decide in the event loop whether there is anything to do: most
# events (our own status writes, kopf's annotations) need no API call, and skipping the hop to
# the thread pool is what keeps 500 simultaneous resources cheap. API work runs in threads.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def backup_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    mirror.remember(memo, event.get("type"), body)
    if event.get("type") == "DELETED":
        restoremetrics.forget_drill(body["metadata"]["namespace"], body["metadata"]["name"])
        return
    run = ondemand.decide(body, memo.policy)
    if run is not None:
        await asyncio.to_thread(ondemand.start, memo, body, run)


@kopf.on.event("batch", "v1", "cronjobs", labels=ours.SELECTOR)
async def cronjob_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    key = ours.owner_key(body)
    backup = memo.backups.get(key) if key else None
    drift.remember_uid(memo, event.get("type"), body, backup)
    fix = drift.decide(backup, event.get("type"), body, memo.policy)
    if fix is None:
        return
    try:
        await asyncio.to_thread(drift.repair, memo, body, fix)
    except Exception as exc:
        if namespace_terminating(exc):
            return  # the namespace takes the CronJob and its owner with it
        metrics.RECONCILE_ERRORS.labels("cronjob_event").inc()
        raise


@kopf.on.event("batch", "v1", "jobs", labels=ours.SELECTOR)
async def job_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    key = ours.owner_key(body)
    run = runs.decide(body, memo.backups.get(key) if key else None)
    if run is not None:
        await asyncio.to_thread(runs.record, memo, body, run)


# DatabaseRestore is level-based: each event asks "has this generation run?" (restores.py);
# no change handlers, so kopf keeps no diff base or progress on these objects.
@kopf.on.event(GROUP, VERSION, RESTORE_PLURAL)
async def restore_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    restores.remember(memo, event.get("type"), body)
    if event.get("type") != "DELETED" and restores.needs_run(body):
        try:
            await asyncio.to_thread(restores.start, memo, body)
        except Exception as exc:
            if namespace_terminating(exc):
                return
            metrics.RECONCILE_ERRORS.labels("restore_event").inc()
            raise  # the sweep retries (restores.retry_pending)


@kopf.on.event("batch", "v1", "jobs", labels=RESTORE_JOBS)
async def restore_job_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    if event.get("type") != "DELETED" and restores.job_needs_work(memo, body):
        await asyncio.to_thread(restores.job_changed, memo, body)


@kopf.on.event("batch", "v1", "cronjobs", labels=DRILL_JOBS)
async def drill_cronjob_event(
    event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any
) -> None:
    try:
        await asyncio.to_thread(drills.cronjob_changed, memo, event.get("type"), body)
    except Exception as exc:
        if namespace_terminating(exc):
            return
        metrics.RECONCILE_ERRORS.labels("drill_cronjob_event").inc()
        raise


@kopf.on.event("batch", "v1", "jobs", labels=DRILL_JOBS)
async def drill_job_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    if event.get("type") != "DELETED" and drills.job_needs_work(memo, body):
        await asyncio.to_thread(drills.job_changed, memo, body)


@kopf.on.event("apps", "v1", "deployments", labels=clamp.WORKER_LABELS)
def worker_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    clamp.deployment_changed(memo, event.get("type"), body)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
def hpa_event(event: kopf.RawEvent, body: kopf.Body, memo: Context, **_: Any) -> None:
    clamp.hpa_changed(memo, event.get("type"), body)
