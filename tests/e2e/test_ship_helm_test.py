"""Both install paths on real pods: `helm install` and `kubectl apply -k manifests/` into
namespaces that enforce `restricted`, the operator and worker Deployments Ready with their
probes passing, and `helm test` passing with the worker's credentials and failing without."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "learnops"
SECRET = "learnops-database"  # the one name both install paths read the worker's URL from
# Long enough for a liveness probe to have failed a few times if it were going to.
PROBE_SETTLE_SECONDS = 20


def _put_database_url(kube: KubeCluster, namespace: str, url: str) -> None:
    """Create or replace the worker's database Secret; the URL goes through stdin, not argv."""
    manifest = kube.kubectl(
        "create", "secret", "generic", SECRET, "-n", namespace,
        "--from-file=DATABASE_URL=/dev/stdin", "--dry-run=client", "-o", "yaml", input=url,
    ).stdout  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=manifest)


def _helm(kube: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["helm", *args, f"--kubeconfig={kube.kubeconfig}"],
        capture_output=True, text=True, check=False, timeout=400,
    )  # fmt: skip


def _worker_database(pg: PodPostgres, name: str, password: str, tmp_path: Path) -> Conn:
    """A migrated database owned by a worker role; returns the connection as pods see it."""
    role = pg.create_user(f"w_{name}", password)
    db = pg.create_database(f"db_{name}", owner=role.user)
    url_file = tmp_path / "url"
    url_file.write_text(role.with_db(db.dbname).url())
    env = {**os.environ, "DATABASE_URL_FILE": str(url_file), "WORKER_HTTP_PORT": "0"}
    subprocess.run(["learning-worker", "migrate"], env=env, check=True, capture_output=True)
    return pg.in_cluster(role.with_db(db.dbname))


def _assert_ready_with_probes(kube: KubeCluster, namespace: str, selector: str) -> int:
    """Every Deployment Available, every container Ready with a liveness probe (and the worker
    with a readiness probe; the operator has none by design), none restarted after the probes
    had time to fail. Returns the number of pods checked."""
    kube.kubectl(
        "wait", "deployment", "-n", namespace, "-l", selector,
        "--for=condition=Available", "--timeout=240s",
    )  # fmt: skip
    time.sleep(PROBE_SETTLE_SECONDS)
    pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o",
                                   "json").stdout)["items"]  # fmt: skip
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, pods
    for pod in running:
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            assert "livenessProbe" in container, name
            if "worker" in container["name"]:
                assert "readinessProbe" in container, name
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"], (name, status)
            assert status["restartCount"] == 0, (name, status)
    return len(running)


@pytest.fixture
def release(kube_cluster: KubeCluster, namespace: str) -> Iterator[str]:
    yield "t"
    _helm(kube_cluster, "uninstall", "t", "-n", namespace, "--wait", "--timeout", "2m")


def test_helm_install_into_restricted_namespaces_runs_ready_pods_and_helm_test_passes(
    kube_cluster: KubeCluster,
    pg_cluster: PodPostgres,
    namespace: str,
    operator_kubeconfig: Path,  # the CRD (shared by the session) is installed
    release: str,
    tmp_path: Path,
) -> None:
    conn = _worker_database(pg_cluster, namespace.replace("-", "_"), "helm-test-pw", tmp_path)
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    _put_database_url(kube_cluster, namespace, conn.url())
    installed = _helm(
        kube_cluster, "install", release, str(CHART), "-n", namespace,
        "--set", "crds.install=false", "--set", f"operator.watchNamespace={namespace}",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # Restricted admission let every pod in (a refused pod would leave its ReplicaSet short).
    events = kube_cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "violates PodSecurity" not in events
    assert _assert_ready_with_probes(kube_cluster, namespace, "app.kubernetes.io/name=learnops")

    passed = _helm(kube_cluster, "test", release, "-n", namespace, "--timeout", "3m")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Phase:          Succeeded" in passed.stdout

    wrong = conn.url().replace("helm-test-pw", "not-the-password")
    _put_database_url(kube_cluster, namespace, wrong)
    failed = _helm(kube_cluster, "test", release, "-n", namespace, "--timeout", "3m")
    assert failed.returncode != 0
    assert "not-the-password" not in failed.stdout + failed.stderr


def test_kubectl_apply_k_manifests_runs_ready_operator_and_worker_pods(
    kube_cluster: KubeCluster,
    pg_cluster: PodPostgres,
    operator_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    conn = _worker_database(pg_cluster, "kustomize", "kustomize-pw", tmp_path)
    kube_cluster.kubectl("apply", "-f", str(REPO / "manifests/worker/namespace.yaml"))
    _put_database_url(kube_cluster, "learnops", conn.url())
    try:
        kube_cluster.kubectl("apply", "-k", str(REPO / "manifests"))
        selector = "app.kubernetes.io/part-of=learnops"
        assert _assert_ready_with_probes(kube_cluster, "learnops-system", selector) >= 1
        assert _assert_ready_with_probes(kube_cluster, "learnops", selector) >= 1
    finally:
        # The CRD and the operator's RBAC stay: the rest of the session uses them.
        kube_cluster.kubectl("delete", "namespace", "learnops", "--wait=false", check=False)
        kube_cluster.kubectl(
            "delete", "deployment", "-n", "learnops-system", "-l", "app.kubernetes.io/part-of",
            "--wait=true", "--timeout=60s", check=False,
        )  # fmt: skip
