"""The e2e tier runs on real pods: a kind cluster (one per session), our images loaded with
`kind load`, and PostgreSQL as a pod (`platform`, tests/conftest.py). The fixtures the other
tiers define for the local control plane and the host's PostgreSQL (`kube_cluster`,
`operator_kubeconfig`, `pg_cluster`, `scratch_cluster`) are taken from tests/support/kind_tier.py,
which defines them on top of that platform, and `pg_db` is redefined here, so the e2e tests read
like the others.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import tiers
from tests.harness.containers import Engine
from tests.harness.kind import log
from tests.harness.objectservers import ServerUnavailable
from tests.harness.platform import SCENARIO_IMAGE, Platform
from tests.harness.podpostgres import PodPostgres
from tests.harness.pods3 import IMAGE as S3_IMAGE
from tests.harness.pods3 import NODEPORT as S3_NODEPORT
from tests.harness.pods3 import PodS3
from tests.harness.pods3 import build_image as build_s3_image
from tests.harness.postgres import Conn
from tests.support import kind_tier
from tests.support.operator import OperatorProcess, Operators

REPO = Path(__file__).resolve().parents[2]
# pytest-timeout counts fixture setup: the first e2e test also pays for the platform (a cold
# node image, image builds, the cluster, PostgreSQL), the demo test for a cluster of its own.
E2E_TIMEOUT_SECONDS = 1800

# The other tiers' fixture names, on the kind platform.
kube_cluster = kind_tier.kube_cluster
operator_kubeconfig = kind_tier.operator_kubeconfig
pg_cluster = kind_tier.pg_cluster
scratch_cluster = kind_tier.scratch_cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # a conftest's collection hook sees every item of the session, not only this folder's
        if item.nodeid.startswith("tests/e2e/") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))


@pytest.fixture(scope="session")
def pod_s3(platform: Platform, container_engine: Engine) -> PodS3:
    """SeaweedFS's S3 gateway as a pod; its image is built and loaded on first use, so only
    the sessions that run object-storage tests pay for it."""
    t0 = time.monotonic()
    try:
        build_s3_image(container_engine)
        platform.kind.load(S3_IMAGE)
    except (RuntimeError, ServerUnavailable, subprocess.CalledProcessError) as exc:
        tiers.unavailable("e2e", f"the S3 server image did not build or load: {exc}")
    s3 = PodS3(platform.kube, platform.kind.host_ports[S3_NODEPORT]).start()
    log(f"S3 server pod answering ({time.monotonic() - t0:.0f}s with its image)")
    return s3


@pytest.fixture(scope="module")
def scenario_operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator replica per test module whose dump image is the scenario image, so every
    backup, restore and drill pod it starts plays a scenario (tests/support/scenario_pods.py)."""
    ops = Operators(operator_kubeconfig, tmp_path_factory.mktemp("scenario-operator"))
    try:
        yield ops.start(f"--dump-image={SCENARIO_IMAGE}")
    finally:
        ops.stop_all()


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
