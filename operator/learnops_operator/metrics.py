"""Prometheus metrics: per-backup results (labelled namespace/name) and operator health."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, start_http_server

from learnops_operator.errors import ConfigError
from learnops_operator.results import RunResult

_LABELS = ("namespace", "name")

LAST_SUCCESS = Gauge(
    "learnops_backup_last_success_timestamp_seconds",
    "Unix time the last successful backup finished",
    _LABELS,
)
LAST_RESULT = Gauge(
    "learnops_backup_last_result", "Result of the last finished run: 1 success, 0 failure", _LABELS
)
LAST_DURATION = Gauge(
    "learnops_backup_last_duration_seconds", "Duration of the last successful run", _LABELS
)
LAST_SIZE = Gauge(
    "learnops_backup_last_size_bytes", "Size of the last successful artifact", _LABELS
)
FAILURES = Gauge(
    "learnops_backup_consecutive_failures", "Failed runs since the last success", _LABELS
)
RECONCILE_ERRORS = Counter(
    "learnops_operator_reconcile_errors_total", "Handler failures, by handler", ("handler",)
)
CLAMPS = Counter(
    "learnops_operator_worker_clamps_total",
    "Learning-worker Deployments or HPAs brought back under the replica ceiling",
    ("kind",),
)


def serve(port: int) -> None:
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:
        raise ConfigError(f"metrics port {port} is not available: {exc.strerror}") from None


def observe(namespace: str, name: str, result: RunResult, consecutive_failures: int) -> None:
    LAST_RESULT.labels(namespace, name).set(1 if result.succeeded else 0)
    FAILURES.labels(namespace, name).set(consecutive_failures)
    if result.succeeded:
        LAST_SUCCESS.labels(namespace, name).set(result.finished_at.timestamp())
        if result.duration_seconds is not None:
            LAST_DURATION.labels(namespace, name).set(result.duration_seconds)
        if result.size_bytes is not None:
            LAST_SIZE.labels(namespace, name).set(result.size_bytes)


def forget(namespace: str, name: str) -> None:
    """A deleted DatabaseBackup leaves no stale series behind."""
    for gauge in (LAST_SUCCESS, LAST_RESULT, LAST_DURATION, LAST_SIZE, FAILURES):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
