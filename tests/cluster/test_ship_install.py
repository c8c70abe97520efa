"""manifests/ and the chart install into a real API server, with Pod Security admission on.

The local control plane has no kubelet and no scheduler: pods are created (and so admitted by
the restricted Pod Security Standard) but never run. That is what these tests rely on: a
Deployment whose ReplicaSet has created its pods passed admission.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import OperatorProcess
from tests.support.ship import CHART, KUBE_VERSION, MANIFESTS, helm

CRD = "databasebackups.learnops.io"
CRDS = (CRD, "databaserestores.learnops.io")


def get_json(kube: KubeCluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kube.kubectl("get", *args, "-o", "json").stdout)
    return out


def pods_admitted(kube: KubeCluster, namespace: str, component: str, count: int) -> bool:
    pods = get_json(kube, "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}")
    return len(pods["items"]) >= count


def replica_failures(kube: KubeCluster, namespace: str) -> list[str]:
    """FailedCreate events: the ReplicaSet controller's pods were rejected (e.g. by PSA)."""
    events = get_json(kube, "events", "-n", namespace)
    return [e["message"] for e in events["items"] if e.get("reason") == "FailedCreate"]


@pytest.fixture
def restricted_namespace(kube_cluster: KubeCluster, namespace: str) -> str:
    kube_cluster.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    return namespace


@pytest.fixture
def release(kube_cluster: KubeCluster, restricted_namespace: str) -> Iterator[str]:
    name = f"lo{secrets.token_hex(3)}"
    yield name
    helm(
        "uninstall", name, "-n", restricted_namespace, "--wait=false",
        kubeconfig=kube_cluster.kubeconfig, check=False,
    )  # fmt: skip


def test_kubectl_apply_k_accepts_every_object_and_admits_the_pods(
    kube_cluster: KubeCluster,
) -> None:
    out = kube_cluster.kubectl("apply", "-k", str(MANIFESTS)).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) >= 10
    assert all(line.endswith(("created", "configured", "unchanged")) for line in lines), out
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    # The samples need the CRD and the namespaces, hence the second apply.
    samples = kube_cluster.kubectl("apply", "-k", str(MANIFESTS / "samples")).stdout
    assert "databasebackup.learnops.io/learnops-nightly" in samples

    wait_for(
        lambda: pods_admitted(kube_cluster, "learnops-system", "operator", 1), 60, "operator pod"
    )
    wait_for(
        lambda: pods_admitted(kube_cluster, "learnops", "learning-worker", 2), 60, "worker pods"
    )
    assert replica_failures(kube_cluster, "learnops-system") == []
    assert replica_failures(kube_cluster, "learnops") == []
    backup = get_json(kube_cluster, "databasebackup", "learnops-nightly", "-n", "learnops")
    # Defaults from the CRD schema were applied by the API server.
    assert backup["spec"]["verify"] == "list"
    assert backup["spec"]["startingDeadlineSeconds"] == 300


