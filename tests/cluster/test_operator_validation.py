"""Every schema and CEL rule of the CRD rejects a bad DatabaseBackup at admission, readably.

Server-side dry runs: no operator is needed, and nothing is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kube import KubeCluster
from tests.support.operator import backup


def _admit(cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    proc = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    return proc.returncode == 0, proc.stderr


def _db(**fields: Any) -> dict[str, Any]:
    return {"database": fields}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "0 3 * * * *"}, "exactly 5 space-separated fields"),
        ({"schedule": "every day"}, "exactly 5 space-separated fields"),
        ({"schedule": "@every 5m"}, "exactly 5 space-separated fields"),
        ({"schedule": "61 3 * * *"}, "malformed or out-of-range field"),
        ({"schedule": "0 24 * * *"}, "malformed or out-of-range field"),
        ({"schedule": "0 3 32 * *"}, "malformed or out-of-range field"),
        ({"schedule": "0 3 * 13 *"}, "malformed or out-of-range field"),
        ({"schedule": "0 3 * * 8"}, "malformed or out-of-range field"),
        ({"schedule": "*/5 * * * *", "timeoutSeconds": 600}, "minute step"),
        ({"schedule": "0 * * * *", "timeoutSeconds": 7200}, "hour step"),
        ({"schedule": "0 */2 * * *", "timeoutSeconds": 9000}, "hour step"),
        ({"timeZone": "not a zone"}, "timeZone"),
        (_db(host="db", dbname="app", user="u"), "exactly one of database.pgpassSecretRef"),
        (
            _db(
                host="db",
                dbname="app",
                user="u",
                pgpassSecretRef={"name": "a"},
                urlSecretRef={"name": "b"},
            ),
            "exactly one of database.pgpassSecretRef",
        ),
        (_db(pgpassSecretRef={"name": "a"}), "required with pgpassSecretRef"),
        (_db(urlSecretRef={"name": "b"}, host="db"), "must not be set with urlSecretRef"),
        (
            _db(host="db", dbname="app", user="u", sslMode="maybe", pgpassSecretRef={"name": "a"}),
            "Unsupported value",
        ),
        (
            _db(host="db", dbname="app", user="u", port=70000, pgpassSecretRef={"name": "a"}),
            "less than or equal to 65535",
        ),
        ({"compression": {"algorithm": "gzip", "level": 12}}, "out of range for compression"),
        ({"compression": {"algorithm": "zstd", "level": 0}}, "out of range for compression"),
        ({"compression": {"algorithm": "none", "level": 1}}, "out of range for compression"),
        ({"compression": {"algorithm": "brotli"}}, "Unsupported value"),
        ({"format": "tar"}, "Unsupported value"),
        ({"verify": "maybe"}, "Unsupported value"),
        ({"retention": {"keepLast": 0}}, "greater than or equal to 1"),
        ({"timeoutSeconds": 10}, "greater than or equal to 60"),
        (
            {"storage": {"persistentVolumeClaim": {"claimName": "b"}, "subPath": "../etc"}},
            "relative path without '..'",
        ),
        (
            {"storage": {"persistentVolumeClaim": {"claimName": "b"}, "subPath": "/abs"}},
            "relative path without '..'",
        ),
        ({"podLabels": {"app.kubernetes.io/instance": "x"}}, "reserved prefixes"),
        ({"imagePullPolicy": "Sometimes"}, "Unsupported value"),
        ({"resources": {"limits": {"memory": "a lot"}}}, "should match"),
        ({"includeRolePasswords": True}, "includeRolePasswords needs globals true"),
        (
            _db(
                host="db",
                dbname="app",
                user="u",
                pgpassSecretRef={"name": "a"},
                dbnames=["a"],
                allDatabases=True,
            ),
            "dbnames and database.allDatabases exclude each other",
        ),
        (
            _db(
                host="db", dbname="app", user="u", pgpassSecretRef={"name": "a"}, dbnames=["a", "a"]
            ),
            "Duplicate value",
        ),
        (
            _db(
                host="db", dbname="app", user="u", pgpassSecretRef={"name": "a"}, dbnames=["x" * 64]
            ),
            "Too long",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_invalid_backup_is_rejected_at_admission_with_a_readable_message(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_kubeconfig: Path,
    spec: dict[str, Any],
    message: str,
) -> None:
    manifest = backup("bad")
    if "database" in spec:
        manifest["spec"]["database"] = spec["database"]
    else:
        manifest["spec"].update(spec)
    admitted, error = _admit(kube_cluster, namespace, manifest)
    assert not admitted
    assert message in error


def test_names_longer_than_42_characters_are_rejected(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    admitted, error = _admit(kube_cluster, namespace, backup("n" * 43))
    assert not admitted
    assert "at most 42 characters" in error


@pytest.mark.parametrize(
    "schedule",
    ["30 2 * * *", "@daily", "0 3 * * MON-FRI", "*/15 * * * *", "0 0 1,15 * *", "0 3 ? * 0"],
)
def test_valid_schedules_are_admitted(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path, schedule: str
) -> None:
    manifest = backup("good", schedule=schedule, timeoutSeconds=600)
    admitted, error = _admit(kube_cluster, namespace, manifest)
    assert admitted, error


def test_a_url_secret_backup_is_admitted_without_host_fields(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    manifest = backup("url")
    manifest["spec"]["database"] = {"urlSecretRef": {"name": "app-db"}, "sslMode": "require"}
    admitted, error = _admit(kube_cluster, namespace, manifest)
    assert admitted, error


def test_several_databases_and_globals_are_admitted(
    kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path
) -> None:
    manifest = backup("multi", globals=True, includeRolePasswords=True)
    manifest["spec"]["database"]["dbnames"] = ["app", "Kurs 2026/ä"]
    admitted, error = _admit(kube_cluster, namespace, manifest)
    assert admitted, error
    every = backup("every")
    every["spec"]["database"]["allDatabases"] = True
    admitted, error = _admit(kube_cluster, namespace, every)
    assert admitted, error
