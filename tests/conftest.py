"""Fixtures shared by every tier. Each tier folder's tests get that tier's marker."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import tiers
from tests.harness.postgres import Conn, PgCluster, pg_bindir

# Component fixtures live beside the component's tests, one plugin module each.
pytest_plugins = ["tests.fixtures_dump", "tests.fixtures_worker", "tests.fixtures_operator"]

TIERS = ("unit", "postgres", "cluster", "container", "e2e", "bench")
ROOT = Path(__file__).resolve().parent.parent


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
