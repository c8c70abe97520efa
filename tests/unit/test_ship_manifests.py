"""manifests/ builds offline into valid, hardened objects that agree with the chart."""

from __future__ import annotations

from typing import Any

import yaml

from tests.harness.validate import validation_errors
from tests.support.ship import (
    MANIFESTS,
    WORKER_CAP,
    crd_validator,
    kustomize,
    normalized,
    pod_specs,
    render,
    restricted_violations,
)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_kustomization_validates_against_the_pinned_kubernetes_schemas() -> None:
    docs = kustomize(".")
    kinds = {d["kind"] for d in docs}
    assert {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "ConfigMap",
    } <= kinds
    assert validation_errors(docs, strict=True) == []


def test_the_kustomization_uses_the_single_source_crd_unchanged() -> None:
    crds = {c["metadata"]["name"]: c for c in by_kind(kustomize("."), "CustomResourceDefinition")}
    for file in ("learnops.io_databasebackups.yaml", "learnops.io_databaserestores.yaml"):
        source = yaml.safe_load((MANIFESTS / "crds" / file).read_text())
        assert normalized(crds.pop(source["metadata"]["name"])) == normalized(source)
    assert not crds


def test_namespaces_enforce_the_restricted_pod_security_standard() -> None:
    for ns in by_kind(kustomize("."), "Namespace"):
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_template_meets_the_restricted_standard_and_has_a_tmp_volume() -> None:
    specs = list(pod_specs(kustomize(".")))
    assert len(specs) == 2
    for label, spec in specs:
        assert restricted_violations(spec) == [], label
        assert any(v.get("emptyDir") is not None for v in spec["volumes"]), label


