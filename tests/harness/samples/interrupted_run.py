"""A run to be interrupted (not collected by the suite: the file name does not start with
test_). tests/postgres/test_ground_interrupts.py runs it on two xdist workers and signals it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.harness.postgres import PgCluster


@pytest.mark.parametrize("n", [1, 2])
def test_holds_a_session_server_until_interrupted(pg_cluster: PgCluster, n: int) -> None:
    probe = Path(os.environ["LEARNOPS_INTERRUPT_PROBE"]) / f"{os.getpid()}-{n}.json"
    pid = int((pg_cluster.data / "postmaster.pid").read_text().split()[0])
    probe.write_text(json.dumps({"base": str(pg_cluster.base), "postmaster": pid}))
    time.sleep(600)
