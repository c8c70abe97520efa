"""Fixtures for restores and drills: a second PostgreSQL cluster (another system identifier)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import tiers
from tests.harness.postgres import PgCluster, pg_bindir


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
