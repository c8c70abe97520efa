"""Fixtures shared by every tier. Each tier folder's tests get that tier's marker."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.harness import tiers
from tests.harness.containers import Engine, EngineUnavailable
from tests.harness.kind import KindCluster
from tests.harness.kube import (
    PROVIDERS,
    KubeCluster,
    existing_cluster,
    start_local,
)
from tests.harness.postgres import Conn, PgCluster, major_bindir, pg_bindir

# Component fixtures live beside the component's tests, one plugin module each.
pytest_plugins = [
    "tests.fixtures_dump",
    "tests.fixtures_objects",
    "tests.fixtures_worker",
    "tests.fixtures_operator",
    "tests.fixtures_restore",
]

TIERS = ("unit", "postgres", "cluster", "container", "e2e", "bench")
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (e.g. a killed `make test`) ends the run like Ctrl-C: every fixture's teardown
    runs, so no cluster, node container or PostgreSQL of ours outlives the run."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT / "tests")
        if rel.parts and rel.parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, rel.parts[0]))


# -- PostgreSQL ---------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private cluster per test session (scram auth, free port, own sockets)."""
    bindir = pg_bindir()
    if bindir is None:
        tiers.unavailable("postgres", "no PostgreSQL server binaries (apt-get install postgresql)")
    cluster = PgCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_db(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[Conn]:
    """A fresh database cloned from the sample-data template; superuser credentials."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name = f"t_{slug}_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"
    conn = pg_cluster.create_database(name)
    try:
        yield conn
    finally:
        pg_cluster.drop_database(name)


# -- Kubernetes ---------------------------------------------------------------
@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    """The cluster every cluster test runs against; LEARNOPS_CLUSTER picks the provider."""
    provider = os.environ.get("LEARNOPS_CLUSTER", "local")
    if provider not in PROVIDERS:
        pytest.fail(f"LEARNOPS_CLUSTER={provider!r}; choose one of {PROVIDERS}", pytrace=False)
    if provider == "existing":
        cluster = existing_cluster()
        yield cluster
        cluster.close()
        return
    if provider == "kind":
        yield request.getfixturevalue("kind_cluster")[1]
        return
    if shutil.which("openssl") is None:
        tiers.unavailable("cluster", "openssl not found (apt-get install openssl)")
    workdir = Path(tempfile.mkdtemp(prefix="learnops-k8s-"))
    try:
        cluster, plane = start_local(workdir)
    except (OSError, RuntimeError, TimeoutError) as exc:
        tiers.unavailable("cluster", f"local control plane did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kind_cluster(container_engine: Engine) -> Iterator[tuple[KindCluster, KubeCluster]]:
    """One kind cluster per test session (pytest-kind), shared by every tier that asks for it;
    deleted at the end, also after Ctrl-C or SIGTERM (and by a reaper if we are killed)."""
    if shutil.which("kind") is None:
        tiers.unavailable("e2e", "no kind binary on PATH (run `make deps`)")
    workdir = Path(tempfile.mkdtemp(prefix="learnops-kind-"))
    kind = KindCluster(workdir)
    try:
        try:
            kube = kind.create()
        except (OSError, RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
            tiers.unavailable("e2e", f"kind cluster did not start: {exc}")
        yield kind, kube
    finally:
        kind.delete()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted afterwards."""
    name = f"t-{secrets.token_hex(4)}"
    kube_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- Container engine ---------------------------------------------------------
@pytest.fixture(scope="session")
def container_engine() -> Iterator[Engine]:
    """Docker (started here if needed) with the locally made bookworm base image."""
    try:
        engine = Engine()
    except EngineUnavailable as exc:
        tiers.unavailable("container", str(exc))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def pg_majors() -> Iterator[Callable[[int], PgCluster]]:
    """A throwaway server of any supported major (13-18, registry builds), started on first use
    and kept for the session: `pg_majors(18)`."""
    started: dict[int, PgCluster] = {}

    def get(major: int) -> PgCluster:
        if major not in started:
            bindir = major_bindir(major)
            if bindir is None:
                tiers.unavailable(
                    "postgres",
                    f"no PostgreSQL {major} build (run tests/harness/install-postgresql.sh)",
                )
            started[major] = PgCluster(bindir).start()
        return started[major]

    try:
        yield get
    finally:
        for cluster in started.values():
            cluster.stop()
