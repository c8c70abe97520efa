"""`helm test` really runs its pod: it passes with the worker's credentials, fails without."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.containers import Engine
from tests.harness.kube import KubeCluster
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import PgCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "learnops"
WORKER_IMAGE = "learnops/learning-worker:0.1.0"  # the chart's appVersion


@pytest.fixture
def test_pods(
    kube_cluster: KubeCluster, container_engine: Engine, namespace: str
) -> Iterator[None]:
    """Run only the chart's test pod; Deployment pods stay Pending on a kubelet-less plane."""
    if kube_cluster.has_kubelet:
        yield
        return
    runner = PodRunner(
        kube_cluster.api(),
        container_engine,
        [namespace],
        selector="app.kubernetes.io/component=test",
    ).start()
    yield
    runner.stop()


def _put_database_url(kube: KubeCluster, namespace: str, url: str) -> None:
    """Create or replace the chart's database Secret; the URL goes through stdin, not argv."""
    manifest = kube.kubectl(
        "create",
        "secret",
        "generic",
        "learnops-database",
        "-n",
        namespace,
        "--from-file=DATABASE_URL=/dev/stdin",
        "--dry-run=client",
        "-o",
        "yaml",
        input=url,
    ).stdout
    kube.kubectl("apply", "-f", "-", input=manifest)


def _helm(kube: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["helm", *args, f"--kubeconfig={kube.kubeconfig}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_helm_test_passes_when_the_database_is_reachable_and_fails_when_not(
    kube_cluster: KubeCluster,
    container_engine: Engine,
    pg_cluster: PgCluster,
    namespace: str,
    test_pods: None,
    tmp_path: Path,
) -> None:
    container_engine.build(WORKER_IMAGE, REPO / "images/learning-worker/Dockerfile", REPO)
    role = pg_cluster.create_user(f"w_{namespace.replace('-', '_')}", "helm-test-pw")
    db = pg_cluster.create_database(f"db_{namespace.replace('-', '_')}", owner=role.user)
    url = role.with_db(db.dbname).url()
    url_file = tmp_path / "url"
    url_file.write_text(url)
    env = {**os.environ, "DATABASE_URL_FILE": str(url_file), "WORKER_HTTP_PORT": "0"}
    subprocess.run(["learning-worker", "migrate"], env=env, check=True, capture_output=True)
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    _put_database_url(kube_cluster, namespace, url)
    installed = _helm(
        kube_cluster,
        "install",
        "t",
        str(CHART),
        "-n",
        namespace,
        "--set",
        "crds.install=false",
        "--set",
        "worker.image.pullPolicy=Never",
    )
    assert installed.returncode == 0, installed.stderr

    passed = _helm(kube_cluster, "test", "t", "-n", namespace, "--timeout", "3m")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Phase:          Succeeded" in passed.stdout

    wrong = url.replace("helm-test-pw", "not-the-password")
    _put_database_url(kube_cluster, namespace, wrong)
    failed = _helm(kube_cluster, "test", "t", "-n", namespace, "--timeout", "3m")
    assert failed.returncode != 0
    assert "not-the-password" not in failed.stdout + failed.stderr
