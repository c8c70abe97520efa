"""Fixtures of the postgres tier: dump worlds, object-storage targets, worker processes and
servers of one's own (the helpers they build on are in tests/support/)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import tiers
from tests.harness.net import free_port
from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import Conn, PgCluster, pg_bindir
from tests.support.dump import DumpWorld, create_dump_role
from tests.support.objects import KINDS, AgeKey, make_age_key
from tests.support.worker import BlackHoleProxy, OwnPostgres, WorkerProc, migrated, worker_env


@pytest.fixture
def as_root() -> None:
    """Tests that mount filesystems or switch uid need root (CI and this ground run as root)."""
    if os.geteuid() != 0:
        tiers.unavailable("postgres", "needs root (mount, setuid)")


@pytest.fixture
def dump_world(pg_cluster: PgCluster, pg_db: Conn, tmp_path: Path) -> DumpWorld:
    """Storage + tmp + a canary role on a fresh sample database."""
    return DumpWorld(tmp_path, create_dump_role(pg_cluster, pg_db.dbname))


@pytest.fixture(params=KINDS)
def object_server(request: pytest.FixtureRequest) -> ObjectServer:
    name = {"s3": "s3_server", "gcs": "gcs_server", "azureBlob": "azure_server"}[request.param]
    server: ObjectServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def age_key(tmp_path: Path) -> AgeKey:
    return make_age_key(tmp_path / "age")


@pytest.fixture
def workers(worker_db: Conn) -> Iterator[Callable[..., WorkerProc]]:
    """Start worker subprocesses against worker_db; all are killed at the end."""
    started: list[WorkerProc] = []

    def start(*, http: bool = False, **env: str) -> WorkerProc:
        port = free_port() if http else 0
        w = WorkerProc(worker_db, worker_env(worker_db, WORKER_HTTP_PORT=str(port), **env), port)
        started.append(w.start())
        return w

    yield start
    for w in started:
        w.stop()
        w.log_path.unlink(missing_ok=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    bindir = pg_bindir()
    if bindir is None:
        tiers.unavailable("postgres", "no PostgreSQL server binaries (apt-get install postgresql)")
    cluster = PgCluster(bindir).start()
    try:
        own = OwnPostgres(cluster, cluster.create_database("worker_own"))
        migrated(own.db)
        yield own
    finally:
        cluster.stop()


@pytest.fixture
def black_hole_proxy(worker_db: Conn) -> Iterator[BlackHoleProxy]:
    proxy = BlackHoleProxy(worker_db.host, worker_db.port)
    try:
        yield proxy
    finally:
        proxy.close()
