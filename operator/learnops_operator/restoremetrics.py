"""Prometheus metrics of restores and restore drills (labelled namespace/name).

The drill gauges are refreshed from DatabaseBackup status on every sweep, so they are right again
seconds after an operator restart, and the shipped alerts (chart PrometheusRule) need no history.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import Gauge

_LABELS = ("namespace", "name")

RESTORE_RESULT = Gauge(
    "learnops_restore_last_result",
    "Result of the DatabaseRestore's last run: 1 success, 0 failure",
    _LABELS,
)
RESTORE_FINISHED = Gauge(
    "learnops_restore_last_finished_timestamp_seconds",
    "Unix time the DatabaseRestore's last run finished",
    _LABELS,
)
RESTORE_DURATION = Gauge(
    "learnops_restore_last_duration_seconds", "Duration of the DatabaseRestore's last run", _LABELS
)
RESTORABLE = Gauge(
    "learnops_backup_restorable",
    "Result of the DatabaseBackup's last restore drill: 1 passed, 0 failed",
    _LABELS,
)
LAST_VERIFIED = Gauge(
    "learnops_backup_last_verified_restore_timestamp_seconds",
    "Unix time the last passed restore drill finished",
    _LABELS,
)
UNVERIFIED_SINCE = Gauge(
    "learnops_backup_unverified_since_timestamp_seconds",
    "Finish time of the newest successful backup if no drill has verified it yet, else 0",
    _LABELS,
)
WINDOW = Gauge(
    "learnops_backup_restore_verification_window_seconds",
    "restoreDrill.verificationWindowSeconds: how long the newest backup may stay unverified",
    _LABELS,
)


def observe_restore(
    namespace: str, name: str, *, succeeded: bool, duration: float | None, when: datetime
) -> None:
    RESTORE_RESULT.labels(namespace, name).set(1 if succeeded else 0)
    RESTORE_FINISHED.labels(namespace, name).set(when.timestamp())
    if duration is not None:
        RESTORE_DURATION.labels(namespace, name).set(duration)


def forget_restore(namespace: str, name: str) -> None:
    for gauge in (RESTORE_RESULT, RESTORE_FINISHED, RESTORE_DURATION):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def observe_drill_state(
    namespace: str,
    name: str,
    *,
    restorable: bool | None,
    last_verified: datetime | None,
    unverified_since: datetime | None,
    window_seconds: int,
) -> None:
    if restorable is None:
        with contextlib.suppress(KeyError):
            RESTORABLE.remove(namespace, name)
    else:
        RESTORABLE.labels(namespace, name).set(1 if restorable else 0)
    if last_verified is not None:
        LAST_VERIFIED.labels(namespace, name).set(last_verified.timestamp())
    UNVERIFIED_SINCE.labels(namespace, name).set(
        unverified_since.timestamp() if unverified_since else 0
    )
    WINDOW.labels(namespace, name).set(window_seconds)


def forget_drill(namespace: str, name: str) -> None:
    for gauge in (RESTORABLE, LAST_VERIFIED, UNVERIFIED_SINCE, WINDOW):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
