"""The Helm chart lints clean, renders valid objects for every scenario, and is safe by default."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.harness.validate import validation_errors
from tests.support.ship import (
    CHART,
    KUBE_VERSION,
    WORKER_CAP,
    crd_validator,
    helm,
    pod_specs,
    render,
    restricted_violations,
    scenarios,
    values_args,
)

# Kinds whose schemas kubernetes-validate lacks. DatabaseBackups are checked against our own CRD
# instead; the Prometheus Operator's ServiceMonitor/PrometheusRule have no schema here, so they
# are only checked for shape (apiVersion/kind/metadata/spec) in test_monitoring_objects_*.
CUSTOM_KINDS = {"DatabaseBackup", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("scenario", scenarios())
def test_helm_lint_strict_is_clean(scenario: str) -> None:
    out = helm("lint", "--strict", str(CHART), *values_args(scenario), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout
    assert "[ERROR]" not in out.stdout


@pytest.mark.parametrize("scenario", scenarios())
def test_rendered_objects_validate_against_the_pinned_kubernetes_schemas(scenario: str) -> None:
    docs = [d for d in render(scenario) if d["kind"] not in CUSTOM_KINDS]
    assert docs
    assert validation_errors(docs, strict=True) == [], f"against Kubernetes {KUBE_VERSION}"


def test_databasebackups_from_values_validate_against_the_crd_schema() -> None:
    """openAPIV3Schema only: the CRD's CEL rules run at admission (the cluster tests cover them)."""
    backups = [
        d for d in render("backups-from-values-values.yaml") if d["kind"] == "DatabaseBackup"
    ]
    assert [b["metadata"]["name"] for b in backups] == ["learnops-nightly", "learnops-hourly"]
    validator = crd_validator()
    for backup in backups:
        errors = [e.message for e in validator.iter_errors(backup)]
        assert errors == [], backup["metadata"]["name"]


def test_a_misspelt_databasebackup_field_fails_the_crd_schema_check() -> None:
    (backup, *_) = [
        d for d in render("backups-from-values-values.yaml") if d["kind"] == "DatabaseBackup"
    ]
    broken = copy.deepcopy(backup)
    broken["spec"]["schedul"] = broken["spec"].pop("schedule")
    assert list(crd_validator().iter_errors(broken))


def test_monitoring_objects_are_off_by_default_and_well_formed_when_on() -> None:
    assert not [d for d in render() if d["kind"] in {"ServiceMonitor", "PrometheusRule"}]
    docs = render("full-monitoring-values.yaml")
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sorted(m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors) == [
        "learning-worker",
        "operator",
    ]
    services = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] == "Service"
    }
    for monitor in monitors:
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        service = services[component]
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in port_names
        # The operator's backup metrics keep their own namespace/name labels.
        assert monitor["spec"]["endpoints"][0].get("honorLabels", False) is (
            component == "operator"
        )


@pytest.mark.parametrize("value", ["worker.replicas", "worker.concurrency"])
def test_schema_rejects_more_than_the_cap_of_four_and_says_so(value: str) -> None:
    out = helm(
        "template",
        "lo",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        f"{value}=5",
        check=False,
    )
    assert out.returncode != 0
    pointer = "/" + value.replace(".", "/")
    assert pointer in out.stderr
    assert f"want {WORKER_CAP}" in out.stderr, out.stderr


@pytest.mark.parametrize("value", ["worker.replicas", "worker.concurrency"])
def test_the_cap_holds_even_when_schema_validation_is_skipped(value: str) -> None:
    out = helm(
        "template",
        "lo",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        f"{value}=5",
        "--skip-schema-validation",
        check=False,
    )
    assert out.returncode != 0
    assert f"{value}=5 exceeds the cap of {WORKER_CAP}" in out.stderr


