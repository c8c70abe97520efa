"""The kopf glue: the in-memory diff base is kopf's essence and costs no write; bounded backoff."""

from __future__ import annotations

from typing import Any

import kopf
from learnops_operator.diffbase import MemoryDiffBase
from learnops_operator.handlers import backoff


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


def test_the_diff_base_is_the_essence_kopf_would_build_without_its_bookkeeping() -> None:
    keys = {"prefix": "kopf.learnops.io", "key": "last-handled-configuration"}
    lean = MemoryDiffBase().build(body=kopf.Body(_body()))  # type: ignore[arg-type]
    without_bookkeeping = _body()
    annotations = without_bookkeeping["metadata"]["annotations"]
    del annotations["kopf.learnops.io/reconcile"]
    full = kopf.AnnotationsDiffBaseStorage(**keys).build(body=kopf.Body(without_bookkeeping))  # type: ignore[arg-type]
    assert lean == full
    assert "status" not in lean
    assert lean["metadata"]["annotations"] == {"learnops.io/backup-now": "t1"}


def test_storing_the_diff_base_writes_nothing_to_the_resource() -> None:
    storage = MemoryDiffBase()
    body = kopf.Body(_body())  # type: ignore[arg-type]
    assert storage.fetch(body=body) is None  # first sight (or a restart): a create cause
    patch = kopf.Patch()
    essence = storage.build(body=body)
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch  # no PATCH of the DatabaseBackup per handling cycle
    assert storage.fetch(body=body) == essence
    storage.forget("u")
    assert storage.fetch(body=body) is None


def test_watched_children_cost_no_diff_base() -> None:
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {}, "spec": {"a": 1}}
    assert MemoryDiffBase().build(body=kopf.Body(cronjob)) == {}  # type: ignore[arg-type]


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [backoff(r) for r in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(50) == 300.0
