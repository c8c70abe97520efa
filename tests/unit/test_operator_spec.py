"""Spec parsing, the CRD file itself, operator settings and the worker clamp arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from learnops_operator import clamp, settings
from learnops_operator.errors import ConfigError, InvalidSpec
from learnops_operator.spec import parse

CRD = Path(__file__).resolve().parents[2] / "manifests/crds/learnops.io_databasebackups.yaml"


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _minimal() -> dict[str, Any]:
    return {
        "schedule": "0 3 * * *",
        "database": {"host": "db", "dbname": "app", "user": "u", "pgpassSecretRef": {"name": "s"}},
        "storage": {"persistentVolumeClaim": {"claimName": "pvc"}},
    }


def test_parser_defaults_equal_the_crd_defaults() -> None:
    """Objects stored before a default existed must behave as if defaulted by the API."""
    spec_schema = _schema()["properties"]["spec"]["properties"]
    parsed = parse(_minimal())
    assert parsed.time_zone == spec_schema["timeZone"]["default"]
    assert parsed.suspend is spec_schema["suspend"]["default"]
    assert parsed.format == spec_schema["format"]["default"]
    assert (
        parsed.compression_algorithm
        == (spec_schema["compression"]["properties"]["algorithm"]["default"])
    )
    assert parsed.timeout_seconds == spec_schema["timeoutSeconds"]["default"]
    retention = spec_schema["retention"]["properties"]
    assert (parsed.keep_last, parsed.keep_daily, parsed.keep_weekly, parsed.keep_monthly) == (
        retention["keepLast"]["default"],
        retention["keepDaily"]["default"],
        retention["keepWeekly"]["default"],
        retention["keepMonthly"]["default"],
    )
    for field, attr in [
        ("verify", "verify"),
        ("startingDeadlineSeconds", "starting_deadline_seconds"),
        ("successfulJobsHistoryLimit", "successful_jobs_history_limit"),
        ("failedJobsHistoryLimit", "failed_jobs_history_limit"),
        ("backoffLimit", "backoff_limit"),
        ("ttlSecondsAfterFinished", "ttl_seconds_after_finished"),
        ("imagePullPolicy", "image_pull_policy"),
    ]:
        assert getattr(parsed, attr) == spec_schema[field]["default"], field
    db = spec_schema["database"]["properties"]
    assert parsed.database.ssl_mode == db["sslMode"]["default"]
    assert parsed.database.pgpass_key == db["pgpassSecretRef"]["properties"]["key"]["default"]


def test_every_field_of_the_crd_is_documented_for_kubectl_explain() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            if name != "metadata" and not child.get("description"):
                missing.append(f"{path}.{name}")
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(_schema(), "")
    assert missing == []


def test_the_crd_declares_status_printer_columns_and_names() -> None:
    doc = yaml.safe_load(CRD.read_text())
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Schedule", "Suspended", "Last Success", "Last Result", "Size", "Age"]
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "DatabaseBackup",
        "databasebackups",
        ["dbb"],
        ["learnops"],
    )


_DB = {"host": "h", "dbname": "d", "user": "u", "pgpassSecretRef": {"name": "b"}}
_S3 = {"bucket": "learnops-backups", "credentialsSecretRef": {"name": "s3"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "0 3 * * * *"}, "5-field"),
        ({"schedule": "0 25 * * *"}, "5-field"),
        ({"timeZone": "Mars/Olympus"}, "time zone"),
        (
            {
                "database": {
                    "urlSecretRef": {"name": "a"},
                    "pgpassSecretRef": {"name": "b"},
                    "host": "h",
                    "dbname": "d",
                    "user": "u",
                }
            },
            "exactly one",
        ),
        ({"database": {"pgpassSecretRef": {"name": "b"}}}, "required"),
        (
            {"database": {**_DB, "dbnames": ["a", "b"]}, "storage": {"s3": _S3}},
            "one database per DatabaseBackup",
        ),
        (
            {"database": {**_DB, "allDatabases": True}, "storage": {"s3": _S3}},
            "one database per DatabaseBackup",
        ),
        (
            {"globals": True, "storage": {"s3": _S3}},
            "globals \\(roles\\) need a persistentVolumeClaim",
        ),
    ],
)
def test_invalid_specs_are_rejected_with_a_readable_reason(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse({**_minimal(), **change})


def test_macros_are_understood() -> None:
    assert parse({**_minimal(), "schedule": "@daily"}).cron_expression == "0 0 * * *"


def test_the_worker_ceiling_may_be_lowered_but_never_raised() -> None:
    assert settings.from_args([], {}).max_worker_replicas == 4
    assert settings.from_args(["--max-worker-replicas", "2"], {}).max_worker_replicas == 2
    assert settings.from_args([], {"LEARNOPS_MAX_WORKER_REPLICAS": "3"}).max_worker_replicas == 3
    with pytest.raises(ConfigError, match="never a higher"):
        settings.from_args(["--max-worker-replicas", "5"], {})
    with pytest.raises(ConfigError):
        settings.from_args([], {"LEARNOPS_MAX_WORKER_REPLICAS": "0"})


def test_settings_read_namespace_and_identity_from_the_pod_environment() -> None:
    s = settings.from_args(
        [], {"LEARNOPS_NAMESPACE": "team-a", "POD_NAME": "op-0", "POD_NAMESPACE": "ops"}
    )
    assert (s.namespace, s.identity, s.lease_namespace) == ("team-a", "op-0", "ops")
    assert settings.from_args([], {}).namespace is None


@pytest.mark.parametrize(
    ("replicas", "ceiling", "expected"),
    [(10, 4, 4), (4, 4, None), (None, 4, None), (3, 2, 2), (1, 1, None)],
)
def test_replica_clamp(replicas: int | None, ceiling: int, expected: int | None) -> None:
    assert clamp.replicas_over(replicas, ceiling) == expected


def test_hpa_clamp_caps_max_and_min_replicas() -> None:
    assert clamp.hpa_over({"maxReplicas": 10, "minReplicas": 2}, 4) == {"maxReplicas": 4}
    assert clamp.hpa_over({"maxReplicas": 10, "minReplicas": 6}, 4) == {
        "maxReplicas": 4,
        "minReplicas": 4,
    }
    assert clamp.hpa_over({"maxReplicas": 4}, 4) is None