def test_the_cap_itself_is_accepted() -> None:
    docs = render("default", ("--set", "worker.replicas=4", "--set", "worker.concurrency=4"))
    (worker,) = [d for d in docs if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"]]
    assert worker["spec"]["replicas"] == WORKER_CAP


def test_schema_rejects_an_unknown_value_and_a_password_in_a_backup() -> None:
    typo = helm("template", "lo", str(CHART), "--set", "worker.replica=2", check=False)
    assert typo.returncode != 0
    assert "replica" in typo.stderr
    password = helm(
        "template",
        "lo",
        str(CHART),
        "--set",
        "backups[0].name=x",
        "--set",
        "backups[0].spec.schedule=@daily",
        "--set",
        "backups[0].spec.storage.a=b",
        "--set",
        "backups[0].spec.database.password=hunter2",
        check=False,
    )
    assert password.returncode != 0


@pytest.mark.parametrize("scenario", scenarios())
def test_every_pod_meets_the_restricted_pod_security_standard(scenario: str) -> None:
    specs = list(pod_specs(render(scenario)))
    assert specs
    for label, spec in specs:
        assert restricted_violations(spec) == [], label
        mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts") or []}
        assert "/tmp" in mounts, f"{label}: read-only root needs a /tmp emptyDir"


@pytest.mark.parametrize("scenario", scenarios())
def test_no_secret_value_is_rendered_and_credentials_arrive_as_files(scenario: str) -> None:
    docs = render(scenario)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for label, spec in pod_specs(docs):
        for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
            for env in c.get("env") or []:
                assert "secretKeyRef" not in (env.get("valueFrom") or {}), f"{label} {env}"
                if "PASSWORD" in env["name"] or env["name"].endswith(("_URL", "_KEY")):
                    pytest.fail(f"{label}: secret-looking env {env['name']} given as a value")
            for source in c.get("envFrom") or []:
                assert "secretRef" not in source, label
    text = json.dumps(docs)
    assert "REPLACE-ME" not in text
    assert "postgresql://" not in text


def test_worker_defaults_keep_the_grace_period_above_the_shutdown_timeout() -> None:
    docs = render()
    (worker,) = [d for d in docs if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"]]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and "worker" in d["metadata"]["name"]]
    spec = worker["spec"]["template"]["spec"]
    shutdown = float(config["data"]["WORKER_SHUTDOWN_TIMEOUT_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > shutdown
    assert worker["spec"]["replicas"] <= WORKER_CAP
    assert int(config["data"]["WORKER_CONCURRENCY"]) <= WORKER_CAP
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
    assert spec["automountServiceAccountToken"] is False


def test_every_workload_is_labelled_with_its_component() -> None:
    docs = render("backups-from-values-values.yaml")
    components = {
        d["kind"]: d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in docs
        if d["kind"] in {"Deployment", "DatabaseBackup", "PersistentVolumeClaim"}
    }
    assert components["DatabaseBackup"] == "backup"
    assert components["PersistentVolumeClaim"] == "backup"
    deployments = sorted(
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in docs
        if d["kind"] == "Deployment"
    )
    assert deployments == ["learning-worker", "operator"]


def test_a_config_change_rolls_the_pods_through_the_checksum_annotation() -> None:
    def checksums(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for d in docs
            if d["kind"] == "Deployment"
        }

    before = checksums(render())
    after = checksums(render("default", ("--set", "worker.maxAttempts=7")))
    assert before["lo-learnops-worker"] != after["lo-learnops-worker"]
    assert before["lo-learnops-operator"] == after["lo-learnops-operator"]


def test_disruption_budgets_exist_only_where_they_do_not_block_drains() -> None:
    def budgets(scenario: str) -> set[str]:
        return {
            d["metadata"]["name"] for d in render(scenario) if d["kind"] == "PodDisruptionBudget"
        }

    assert budgets("default") == {"lo-learnops-worker"}
    assert budgets("two-operator-replicas-values.yaml") == {
        "lo-learnops-worker",
        "lo-learnops-operator",
    }


def test_the_crd_is_kept_on_uninstall_and_can_be_left_out() -> None:
    crds = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == {
        "databasebackups.learnops.io",
        "databaserestores.learnops.io",
    }
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not [d for d in render("minimal-values.yaml") if d["kind"] == "CustomResourceDefinition"]


def test_the_helm_test_hook_checks_the_database_with_mounted_credentials() -> None:
    (pod,) = [d for d in render() if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["stats"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DATABASE_URL_FILE"].startswith("/var/run/secrets/learnops/db/")
    assert any(v.get("secret") for v in pod["spec"]["volumes"])


def test_the_prometheus_rule_alerts_on_what_the_programs_export() -> None:
    (rule,) = [d for d in render("full-monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "LearnopsBackupMissing",
        "LearnopsBackupFailed",
        "LearnopsBackupNotRestorable",
        "LearnopsBackupNotVerified",
        "LearnopsQueueBacklogGrowing",
        "LearnopsJobsFailing",
        "LearnopsWorkerLeaseLost",
        "LearnopsJobsUnhandled",
    }
    exported = {
        "learnops_backup_last_success_timestamp_seconds",
        "learnops_backup_last_result",
        "learnops_backup_restorable",
        "learnops_backup_unverified_since_timestamp_seconds",
        "learnops_backup_restore_verification_window_seconds",
        "learnops_worker_queue_depth",
        "learnops_worker_jobs_failed_total",
        "learnops_worker_jobs_lease_lost_total",
        "learnops_worker_queued_unhandled",
    }
    used = {name for name in exported if any(name in expr for expr in alerts.values())}
    assert used == exported


def test_backup_pods_may_reach_the_object_storage_endpoint_only_when_configured() -> None:
    def backup_egress(scenario: str) -> list[dict[str, Any]]:
        (policy,) = [
            d
            for d in render(scenario)
            if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-backup")
        ]
        rules: list[dict[str, Any]] = policy["spec"]["egress"]
        return rules

    def ports(rules: list[dict[str, Any]]) -> set[int]:
        return {p["port"] for r in rules for p in r.get("ports", [])}

    assert 8333 not in ports(backup_egress("default"))
    rules = backup_egress("object-storage-values.yaml")
    (storage,) = [r for r in rules if {p["port"] for p in r["ports"]} == {8333}]
    assert storage["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}
    ]
