"""The e2e tier runs on real pods: a kind cluster (one per session), our images loaded with
`kind load`, and PostgreSQL as a pod. The fixtures the other tiers define for the local control
plane and the host's PostgreSQL (`kube_cluster`, `operator_kubeconfig`, `pg_cluster`, `pg_db`)
are redefined here on top of that platform, so the e2e tests read like the others.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import tiers
from tests.harness.containers import Engine
from tests.harness.kind import KindCluster, log
from tests.harness.kube import KubeCluster
from tests.harness.platform import IMAGES, Platform, build_image
from tests.harness.podpostgres import NODEPORT, SCRATCH_NAMESPACE, SCRATCH_NODEPORT, PodPostgres
from tests.harness.postgres import Conn
from tests.support.operator import install_operator_rbac

REPO = Path(__file__).resolve().parents[2]
# pytest-timeout counts fixture setup: the first e2e test also pays for the platform (a cold
# node image, image builds, the cluster, PostgreSQL), the demo test for a cluster of its own.
E2E_TIMEOUT_SECONDS = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # a conftest's collection hook sees every item of the session, not only this folder's
        if item.nodeid.startswith("tests/e2e/") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))


@pytest.fixture(scope="session")
def platform(kind_cluster: tuple[KindCluster, KubeCluster], container_engine: Engine) -> Platform:
    """The kind cluster with our images on its node and PostgreSQL running as a pod."""
    kind, kube = kind_cluster
    t0 = time.monotonic()
    try:
        for tag, (dockerfile, context) in IMAGES.items():
            build_image(container_engine, tag, dockerfile, context)
        kind.load(*IMAGES)
    except RuntimeError as exc:
        tiers.unavailable("e2e", f"images did not build or load: {exc}")
    log(f"{len(IMAGES)} images built and loaded in {time.monotonic() - t0:.0f}s")
    kind.wait_system(kube)
    pg = PodPostgres(kube, kind.host_ports[NODEPORT]).start()
    log("PostgreSQL pod answering")
    return Platform(kind, kube, pg)


@pytest.fixture(scope="session")
def kube_cluster(platform: Platform) -> KubeCluster:
    return platform.kube


@pytest.fixture(scope="session")
def operator_kubeconfig(kube_cluster: KubeCluster) -> Path:
    return install_operator_rbac(kube_cluster)


@pytest.fixture(scope="session")
def pg_cluster(platform: Platform) -> PodPostgres:
    return platform.pg


@pytest.fixture(scope="session")
def scratch_cluster(platform: Platform) -> PodPostgres:
    """A second PostgreSQL pod (its own initdb, so another system identifier and another
    Service name): restore targets and drill scratch servers live here. Started only when a
    test asks for it; it goes with the cluster."""
    port = platform.kind.host_ports[SCRATCH_NODEPORT]
    pg = PodPostgres(platform.kube, port, SCRATCH_NAMESPACE, SCRATCH_NODEPORT).start()
    log("second PostgreSQL pod answering")
    return pg


@pytest.fixture
def pg_db(pg_cluster: PodPostgres, request: pytest.FixtureRequest) -> Iterator[Conn]:
    """A fresh database of the PostgreSQL pod, cloned from the sample-data template."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name = f"t_{slug}_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"
    conn = pg_cluster.create_database(name)
    try:
        yield conn
    finally:
        pg_cluster.drop_database(name)