def test_the_worker_stays_under_the_cap_and_outlives_its_drain() -> None:
    docs = kustomize(".")
    (worker,) = [
        d
        for d in by_kind(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "learning-worker"
    ]
    (config,) = by_kind(docs, "ConfigMap")
    spec = worker["spec"]["template"]["spec"]
    assert worker["spec"]["replicas"] <= WORKER_CAP
    assert int(config["data"]["WORKER_CONCURRENCY"]) <= WORKER_CAP
    assert spec["terminationGracePeriodSeconds"] > float(
        config["data"]["WORKER_SHUTDOWN_TIMEOUT_SECONDS"]
    )
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == int(config["data"]["WORKER_HTTP_PORT"])
    # The generated ConfigMap name (with its content hash) is what the pods reference.
    refs = {
        s["configMapRef"]["name"]
        for c in spec["initContainers"] + spec["containers"]
        for s in c["envFrom"]
    }
    assert refs == {config["metadata"]["name"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DATABASE_URL_FILE"].startswith("/var/run/secrets/learnops/db/")


def test_the_operator_deployment_matches_the_contract() -> None:
    docs = kustomize(".")
    (operator,) = [
        d
        for d in by_kind(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    spec = operator["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "learnops/operator:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "readyz": 8081, "metrics": 9090}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readyz"}
    (sa,) = [
        s
        for s in by_kind(docs, "ServiceAccount")
        if s["metadata"]["name"] == spec["serviceAccountName"]
    ]
    assert sa["metadata"]["namespace"] == operator["metadata"]["namespace"] == "learnops-system"


def rule_set(rules: list[dict[str, Any]], lease: str) -> set[tuple[str, str, str, str]]:
    out = set()
    for rule in rules:
        names = [("LEASE" if n == lease else n) for n in rule.get("resourceNames", [])] or ["*"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def test_the_operator_never_gets_to_read_secrets() -> None:
    for docs in (kustomize("."), render()):
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for group, resource, verb, _ in rule_set(role["rules"], ""):
                assert resource not in {"secrets", "*"} or group not in {"", "*"}, (
                    f"{role['metadata']['name']} may {verb} {resource}"
                )


def test_the_chart_grants_the_operator_exactly_the_rules_of_manifests() -> None:
    manifests, chart = kustomize("."), render()
    for kind in ("ClusterRole", "Role"):
        (m,) = by_kind(manifests, kind)
        (c,) = by_kind(chart, kind)
        assert rule_set(c["rules"], "lo-learnops-operator") == rule_set(
            m["rules"], "learnops-operator"
        ), kind


def test_samples_validate_and_hold_placeholders_only() -> None:
    docs = kustomize("samples")
    builtin = [d for d in docs if d["kind"] != "DatabaseBackup"]
    assert validation_errors(builtin, strict=True) == []
    validator = crd_validator()
    (backup,) = by_kind(docs, "DatabaseBackup")
    assert [e.message for e in validator.iter_errors(backup)] == []
    claims = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}
    assert backup["spec"]["storage"]["persistentVolumeClaim"]["claimName"] in claims
    secrets = by_kind(docs, "Secret")
    assert backup["spec"]["database"]["pgpassSecretRef"]["name"] in {
        s["metadata"]["name"] for s in secrets
    }
    for secret in secrets:
        for value in secret["stringData"].values():
            assert "REPLACE-ME" in value, secret["metadata"]["name"]


def test_the_worker_reads_the_sample_secret_by_name_and_key() -> None:
    (worker,) = [
        d
        for d in by_kind(kustomize("."), "Deployment")
        if d["metadata"]["name"] == "learning-worker"
    ]
    (secret,) = [
        s
        for s in by_kind(kustomize("samples"), "Secret")
        if s["metadata"]["name"] == "learnops-database"
    ]
    (volume,) = [v for v in worker["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert {i["key"] for i in volume["secret"]["items"]} <= set(secret["stringData"])
    assert worker["metadata"]["namespace"] == secret["metadata"]["namespace"]


def test_both_install_paths_read_the_workers_database_url_from_one_secret_name() -> None:
    (kustomized,) = [
        d
        for d in by_kind(kustomize("."), "Deployment")
        if d["metadata"]["name"] == "learning-worker"
    ]
    (charted,) = [
        d
        for d in by_kind(render(), "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "learning-worker"
    ]

    def secret_names(deploy: dict[str, Any]) -> set[str]:
        volumes = deploy["spec"]["template"]["spec"]["volumes"]
        return {v["secret"]["secretName"] for v in volumes if "secret" in v}

    assert secret_names(kustomized) == secret_names(charted) == {"learnops-database"}


def test_one_watched_namespace_gets_namespaced_roles_only_in_manifests_and_chart() -> None:
    manifests = kustomize("namespaced")
    chart = render(extra=("--set", "operator.watchNamespace=learnops"))
    for docs in (manifests, chart):
        kinds = {d["kind"] for d in docs}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
        roles = by_kind(docs, "Role")
        assert {r["metadata"]["namespace"] for r in roles} >= {"learnops"}
    # the only difference to manifests/: the Role instead of the ClusterRole, and the scope
    cluster_wide = {(d["kind"], d["metadata"]["name"]) for d in kustomize(".")}
    here = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    assert cluster_wide - here == {
        ("ClusterRole", "learnops-operator"),
        ("ClusterRoleBinding", "learnops-operator"),
    }
    assert here - cluster_wide == {
        ("Role", "learnops-operator"),
        ("RoleBinding", "learnops-operator"),
    }
    (operator,) = [
        d
        for d in by_kind(manifests, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LEARNOPS_NAMESPACE"] == "learnops"
    assert validation_errors(list(manifests), strict=True) == []
    # the same application rules as the cluster-wide role, minus kopf's cluster scanning
    (cluster_role,) = by_kind(kustomize("."), "ClusterRole")
    scanning = {("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}
    wanted = {
        r for r in rule_set(cluster_role["rules"], "learnops-operator") if r[:2] not in scanning
    }
    for docs, prefix in ((manifests, "learnops-operator"), (chart, "lo-learnops-operator")):
        (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["namespace"] == "learnops"
                   and not r["metadata"]["name"].endswith("leader-election")]  # fmt: skip
        assert rule_set(role["rules"], prefix) == wanted
