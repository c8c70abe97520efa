"""The kopf glue: our cheaper diff base equals kopf's, and the retry backoff is bounded."""

from __future__ import annotations

from typing import Any

import kopf
from learnops_operator.handlers import _LeanDiffBase, backoff


def _body() -> dict[str, Any]:
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseBackup",
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "u",
            "generation": 4,
            "labels": {"team": "a"},
            "annotations": {
                "learnops.io/backup-now": "t1",
                "kopf.learnops.io/last-handled-configuration": '{"spec": {}}',
                "kopf.learnops.io/reconcile": "{}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"schedule": "30 2 * * *", "database": {"host": "db"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_the_lean_diff_base_is_the_same_essence_kopf_would_build() -> None:
    keys = {"prefix": "kopf.learnops.io", "key": "last-handled-configuration"}
    lean = _LeanDiffBase(**keys).build(body=kopf.Body(_body()))  # type: ignore[arg-type]
    full = kopf.AnnotationsDiffBaseStorage(**keys).build(body=kopf.Body(_body()))  # type: ignore[arg-type]
    assert lean == full
    assert "status" not in lean


def test_watched_children_cost_no_diff_base() -> None:
    keys = {"prefix": "kopf.learnops.io", "key": "last-handled-configuration"}
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {}, "spec": {"a": 1}}
    assert _LeanDiffBase(**keys).build(body=kopf.Body(cronjob)) == {}  # type: ignore[arg-type]


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [backoff(r) for r in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(50) == 300.0
