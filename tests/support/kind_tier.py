"""The kind platform under the names every tier's fixtures use: `kube_cluster` (the kind
cluster), `operator_kubeconfig` (RBAC installed there), `pg_cluster` (the PostgreSQL pod) and
`scratch_cluster` (the second one). A conftest or test module that imports these runs on real
pods; the fixtures built on them (`namespace`, `backup_ns`, `operator`, ...) follow.

They are defined once here and imported where needed (tests/e2e/conftest.py, the kind bench),
because tests/bench also holds benchmarks that want the host's PostgreSQL under those names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.platform import Platform
from tests.harness.podpostgres import PodPostgres
from tests.support.operator import install_operator_rbac


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
def scratch_cluster(scratch_pod: PodPostgres) -> PodPostgres:
    return scratch_pod
