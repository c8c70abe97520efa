"""Fixtures used by more than one tier (a tier's own fixtures are in its conftest.py; the
helpers they build on are in tests/support/). Each tier folder's tests get that tier's marker."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import interrupts, parallel, tiers
from tests.harness.containers import Engine, EngineUnavailable
from tests.harness.kind import KindCluster, log
from tests.harness.kube import (
    PROVIDERS,
    KubeCluster,
    existing_cluster,
    start_local,
)
from tests.harness.objectservers import ObjectServer
from tests.harness.platform import IMAGES, Platform, build_image
from tests.harness.podpostgres import NODEPORT, SCRATCH_NAMESPACE, SCRATCH_NODEPORT, PodPostgres
from tests.harness.postgres import Conn, PgCluster, major_bindir, pg_bindir
from tests.support import objects
from tests.support.operator import Namespace, OperatorProcess, Operators, install_operator_rbac
from tests.support.worker import FakeProvider, migrated, running_fake_provider

TIERS = ("unit", "postgres", "cluster", "container", "e2e", "bench")
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """SIGINT and SIGTERM (Ctrl-C, a killed `make test`) end the run with every fixture's
    teardown, in every xdist worker, so no cluster, node container or PostgreSQL of ours
    outlives it (tests/harness/interrupts.py)."""
    interrupts.install(config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: object) -> None:
    """An xdist worker that comes up after an interrupt is stopped at once."""
    interrupts.forward_to_new_workers()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT / "tests")
        if rel.parts and rel.parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, rel.parts[0]))
    parallel.assign(config, items, ROOT / "tests")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tiers.summary(terminalreporter)


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


@pytest.fixture(scope="session")
def scratch_cluster() -> Iterator[PgCluster]:
    """A second private cluster: restore targets and drill scratch servers live here."""
    bindir = pg_bindir()
    if bindir is None:
        tiers.unavailable("postgres", "no PostgreSQL server binaries (apt-get install postgresql)")
    cluster = PgCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


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
    kube: KubeCluster | None = None
    try:
        try:
            kube = kind.create()
        except (OSError, RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
            tiers.unavailable("e2e", f"kind cluster did not start: {exc}")
        yield kind, kube
    finally:
        kind.delete()
        if kube is not None:
            kube.close()  # its per-user kubeconfigs (learnops-kubecfg-*)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def e2e_images(container_engine: Engine) -> list[str]:
    """Every image the e2e tier loads, built (tests that make a cluster of their own need only
    these, not the session's cluster: under xdist they then run beside it)."""
    t0 = time.monotonic()
    try:
        for tag, (dockerfile, context) in IMAGES.items():
            build_image(container_engine, tag, dockerfile, context)
    except RuntimeError as exc:
        tiers.unavailable("e2e", f"images did not build: {exc}")
    log(f"{len(IMAGES)} images built in {time.monotonic() - t0:.0f}s")
    return list(IMAGES)


@pytest.fixture(scope="session")
def platform(kind_cluster: tuple[KindCluster, KubeCluster], e2e_images: list[str]) -> Platform:
    """The kind cluster with our images on its node and PostgreSQL running as a pod (the e2e
    tier and the kind bench; tests/support/kind_tier.py gives it the other tiers' fixture names)."""
    kind, kube = kind_cluster
    t0 = time.monotonic()
    kind.load(*e2e_images)
    log(f"{len(e2e_images)} images loaded in {time.monotonic() - t0:.0f}s")
    kind.wait_system(kube)
    pg = PodPostgres(kube, kind.host_ports[NODEPORT]).start()
    log("PostgreSQL pod answering")
    return Platform(kind, kube, pg)


@pytest.fixture(scope="session")
def scratch_pod(platform: Platform) -> PodPostgres:
    """A second PostgreSQL pod (its own initdb, so another system identifier and another
    Service name): restore targets and drill scratch servers live here. Started only when a
    test asks for it; it goes with the cluster."""
    port = platform.kind.host_ports[SCRATCH_NODEPORT]
    pg = PodPostgres(platform.kube, port, SCRATCH_NAMESPACE, SCRATCH_NODEPORT).start()
    log("second PostgreSQL pod answering")
    return pg


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


# -- The operator (cluster, container, e2e, bench) --------------------------------
@pytest.fixture(scope="session")
def operator_kubeconfig(kube_cluster: KubeCluster) -> Path:
    """CRD and RBAC installed from manifests/; a kubeconfig holding the operator SA's token."""
    return install_operator_rbac(kube_cluster)


@pytest.fixture
def operators(operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Operators]:
    """Start operator processes at will (restarts, two replicas); all stopped afterwards."""
    ops = Operators(operator_kubeconfig, tmp_path)
    try:
        yield ops
    finally:
        ops.stop_all()


@pytest.fixture(scope="module")
def operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One cluster-wide operator replica shared by a test module (starting one takes seconds).

    Modules that start their own processes (`operators`) must not use it at the same time.
    """
    ops = Operators(operator_kubeconfig, tmp_path_factory.mktemp("operator"))
    try:
        yield ops.start()
    finally:
        ops.stop_all()


@pytest.fixture
def backup_ns(kube_cluster: KubeCluster, namespace: str, operator_kubeconfig: Path) -> Namespace:
    """A fresh namespace with the `backups` PVC (the pgpass Secret is up to each test)."""
    ns = Namespace(kube_cluster, namespace)
    ns.add_pvc()
    return ns


# -- Dump sources and targets (postgres, container, bench) ------------------------
@pytest.fixture(scope="session")
def big_db(pg_cluster: PgCluster) -> Iterator[str]:
    """A database of >= 600 MB (10x the runner's memory bound), built once per session."""
    name = "learnops_big"
    pg_cluster.create_database(name)
    pg_cluster.fill_mb(name, 600)
    try:
        yield name
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[ObjectServer]:
    yield from objects.serve("s3")


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[ObjectServer]:
    yield from objects.serve("gcs")


@pytest.fixture(scope="session")
def azure_server() -> Iterator[ObjectServer]:
    yield from objects.serve("azureBlob")


@pytest.fixture
def bucket_of() -> Callable[[ObjectServer], str]:
    """Creates fresh buckets on a server: bucket_of(server) -> name."""

    def make(server: ObjectServer) -> str:
        name = f"t-{secrets.token_hex(5)}"
        server.create_bucket(name)
        return name

    return make


# -- The worker (postgres, unit, e2e) ----------------------------------------------
@pytest.fixture
def worker_db(pg_db: Conn) -> Conn:
    """A fresh database with the worker schema and the test side tables."""
    migrated(pg_db)
    return pg_db


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with running_fake_provider() as fake:
        yield fake
