"""Fixtures of the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.postgres import PgCluster


@pytest.fixture(scope="session")
def bench_db(pg_cluster: PgCluster) -> Iterator[str]:
    """About 1 GB of pgbench tables (scale 70) for the benchmark."""
    name = "learnops_bench"
    pg_cluster.create_database(name)
    pg_cluster.pgbench_init(name, 70)
    try:
        yield name
    finally:
        pg_cluster.drop_database(name)