def test_the_manifests_operator_account_cannot_read_secrets(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-k", str(MANIFESTS))
    who = "system:serviceaccount:learnops-system:learnops-operator"
    for verb in ("get", "list", "watch"):
        answer = kube_cluster.kubectl(
            "auth", "can-i", verb, "secrets", "-A", as_user=who, check=False
        )
        assert answer.stdout.strip() == "no", verb
    allowed = kube_cluster.kubectl("auth", "can-i", "create", "cronjobs", "-n", "learnops",
                                   as_user=who, check=False)  # fmt: skip
    assert allowed.stdout.strip() == "yes"


def adopt_existing_crd(kube: KubeCluster, release: str, namespace: str) -> None:
    """A CRD made by `kubectl apply` (or another release) is handed to this release, the way
    the runbook describes moving from manifests/ to Helm."""
    for crd in CRDS:
        exists = kube.kubectl("get", "crd", crd, check=False)
        if exists.returncode != 0:
            continue
        kube.kubectl(
            "annotate", "crd", crd, "--overwrite",
            f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
        kube.kubectl("label", "crd", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm")


def test_helm_install_upgrade_uninstall_in_a_restricted_namespace_keeps_the_crd(
    kube_cluster: KubeCluster, restricted_namespace: str, release: str
) -> None:
    ns = restricted_namespace
    # A first install: the chart brings the CRD itself.
    kube_cluster.kubectl("delete", "crd", *CRDS, "--ignore-not-found", "--wait=true")
    install = helm(
        "install", release, str(CHART), "-n", ns,
        "-f", str(CHART / "ci" / "backups-from-values-values.yaml"),
        kubeconfig=kube_cluster.kubeconfig,
    )  # fmt: skip
    assert "STATUS: deployed" in install.stdout
    assert "kubectl -n" in install.stdout  # NOTES.txt: the example and how to watch it
    # Helm maps all objects before creating any, so the backups wait for one upgrade.
    assert "were NOT created yet" in install.stdout
    for crd in CRDS:
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

    wait_for(lambda: pods_admitted(kube_cluster, ns, "operator", 1), 60, "operator pod")
    wait_for(lambda: pods_admitted(kube_cluster, ns, "learning-worker", 2), 60, "worker pods")
    assert replica_failures(kube_cluster, ns) == []

    upgrade = helm(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
        kubeconfig=kube_cluster.kubeconfig,
    )  # fmt: skip
    assert "were NOT created yet" not in upgrade.stdout
    backups = get_json(kube_cluster, "databasebackups", "-n", ns)
    assert sorted(b["metadata"]["name"] for b in backups["items"]) == [
        "learnops-hourly",
        "learnops-nightly",
    ]

    helm(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
        "--set", "worker.replicas=3", "--set", "worker.concurrency=4",
        kubeconfig=kube_cluster.kubeconfig,
    )  # fmt: skip
    worker = get_json(kube_cluster, "deployment", f"{release}-learnops-worker", "-n", ns)
    assert worker["spec"]["replicas"] == 3
    config = get_json(kube_cluster, "configmap", f"{release}-learnops-worker", "-n", ns)
    assert config["data"]["WORKER_CONCURRENCY"] == "4"
    wait_for(lambda: pods_admitted(kube_cluster, ns, "learning-worker", 3), 60, "3 worker pods")

    refused = helm(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values", "--set", "worker.replicas=5",
        kubeconfig=kube_cluster.kubeconfig, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "want 4" in refused.stderr

    helm("uninstall", release, "-n", ns, kubeconfig=kube_cluster.kubeconfig)
    for name in CRDS:
        kept = get_json(kube_cluster, "crd", name)
        assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    gone = kube_cluster.kubectl("get", "deployment", "-n", ns, "-o", "name").stdout
    assert gone.strip() == ""


def render_test_pod(namespace: str, *extra: str) -> str:
    return helm(
        "template", "lo", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION,
        "--show-only", "templates/tests/db-reachable.yaml", *extra,
    ).stdout  # fmt: skip


def create_worker_account(kube: KubeCluster, namespace: str) -> None:
    """ServiceAccount admission refuses pods whose account does not exist yet."""
    account = helm(
        "template", "lo", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION,
        "--show-only", "templates/worker/serviceaccount.yaml",
    ).stdout  # fmt: skip
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=account)


def test_the_helm_test_pod_passes_pod_security_admission(
    kube_cluster: KubeCluster, restricted_namespace: str
) -> None:
    create_worker_account(kube_cluster, restricted_namespace)
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", restricted_namespace, "-f", "-",
        input=render_test_pod(restricted_namespace), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "created (server dry run)" in out.stdout


def test_a_hardening_regression_would_be_refused_by_admission(
    kube_cluster: KubeCluster, restricted_namespace: str
) -> None:
    """The namespace really enforces: the same pod without the hardened context is refused."""
    create_worker_account(kube_cluster, restricted_namespace)
    rendered = render_test_pod(
        restricted_namespace, "--set", "containerSecurityContext.allowPrivilegeEscalation=true"
    )
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", restricted_namespace, "-f", "-",
        input=rendered, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "violates PodSecurity" in out.stderr


def chart_operator_env(kube: KubeCluster, release: str, namespace: str) -> dict[str, str]:
    """What the chart's operator container gets: its ConfigMap plus the downward API env."""
    config = get_json(kube, "configmap", f"{release}-learnops-operator", "-n", namespace)
    env: dict[str, str] = dict(config["data"])
    deployment = get_json(kube, "deployment", f"{release}-learnops-operator", "-n", namespace)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    downward = {"metadata.name": f"{release}-operator-test", "metadata.namespace": namespace}
    for item in container.get("env", []):
        env[item["name"]] = (
            item.get("value") or downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
        )
    return env


def test_the_operator_runs_with_the_charts_settings_and_rbac(
    kube_cluster: KubeCluster, restricted_namespace: str, release: str, tmp_path: Path
) -> None:
    """The chart's RBAC (incl. its Lease name) and ConfigMap are enough for a real operator to
    win its Lease and reconcile the DatabaseBackups declared in values."""
    ns = restricted_namespace
    adopt_existing_crd(kube_cluster, release, ns)
    helm(
        "install", release, str(CHART), "-n", ns,
        "-f", str(CHART / "ci" / "backups-from-values-values.yaml"),
        "--set", f"operator.watchNamespace={ns}", "--set", "operator.leaseDurationSeconds=4",
        kubeconfig=kube_cluster.kubeconfig,
    )  # fmt: skip
    # Creates the backups if this was the CRD's first install (see the test above).
    helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values",
         kubeconfig=kube_cluster.kubeconfig)  # fmt: skip
    account = f"system:serviceaccount:{ns}:{release}-learnops-operator"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNOPS_")}
    env |= chart_operator_env(kube_cluster, release, ns)
    env["KUBECONFIG"] = str(kube_cluster.kubeconfig_for(account))
    process = OperatorProcess(
        [sys.executable, "-m", "learnops_operator", "--sweep-interval=1"], env, tmp_path / "op.log"
    )
    try:
        process.wait_live()

        def ready(name: str) -> bool:
            body = get_json(kube_cluster, "databasebackup", name, "-n", ns)
            return condition(body.get("status"), "Ready").get("status") == "True"

        wait_for(lambda: ready("learnops-nightly") and ready("learnops-hourly"), 60, "Ready=True")
        lease = get_json(kube_cluster, "lease", f"{release}-learnops-operator", "-n", ns)
        assert lease["spec"]["holderIdentity"] == f"{release}-operator-test"
        cronjob = get_json(kube_cluster, "cronjob", "learnops-hourly-backup", "-n", ns)
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "learnops/dump:0.1.0"
    finally:
        process.stop()
        print(*process.logs().splitlines()[-40:], sep="\n")
